//! `pointsflow-bench`: pushes N points requests through the local stack over
//! HTTP and reports accepted/s, credited/s, the latency from acceptance to
//! credit (p50/p99/max) and the process's peak memory. See the README's
//! "Benchmark" section.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use pointsflow_core::program::{PointsRule, TransferMode};
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::{Points, RecipientId};
use pointsflow_local::config::MemberEntry;
use pointsflow_local::{LocalConfig, Stack, StackOptions};

#[derive(Debug, Parser)]
#[command(
    name = "pointsflow-bench",
    about = "End-to-end throughput and latency of the local stack"
)]
struct Args {
    /// Requests to push.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests in flight at once from the client.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Distinct enrolled recipients the requests are spread over.
    #[arg(long, default_value_t = 1_000)]
    recipients: u64,
    /// Offered load in requests per second (open loop); 0 pushes as fast as the client can.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Handler invocations in flight per queue.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn recipient(i: u64) -> String {
    format!("0055g0000B{i:07}")
}

fn config(args: &Args) -> Result<LocalConfig, String> {
    let mut config = pointsflow_local::config::default_config().map_err(|e| e.to_string())?;
    config.queues.concurrency = args.consumers;
    let program = config
        .programs
        .first_mut()
        .ok_or("the default config has no program")?;
    program.points = PointsRule::Rate {
        points: Points::new(2).map_err(|e| e.to_string())?,
        per: 100.into(),
    };
    program.monthly_cap_per_recipient = None;
    program.budget = Points::new(1_000_000_000_000).map_err(|e| e.to_string())?;
    program.transfer = TransferMode::Realtime;
    let program_id = program.id.clone();
    config.members = (0..args.recipients)
        .map(|i| {
            Ok(MemberEntry {
                program: program_id.clone(),
                recipient: RecipientId::parse(&recipient(i)).map_err(|e| e.to_string())?,
                member_number: format!("SKY{i:08}"),
                first_name: "Bench".into(),
                last_name: format!("Member{i}"),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(config)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pointsflow-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = config(&args)?;
    let api_key = config.sources.first().ok_or("no source")?.api_key.clone();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let stack = Stack::start(
        config,
        StackOptions {
            listen: loopback,
            sandbox_listen: loopback,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let url = format!("{}/v1/points-requests", stack.base_url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()
        .map_err(|e| e.to_string())?;

    println!(
        "pushing {} requests at {}, at most {} in flight, over {} recipients, {} consumers per queue",
        args.requests,
        if args.rate == 0 {
            "full speed".to_owned()
        } else {
            format!("{}/s", args.rate)
        },
        args.concurrency,
        args.recipients,
        args.consumers
    );
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, api_key, next, refused) = (
            client.clone(),
            url.clone(),
            api_key.clone(),
            next.clone(),
            refused.clone(),
        );
        let (requests, recipients, rate) = (args.requests, args.recipients, args.rate);
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = format!(
                    r#"{{"program":"sales-incentive","recipient":{{"id":"{}"}},"amount":{{"value":"{}.00","currency":"USD"}},"event":{{"type":"opportunity.closed_won","id":"bench-{i}","occurred_at":"2026-11-27T16:00:00Z"}}}}"#,
                    recipient(i % recipients),
                    1_000 + i % 5_000
                );
                let sent = client
                    .post(&url)
                    .bearer_auth(&api_key)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("bench-{i}"))
                    .body(body)
                    .send()
                    .await;
                if !matches!(sent, Ok(ref r) if r.status() == 202) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for c in clients {
        c.await.map_err(|e| e.to_string())?;
    }
    let accepted_in = started.elapsed();
    let refused = refused.load(Ordering::Relaxed);
    let expected = args.requests - refused;

    let sandbox = stack.sandbox.as_ref().ok_or("no sandbox partner")?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while sandbox.stats().credits < expected {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {expected} credited after 300 s",
                sandbox.stats().credits
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let credited_in = started.elapsed();
    let peak = peak_rss_mib();

    let requests = stack.store.all().map_err(|e| e.to_string())?;
    let first_received = requests.iter().map(|r| r.received_at).min();
    let mut timed: Vec<(Duration, chrono::DateTime<chrono::Utc>)> = requests
        .iter()
        .filter(|r| r.state() == StatusKind::Credited)
        .filter_map(|r| {
            let credited = r.entered(StatusKind::Credited)?;
            Some(((credited - r.received_at).to_std().ok()?, r.received_at))
        })
        .collect();
    timed.sort();
    let latencies: Vec<Duration> = timed.iter().map(|(d, _)| *d).collect();
    // Where in the run the slowest 0.1% were accepted, to tell start-up from steady state.
    let slow_at: Vec<f64> = timed
        .iter()
        .rev()
        .take((timed.len() / 1000).max(1))
        .filter_map(|(_, at)| Some((*at - first_received?).to_std().ok()?.as_secs_f64()))
        .collect();
    let snapshot = stack.ledger.snapshot().map_err(|e| e.to_string())?;
    snapshot.check().map_err(|e| e.to_string())?;
    let stats = sandbox.stats();

    println!();
    println!("requests          {}", args.requests);
    println!("refused           {refused}");
    println!(
        "credited          {} (sandbox credits {}, attempts {})",
        latencies.len(),
        stats.credits,
        stats.attempts
    );
    println!(
        "accepted/s        {:.0}",
        expected as f64 / accepted_in.as_secs_f64()
    );
    println!(
        "credited/s        {:.0}",
        expected as f64 / credited_in.as_secs_f64()
    );
    println!(
        "accept->credit    p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0))
    );
    if let (Some(lo), Some(hi)) = (
        slow_at.iter().copied().reduce(f64::min),
        slow_at.iter().copied().reduce(f64::max),
    ) {
        println!("slowest 0.1%      accepted {lo:.1} s to {hi:.1} s into the run");
    }
    match peak {
        Some(mib) => {
            println!("peak memory       {mib:.0} MiB (VmHWM of this process: stack and client)")
        }
        None => println!("peak memory       unavailable (no /proc/self/status)"),
    }
    println!(
        "ledger            {} entries, invariants hold",
        snapshot.entries.len()
    );
    stack.shutdown().await;
    Ok(())
}
