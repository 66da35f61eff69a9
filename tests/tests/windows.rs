//! Scheduled windows through the local stack on the embedded adapters:
//! requests held `scheduled`, the window's schedule firing (once or again
//! and again), consolidation, a dispatch function killed part way, and
//! requests that arrive after their window was dispatched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pointsflow_core::window::{RunState, WindowId};
use pointsflow_tests::{TestStack, fire, progress, schedule_deals, scheduled_config, spawn_stack};
use serde_json::Value;

/// What each member should have been credited: their requests' sum.
fn expected_by_member(requests: &[(String, String, u64)]) -> BTreeMap<String, u64> {
    let mut by_recipient: BTreeMap<String, u64> = BTreeMap::new();
    for (_, recipient, points) in requests {
        *by_recipient.entry(recipient.clone()).or_default() += points;
    }
    // Recipient `0055g000WinNNNNN` is member `SKY4` + the same number.
    by_recipient
        .into_iter()
        .map(|(r, p)| {
            let n: usize = r.trim_start_matches("0055g000Win").parse().unwrap();
            (format!("SKY4{n:06}"), p)
        })
        .collect()
}

/// Waits until every request is credited; returns their views.
async fn all_credited(t: &TestStack, requests: &[(String, String, u64)]) -> Vec<Value> {
    let mut views = Vec::new();
    for (id, _, _) in requests {
        views.push(t.wait_for(id, &["credited"]).await);
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_fired_three_times_is_dispatched_once() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, true, 6)).await;
    let (requests, window) = schedule_deals(&t, &recipients, 5, "thrice").await;
    assert_eq!(t.sandbox_credits(), 0, "held until the window");

    // EventBridge delivers at least once: three firings, at once.
    let (a, b, c) = tokio::join!(
        fire(&t.stack.dispatch, &window),
        fire(&t.stack.dispatch, &window),
        fire(&t.stack.dispatch, &window)
    );
    assert!([a, b, c].iter().all(|run| run.window.to_string() == window));
    t.settle().await;
    all_credited(&t, &requests).await;
    // And once more, late, after it was dispatched.
    let late = fire(&t.stack.dispatch, &window).await;
    assert_eq!(late.state, RunState::Planned);
    t.settle().await;

    assert_eq!(t.sandbox_credits(), 6, "one credit per member, once");
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));
    t.check_ledger();
    let run = progress(t.stack.windows.as_ref(), &window).await;
    assert_eq!(run.planning_runs, 1, "planned by one invocation");
    assert_eq!(
        (
            run.counts.requests,
            run.counts.credits,
            run.counts.members,
            run.counts.credited,
            run.counts.credited_requests,
            run.counts.pending()
        ),
        (30, 6, 6, 6, 30, 0)
    );
    assert_eq!(
        run.counts.credited_points,
        requests.iter().map(|r| r.2).sum::<u64>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_sends_one_credit_per_member_linked_to_each_request() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, true, 120)).await;
    // 1,000 requests from 120 members: 40 members with 9, 80 with 8.
    let mut requests = Vec::new();
    let (nine, _) = schedule_deals(&t, &recipients[..40], 9, "c9").await;
    let (eight, window) = schedule_deals(&t, &recipients[40..], 8, "c8").await;
    requests.extend(nine);
    requests.extend(eight);
    assert_eq!(requests.len(), 1_000);

    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    let views = all_credited(&t, &requests).await;

    let stats = t.stack.sandbox.as_ref().unwrap().stats();
    assert_eq!(stats.credits, 120, "one partner credit per member");
    assert_eq!(stats.points, requests.iter().map(|r| r.2).sum::<u64>());
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));

    // Each request names its credit; the credit lists it, carries the
    // reference the request shows, and its points are the requests' sum.
    let credits: BTreeMap<_, _> = t
        .stack
        .windows
        .credits_of(&WindowId::parse(&window).unwrap())
        .into_iter()
        .map(|c| (c.id.to_string(), c))
        .collect();
    assert_eq!(credits.len(), 120);
    for (view, (id, recipient, _)) in views.iter().zip(&requests) {
        let credit = &credits[view["credit"].as_str().unwrap()];
        assert!(credit.requests.iter().any(|r| r.as_str() == id));
        assert_eq!(view["partner_reference"], credit.reference.as_str());
        assert_eq!(view["window"], window.as_str());
        let member = &expected_by_member(&[(id.clone(), recipient.clone(), 0)]);
        assert_eq!(credit.member.as_str(), member.keys().next().unwrap());
        let entries = view["ledger"].as_array().unwrap();
        assert!(entries.iter().any(|e| e["type"] == "post_pending"));
    }
    for credit in credits.values() {
        let sum: u64 = views
            .iter()
            .filter(|v| v["credit"] == credit.id.as_str())
            .map(|v| v["points"].as_u64().unwrap())
            .sum();
        assert_eq!(credit.points.get(), sum);
    }
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_run_killed_half_way_resumes_and_credits_every_member_once() {
    let mut recipients = Vec::new();
    let mut t = spawn_stack(|c| {
        recipients = scheduled_config(c, true, 200);
        // Slow enough that the kill lands part way.
        c.sandbox.latency_ms = 3;
    })
    .await;
    let (requests, window) = schedule_deals(&t, &recipients, 2, "kill").await;

    fire(&t.stack.dispatch, &window).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.sandbox_credits() < 100 {
        assert!(Instant::now() < deadline, "never reached half the credits");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.stack.crash_dispatch();
    let at_crash = t.sandbox_credits();
    assert!(at_crash < 200, "the kill came too late to test anything");
    // The crashed invocations' messages come back after their visibility
    // timeout, to a new dispatch function.
    tokio::time::sleep(Duration::from_millis(700)).await;
    t.stack.restart_dispatch();
    t.settle().await;
    all_credited(&t, &requests).await;

    assert_eq!(
        t.sandbox_credits(),
        200,
        "every member credited exactly once"
    );
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));
    t.check_ledger();
    let run = progress(t.stack.windows.as_ref(), &window).await;
    assert_eq!((run.counts.credited, run.counts.pending()), (200, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_its_window_was_dispatched_goes_in_the_next_window() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, true, 2)).await;
    let (first, window) = schedule_deals(&t, &recipients, 2, "on-time").await;
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    all_credited(&t, &first).await;
    assert_eq!(t.sandbox_credits(), 2);

    // Decided after the window's run was planned: the run does not take it,
    // however often the window fires again.
    let (late, late_window) = schedule_deals(&t, &recipients[..1], 1, "late").await;
    assert_eq!(late_window, window);
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    assert_eq!(t.get(&late[0].0).await["status"], "scheduled");
    assert_eq!(t.sandbox_credits(), 2);

    // The next window takes it.
    let current = WindowId::parse(&window).unwrap();
    let next = WindowId::new(
        current.program(),
        current.closes_at() + chrono::TimeDelta::days(365),
    );
    fire(&t.stack.dispatch, &next.to_string()).await;
    t.settle().await;
    let view = t.wait_for(&late[0].0, &["credited"]).await;
    assert_eq!(view["window"], next.to_string());
    assert_eq!(t.sandbox_credits(), 3);
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consolidation_each_request_is_its_own_credit() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, false, 3)).await;
    let (requests, window) = schedule_deals(&t, &recipients, 4, "single").await;
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    let views = all_credited(&t, &requests).await;
    assert_eq!(t.sandbox_credits(), 12);
    let references: std::collections::BTreeSet<_> = views
        .iter()
        .map(|v| v["partner_reference"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(references.len(), 12, "a reference per request");
    t.check_ledger();
}
