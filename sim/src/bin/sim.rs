//! `pointsflow-sim`: runs simulator seeds and reports seeds per second
//! and any failing seed.

use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Runs the deterministic simulator over many seeds, or replays one.")]
struct Args {
    /// How many seeds to run (from `--first`).
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Replays this one seed (with `--trace`, printing every step).
    #[arg(long)]
    seed: Option<u64>,
    /// Prints every step of the run (with `--seed`).
    #[arg(long)]
    trace: bool,
    /// Keeps going after a failing seed.
    #[arg(long)]
    keep_going: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(seed) = args.seed {
        if args.trace {
            // The handlers' own logs too (RUST_LOG, warnings by default).
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .without_time()
                .try_init();
        }
        return match pointsflow_sim::run(seed, args.trace) {
            Ok(outcome) => {
                println!(
                    "seed {seed}: ok, {} steps, {} requests {:?}, faults {:?}, digest {:016x}",
                    outcome.steps,
                    outcome.requests,
                    outcome.by_state,
                    outcome.faults,
                    outcome.digest
                );
                std::process::ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{failure}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut failed = Vec::new();
    let (mut steps, mut requests) = (0u64, 0u64);
    for seed in args.first..args.first + args.seeds {
        match pointsflow_sim::run(seed, false) {
            Ok(outcome) => {
                steps += outcome.steps;
                requests += outcome.requests as u64;
            }
            Err(failure) => {
                eprintln!("{failure}");
                failed.push(seed);
                if !args.keep_going {
                    break;
                }
            }
        }
        if last_report.elapsed().as_secs() >= 10 {
            last_report = Instant::now();
            let done = seed - args.first + 1;
            println!(
                "{done} seeds, {:.1} seeds/s, {} failed",
                done as f64 / started.elapsed().as_secs_f64(),
                failed.len()
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ran = if failed.is_empty() || args.keep_going {
        args.seeds
    } else {
        failed.last().map_or(0, |s| s - args.first + 1)
    };
    println!(
        "{ran} seeds ({}..{}) in {elapsed:.1} s: {:.1} seeds/s, {steps} steps, {requests} requests, {} failed {:?}",
        args.first,
        args.first + ran,
        ran as f64 / elapsed,
        failed.len(),
        failed
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
