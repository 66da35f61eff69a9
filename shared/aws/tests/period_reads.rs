//! Reconciling a period reads what the period holds, not the table: the
//! same period, on a table of N requests and on one of 10N, reads the same
//! capacity units (counted by the meter the bench uses), through the `day`
//! index and never a scan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pointsflow_aws::{DynamoRequestStore, tables};
use pointsflow_core::ports::{RequestCreate, RequestLines};
use pointsflow_core::reconcile::Scope;
use pointsflow_harness::emulator;
use pointsflow_harness::meter::{Meter, metered};

fn day() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()
}

/// Requests `keys`, received `at` each.
async fn store(
    store: &DynamoRequestStore,
    keys: std::ops::Range<u32>,
    at: impl Fn(u32) -> DateTime<Utc>,
) {
    for n in keys {
        let mut r = pointsflow_conformance::request(&format!("period-{n}"));
        r.received_at = at(n);
        store.create(&r).await.unwrap();
    }
}

/// Reconciles the day's period page by page: its lines, and the read
/// units, calls and scans it took.
async fn reconcile(store: &DynamoRequestStore, meter: &Meter) -> (HashSet<String>, f64, u64, u64) {
    meter.reset();
    let scope = Scope::Period {
        from: day(),
        to: day() + Duration::days(1),
        program: None,
    };
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.lines(&scope, after.as_deref(), 25).await.unwrap();
        for line in page.lines {
            assert!(seen.insert(line.id.to_string()), "a line listed twice");
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let usage = meter.usage();
    let calls = usage.service_calls("dynamodb");
    let scans = usage
        .calls
        .get(&("dynamodb".to_owned(), "Scan".to_owned()))
        .copied()
        .unwrap_or(0);
    (seen, usage.read_units, calls, scans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_reads_the_same_units_on_a_table_ten_times_larger() {
    let meter = Meter::new();
    let config = metered(emulator::config().await, &meter);
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = emulator::unique_name("pf-days");
    tables::create_ledger_table(&client, &table).await.unwrap();
    let requests = DynamoRequestStore::new(client, table);

    // 60 requests in the period, and N = 50 on the days around it.
    let in_period = |n: u32| day() + Duration::minutes(i64::from(n) * 23);
    let elsewhere = |n: u32| {
        day()
            + Duration::days(if n.is_multiple_of(2) {
                -1 - i64::from(n % 40)
            } else {
                1 + i64::from(n % 40)
            })
    };
    store(&requests, 0..60, in_period).await;
    store(&requests, 1_000..1_050, elsewhere).await;
    let (small, small_units, small_calls, small_scans) = reconcile(&requests, &meter).await;

    // Ten times as many elsewhere: 10N = 500.
    store(&requests, 1_050..1_500, elsewhere).await;
    let (large, large_units, large_calls, large_scans) = reconcile(&requests, &meter).await;

    assert_eq!(small.len(), 60, "every request of the period, once");
    assert_eq!(small, large, "the same period, the same lines");
    assert_eq!((small_scans, large_scans), (0, 0), "no scan");
    eprintln!(
        "a day's 60 requests: {small_units} read units in {small_calls} calls on a table of 110 requests, \
         {large_units} in {large_calls} on one of 560"
    );
    assert!(
        (large_units - small_units).abs() <= small_units * 0.10,
        "reads grew with the table: {small_units} units, then {large_units}"
    );
    assert_eq!(small_calls, large_calls);
}
