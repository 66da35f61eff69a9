//! The simulator's quick profile, run by the test command: a few hundred
//! seeds with every fault, each checked after every step and at the end;
//! and a seed replayed gives the same run.

use pointsflow_sim::run;

/// Seeds in the quick profile (`POINTSFLOW_SIM_SEEDS` to change).
const QUICK_SEEDS: u64 = 500;

#[test]
fn quick_profile_holds_every_invariant() {
    let seeds = std::env::var("POINTSFLOW_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(QUICK_SEEDS);
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut faults = 0u64;
    let mut requests = 0usize;
    for seed in 0..seeds {
        match run(seed, false) {
            Ok(outcome) => {
                faults += outcome.faults.values().sum::<u64>();
                requests += outcome.requests;
            }
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    println!(
        "{seeds} seeds, {requests} requests, {faults} faults injected, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(faults > seeds, "the seeds injected faults");
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [7, 1_234, 99_999] {
        let first = run(seed, false).map_err(|f| f.to_string());
        let again = run(seed, false).map_err(|f| f.to_string());
        match (first, again) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.digest, b.digest, "seed {seed}");
                assert_eq!(a.steps, b.steps, "seed {seed}");
                assert_eq!(a.faults, b.faults, "seed {seed}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "seed {seed} fails the same way"),
            (a, b) => panic!("seed {seed} replayed differently: {a:?} / {b:?}"),
        }
    }
}
