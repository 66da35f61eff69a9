//! Being a good client of a partner, through the local stack: retries back
//! off (with jitter, on the queue), a partner's circuit opens after repeated
//! failures and keeps messages queued (never in the dead-letter queue) until
//! a probe finds the partner back, and a partner's rate limit is never
//! exceeded however many dispatchers run at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use pointsflow_core::governance::CircuitState;
use pointsflow_core::ports::{CircuitStore, PipelineMessage, Publish, RequestGet};
use pointsflow_core::values::{PartnerId, RequestId};
use pointsflow_tests::{ADA, TestStack, deal, fixed_references, spawn_stack};

fn sandbox_air() -> PartnerId {
    PartnerId::parse("sandbox-air").unwrap()
}

async fn circuit_state(t: &TestStack) -> CircuitState {
    t.stack
        .partner_state
        .circuit(&sandbox_air())
        .await
        .unwrap()
        .state
}

fn calls(t: &TestStack) -> u64 {
    t.stack.sandbox.as_ref().unwrap().stats().calls
}

/// The partner's circuit opens after 3 failures and probes after 1 s.
fn flaky_partner(c: &mut pointsflow_local::LocalConfig) {
    for p in &mut c.partners {
        p.circuit_failures = 3;
        p.circuit_open_ms = 1_000;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_5xx_is_backed_off_then_credited_once() {
    let t = spawn_stack(flaky_partner).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    // A short burst: the request's first calls fail, then the partner is back.
    let warm = t.accept("warm", &deal(ADA, "1000.00")).await;
    t.wait_for(&warm, &["credited"]).await;
    let before = calls(&t);
    sandbox.set_down(true);
    let id = t.accept("burst", &deal(ADA, "2000.00")).await;
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    while calls(&t) < before + 2 {
        assert!(Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sandbox.set_down(false);
    let view = t.wait_for(&id, &["credited"]).await;
    t.settle().await;
    assert_eq!(sandbox.stats().credits, 2, "credited once, after the burst");
    assert_eq!(
        fixed_references(&view).len(),
        1,
        "one reference, fixed before the first call"
    );
    assert_eq!(t.stack.queues.dispatch_dlq.depth(), 0);
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_keeps_messages_queued_and_closes_when_the_partner_is_back() {
    let t = spawn_stack(flaky_partner).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let warm = t.accept("warm", &deal(ADA, "1000.00")).await;
    t.wait_for(&warm, &["credited"]).await;
    sandbox.set_down(true);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            t.accept(&format!("outage-{i}"), &deal(ADA, "1000.00"))
                .await,
        );
    }
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    while circuit_state(&t).await == CircuitState::Closed {
        assert!(Instant::now() < deadline, "the circuit never opened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Open: the partner is left alone (at most a probe a second), the
    // messages wait on the queue, none is given up on. Calls let through
    // before the circuit opened may still be arriving: counted from once
    // none has arrived for a while.
    let mut at_open = calls(&t);
    loop {
        assert!(Instant::now() < deadline, "calls never stopped");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = calls(&t);
        if now == at_open {
            break;
        }
        at_open = now;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let during = calls(&t) - at_open;
    assert!(during <= 3, "{during} calls while the circuit was open");
    assert_eq!(
        t.stack.queues.dispatch_dlq.depth(),
        0,
        "nothing in the dead-letter queue"
    );
    for id in &ids {
        // Not called yet (the circuit opened first: a partner that
        // recognises repeats is not claimed before a call), or called
        // without an answer.
        let status = t.get(id).await["status"].clone();
        assert!(
            status == "reserved" || status == "unknown",
            "a request waiting out the outage is {status}"
        );
    }
    // The partner is back: the next probe closes the circuit and every
    // request is credited, once.
    sandbox.set_down(false);
    for id in &ids {
        t.wait_for(id, &["credited"]).await;
    }
    t.settle().await;
    assert_eq!(circuit_state(&t).await, CircuitState::Closed);
    assert_eq!(sandbox.stats().credits, 21);
    assert_eq!(t.stack.queues.dispatch_dlq.depth(), 0);
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_limited_to_10_per_second_credits_everything_once_from_4_dispatchers() {
    let t = spawn_stack(|c| {
        c.sandbox.rate_limit_per_second = Some(10);
        c.queues.concurrency = 4;
        // Long enough to wait for a slot.
        c.queues.function_timeout_ms = 5_000;
        c.queues.visibility_timeout_ms = 6_000;
        for p in &mut c.partners {
            p.rate_limit_per_second = Some(10);
            p.timeout_ms = 1_000;
        }
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(t.accept(&format!("paced-{i}"), &deal(ADA, "1000.00")).await);
    }
    for id in &ids {
        t.wait_for(id, &["credited"]).await;
    }
    // The calls are spaced by the shared rate limit (core's governance
    // tests prove the spacing); a call the partner still refuses (429, when
    // arrival times bunch on a busy machine) is deferred, never lost or
    // credited twice.
    let stats = t.stack.sandbox.as_ref().unwrap().stats();
    assert_eq!(stats.credits, 40);
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_given_up_on_by_the_queue_is_resolved_by_the_resolver() {
    let t = spawn_stack(|c| {
        // Two receives, then the dead-letter queue; no circuit in the way.
        c.queues.max_receive_count = 2;
        c.resolve_after_ms = 0;
        for p in &mut c.partners {
            p.circuit_failures = 1_000;
        }
    })
    .await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let warm = t.accept("warm", &deal(ADA, "1000.00")).await;
    t.wait_for(&warm, &["credited"]).await;
    sandbox.set_down(true);
    let id = t.accept("given-up", &deal(ADA, "2000.00")).await;
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    while t.stack.queues.dispatch_dlq.depth() == 0 {
        assert!(
            Instant::now() < deadline,
            "never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = t.get(&id).await["status"].clone();
    assert!(
        status == "unknown" || status == "dispatching",
        "an ambiguous outcome is never voided: {status}"
    );
    sandbox.set_down(false);
    // The schedule's run finds it and queues it again: looked up under its
    // reference, credited once.
    let report = t.stack.dispatch.resolve_unsettled().await.unwrap();
    assert_eq!(report.requeued, 1);
    let view = t.wait_for(&id, &["credited"]).await;
    assert_eq!(sandbox.stats().credits, 2);
    assert_eq!(
        fixed_references(&view).len(),
        1,
        "never sent under a new reference"
    );
    let again = t.stack.dispatch.resolve_unsettled().await.unwrap();
    assert_eq!(again.requeued, 0, "nothing left unsettled");
    t.check_ledger();
}

/// The partner speaks the REST contract, the configuration's default.
fn rest(_: &mut pointsflow_local::LocalConfig) {}

/// The partner speaks the loyalty-commerce protocol (the sandbox speaks both).
fn loyalty_commerce(c: &mut pointsflow_local::LocalConfig) {
    for p in &mut c.partners {
        p.protocol = pointsflow_local::config::PartnerProtocol::LoyaltyCommerce;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_not_idempotent_on_the_reference_is_looked_up_before_every_retry() {
    use pointsflow_sandbox::magic;
    let t = spawn_stack(loyalty_commerce).await;
    let amount = |points| pointsflow_tests::amount_for(points);
    let plain = t.accept("lcp-plain", &deal(ADA, "1000.00")).await;
    // The order is placed and credited, and the answer lost: placing it
    // again would credit twice; the look-up finds it.
    let lost = t
        .accept("lcp-lost", &deal(ADA, &amount(magic::TIMEOUT_AFTER_CREDIT)))
        .await;
    let pending_ok = t
        .accept(
            "lcp-pending-ok",
            &deal(ADA, &amount(magic::PENDING_THEN_CREDITED)),
        )
        .await;
    let pending_ko = t
        .accept(
            "lcp-pending-ko",
            &deal(ADA, &amount(magic::PENDING_THEN_FAILED)),
        )
        .await;
    t.wait_for(&plain, &["credited"]).await;
    let view = t.wait_for(&lost, &["credited"]).await;
    assert!(
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["state"] == "unknown"),
        "{view:#}"
    );
    assert_eq!(fixed_references(&view).len(), 1);
    t.wait_for(&pending_ok, &["credited"]).await;
    let failed = t.wait_for(&pending_ko, &["failed"]).await;
    assert_eq!(failed["reason"]["code"], "partner_member_closed");
    t.settle().await;
    let stats = t.stack.sandbox.as_ref().unwrap().stats();
    assert_eq!(stats.credits, 3, "each credited order placed once");
    t.check_ledger();
}

/// The times a request was written after it was accepted (each write
/// adds one to its version).
async fn writes_after_acceptance(t: &TestStack, id: &RequestId) -> u64 {
    t.stack.store.get(id).await.unwrap().unwrap().version
}

/// The reservation fixes a real-time request's partner reference, so a
/// partner that answers a repeated reference with its first outcome is
/// called with no claim written first (the request is written when it is
/// decided and when it is credited; two deliveries calling at once would
/// send the same reference); a partner that does not is claimed by a
/// conditional write before its first call (one write more), so two
/// deliveries never both place an order. A message delivered again finds
/// the request credited and credits nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_partner_that_does_not_recognise_repeats_is_claimed_before_the_call() {
    for (protocol, idempotent) in [
        (rest as fn(&mut pointsflow_local::LocalConfig), true),
        (loyalty_commerce, false),
    ] {
        let t = spawn_stack(protocol).await;
        let id = t.accept("claim", &deal(ADA, "1000.00")).await;
        let view = t.wait_for(&id, &["credited"]).await;
        t.settle().await;
        let states: Vec<&str> = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["state"].as_str())
            .collect();
        assert_eq!(
            states,
            ["received", "reserved", "dispatching", "credited"],
            "{view:#}"
        );
        assert_eq!(fixed_references(&view).len(), 1, "{view:#}");
        let request_id = RequestId::parse(&id).unwrap();
        assert_eq!(
            writes_after_acceptance(&t, &request_id).await,
            if idempotent { 2 } else { 3 },
            "idempotent: {idempotent}"
        );
        t.stack
            .queues
            .dispatch
            .publish(&[PipelineMessage { request_id }])
            .await
            .unwrap();
        t.settle().await;
        assert_eq!(t.stack.sandbox.as_ref().unwrap().stats().credits, 1);
        t.check_ledger();
    }
}
