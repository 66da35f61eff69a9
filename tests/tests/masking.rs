//! No log line carries a member number, an email address or a secret. This
//! test binary logs everything the stack does at debug level, through the
//! same masking writer the deployed functions and `pointsflow dev` use,
//! while requests of every kind go through (API deals, a Salesforce
//! Outbound Message, a signed HRIS webhook with an email, a refusal, an
//! enrollment, an operator's approval), then reads every line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use pointsflow_local::client::Decision;
use pointsflow_runtime::masking::{Masker, MaskingWriter};
use pointsflow_tests::{
    ADA, amount_for, deal, opportunity, outbound_message, spawn_stack, test_config,
};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_carries_a_member_number_an_email_or_a_secret() {
    let config = test_config();
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug,hyper=info,reqwest=info,h2=info")
        .json()
        .with_current_span(true)
        .with_writer(MaskingWriter::new(
            move || sink.clone(),
            Masker::new(config.secrets()).with_members(config.member_numbers()),
        ))
        .init();

    let t = spawn_stack(|c| {
        c.programs[0].approval_threshold =
            Some(pointsflow_core::values::Points::new(10_000).unwrap());
    })
    .await;
    // Deals: credited, refused by the partner, above the approval threshold.
    let credited = t.accept("mask-1", &deal(ADA, "1000.00")).await;
    let refused = t
        .accept(
            "mask-2",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    let big = t.accept("mask-3", &deal(ADA, "600000.00")).await;
    t.wait_for(&credited, &["credited"]).await;
    t.wait_for(&refused, &["failed"]).await;
    t.wait_for(&big, &["awaiting_approval"]).await;
    let ops = pointsflow_tests::ops(&t.base);
    ops.decide(
        &big,
        Decision::Approve,
        Some("checked with ada.lovelace@example.com"),
    )
    .await
    .unwrap();
    t.wait_for(&big, &["credited"]).await;
    // A Salesforce Outbound Message.
    let (status, _) = t
        .post_outbound(outbound_message(vec![opportunity(
            1,
            "0055g00000DemoAA2",
            "Closed Won",
            "2000.00",
        )]))
        .await;
    assert_eq!(status, 200);
    // An HRIS recognition carrying the employee's email.
    let body = json!({
        "id": "rec-mask",
        "employee": {"id": "E1001", "email": "alan.turing@example.com"},
        "award": {"points": 75, "reason": "Mentoring"},
        "awarded_at": "2026-11-27T09:30:00Z"
    })
    .to_string();
    assert_eq!(t.post_signed_hris(body).await, 202);
    // An enrollment with the partner's validation.
    ops.link_member(
        "sales-incentive",
        "005GRACE",
        "SKY1000005",
        "Grace",
        "Hopper",
        None,
    )
    .await
    .unwrap();
    t.settle().await;
    t.stack.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines = text.lines().count();
    assert!(lines > 20, "the run logged ({lines} lines)");
    let mut leaks = Vec::new();
    let members = config
        .members
        .iter()
        .map(|m| m.member_number.clone())
        .chain(
            config
                .sandbox
                .members
                .iter()
                .map(|m| m.member_number.clone()),
        );
    for needle in config.secrets().into_iter().chain(members).chain([
        "ada.lovelace@example.com".to_owned(),
        "alan.turing@example.com".to_owned(),
    ]) {
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            leaks.push(format!("{needle} in {line}"));
        }
    }
    assert!(leaks.is_empty(), "leaked: {leaks:#?}");
    assert!(
        text.contains("******0001"),
        "member numbers were logged, masked"
    );
    // Every line eligibility and dispatch log about a request names it, its
    // program, its state and its source record.
    let mut about_requests = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let span = &v["span"];
        if !matches!(span["name"].as_str(), Some("eligibility" | "dispatch")) {
            continue;
        }
        about_requests += 1;
        for field in ["request_id", "program", "state", "source_record"] {
            assert!(span[field].is_string(), "{field} missing from {line}");
        }
    }
    assert!(about_requests > 5, "{about_requests} lines about requests");
}
