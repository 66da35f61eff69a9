//! The functions report what happens as metrics (CloudWatch's embedded
//! metric format): requests received, rejected, credited and failed per
//! program, points credited and the time from receipt to credit, and each
//! partner's latency and errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use pointsflow_tests::{ADA, amount_for, deal, spawn_stack};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_partner_calls_are_reported_as_metrics() {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    pointsflow_runtime::metrics::init(
        "test-stack",
        Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_owned())),
    );
    let t = spawn_stack(|c| {
        // Any reservation leaves less than the whole budget: reported low.
        c.programs[0].budget_alert_below = Some(c.programs[0].budget);
    })
    .await;
    let credited = t.accept("metric-1", &deal(ADA, "1000.00")).await;
    let failed = t
        .accept(
            "metric-2",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    let mut unknown = pointsflow_tests::deal(ADA, "1000.00");
    unknown["program"] = "no-such-program".into();
    let response = t.submit("metric-3", &unknown).await;
    assert_eq!(response.status(), 422, "refused at the door: not a request");
    let mut ineligible = deal(ADA, "1000.00");
    ineligible["event"]["type"] = "opportunity.closed_lost".into();
    let rejected = t.accept("metric-4", &ineligible).await;
    t.wait_for(&credited, &["credited"]).await;
    t.wait_for(&failed, &["failed"]).await;
    t.wait_for(&rejected, &["rejected"]).await;
    t.settle().await;

    let metrics: Vec<Value> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sum = |name: &str, dimension: &str, value: &str| -> f64 {
        metrics
            .iter()
            .filter(|m| m[dimension] == value && m["Stack"] == "test-stack")
            .filter_map(|m| m[name].as_f64())
            .sum()
    };
    let program = "sales-incentive";
    assert_eq!(sum("RequestsReceived", "Program", program), 3.0);
    assert_eq!(sum("RequestsRejected", "Program", program), 1.0);
    assert_eq!(sum("RequestsCredited", "Program", program), 1.0);
    assert_eq!(sum("RequestsFailed", "Program", program), 1.0);
    assert_eq!(sum("PointsCredited", "Program", program), 20.0);
    assert!(
        sum("BudgetLow", "Program", program) >= 1.0,
        "the budget below its alert"
    );
    let latencies = metrics
        .iter()
        .filter(|m| m["Partner"] == "sandbox-air" && m["PartnerLatencyMs"].as_f64().is_some())
        .count();
    assert!(latencies >= 2, "each partner call is timed: {latencies}");
    // A refusal is an answer, not an error: the only errors counted are
    // calls whose answer was lost (each leaves an `unknown` on its request,
    // which a busy machine's slow answer can do).
    let mut unknowns = 0;
    for id in [&credited, &failed] {
        unknowns += pointsflow_tests::path(&t.get(id).await)
            .iter()
            .filter(|s| *s == "unknown")
            .count();
    }
    assert_eq!(
        sum("PartnerErrors", "Partner", "sandbox-air"),
        unknowns as f64,
        "a refusal is an answer, not an error"
    );
    let receipt_to_credit = metrics
        .iter()
        .find_map(|m| m["ReceiptToCreditSeconds"].as_f64())
        .unwrap();
    assert!((0.0..30.0).contains(&receipt_to_credit));
}
