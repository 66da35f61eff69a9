//! Status callbacks: each request's final status reaches the source's
//! callback URL, signed so the receiver can verify it (checked here with
//! HMAC-SHA256 computed independently), retried when the receiver fails,
//! and none lost while the receiver is down for a while.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use pointsflow_config::CallbackSettings;
use pointsflow_tests::{ADA, TestStack, amount_for, deal, spawn_stack};
use serde_json::{Value, json};

const SECRET: &str = "cb_demo_secret_9f8e7d6c5b4a3f2e1d0c";

/// A receiver: verifies each call's signature, answers 500 to the first
/// `fail_first` calls and 503 while `down`, and keeps what it accepted.
#[derive(Default)]
struct Receiver {
    fail_first: AtomicU32,
    down: AtomicBool,
    calls: AtomicU32,
    bad_signatures: AtomicU32,
    accepted: Mutex<BTreeMap<String, Value>>,
    /// Deliveries accepted, per event id (a replay counts again).
    deliveries: Mutex<BTreeMap<String, u32>>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(ts), Some(sig)) = (
        headers
            .get("x-pointsflow-timestamp")
            .and_then(|v| v.to_str().ok()),
        headers
            .get("x-pointsflow-signature")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256=")),
    ) else {
        return false;
    };
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    fresh
        && mac
            .verify_slice(&hex::decode(sig).unwrap_or_default())
            .is_ok()
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    r.calls.fetch_add(1, Ordering::SeqCst);
    if !verify(&headers, &body) {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if r.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let event = headers["x-pointsflow-event-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(payload["event_id"], event.as_str());
    *r.deliveries
        .lock()
        .unwrap()
        .entry(event.clone())
        .or_default() += 1;
    r.accepted.lock().unwrap().insert(event, payload);
    StatusCode::NO_CONTENT
}

async fn stack_with_receiver(receiver: Arc<Receiver>) -> TestStack {
    let app = axum::Router::new()
        .route("/pointsflow/status", axum::routing::post(receive))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/pointsflow/status",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    spawn_stack(|c| {
        let demo = c
            .sources
            .iter_mut()
            .find(|s| s.id.as_str() == "demo")
            .unwrap();
        demo.callback = Some(CallbackSettings {
            url,
            secret: SECRET.into(),
        });
    })
    .await
}

async fn until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_statuses_reach_the_source_signed_and_retried_until_accepted() {
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(3, Ordering::SeqCst);
    let t = stack_with_receiver(receiver.clone()).await;
    let credited = t.accept("cb-1", &deal(ADA, &amount_for(300))).await;
    let failed = t
        .accept(
            "cb-2",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    let rejected = t
        .accept("cb-3", &deal("0055g00000NotEnrolled", &amount_for(100)))
        .await;
    until("three statuses accepted", Duration::from_secs(60), || {
        receiver.accepted.lock().unwrap().len() == 3
    })
    .await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    let ok = &accepted[&format!("{credited}:credited")];
    assert_eq!(ok["points"], 300);
    assert_eq!(ok["source"], "demo");
    assert_eq!(ok["idempotency_key"], "cb-1");
    let ko = &accepted[&format!("{failed}:failed")];
    assert_eq!(ko["reason"]["code"], "partner_member_blocked", "{ko:#}");
    assert!(accepted.contains_key(&format!("{rejected}:rejected")));
    assert!(
        receiver.calls.load(Ordering::SeqCst) >= 6,
        "three failures, then three deliveries"
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);

    // A reversal is a final status too.
    let answer = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-demo", "command": "reverse", "request_id": credited, "reason": "deal lost"}))
        .await;
    assert!(answer.ok, "{answer:#?}");
    until(
        "the reversal's status accepted",
        Duration::from_secs(30),
        || {
            receiver
                .accepted
                .lock()
                .unwrap()
                .contains_key(&format!("{credited}:reversed"))
        },
    )
    .await;
    // The operations command `notify` sends a status again (a replay).
    let answer = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-demo", "command": "notify", "request_id": failed}))
        .await;
    assert!(answer.ok, "{answer:#?}");
    let replayed = format!("{failed}:failed");
    until(
        "the replayed status delivered",
        Duration::from_secs(30),
        || receiver.deliveries.lock().unwrap().get(&replayed) >= Some(&2),
    )
    .await;
    assert!(t.stack.queues.callbacks_dlq.depth() == 0);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_receiver_is_down() {
    let receiver = Arc::new(Receiver::default());
    receiver.down.store(true, Ordering::SeqCst);
    let t = stack_with_receiver(receiver.clone()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            t.accept(&format!("cb-down-{i}"), &deal(ADA, &amount_for(100 + i)))
                .await,
        );
    }
    for id in &ids {
        t.wait_for(id, &["credited"]).await;
    }
    // Down for two seconds: every status is tried, refused, and kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.calls.load(Ordering::SeqCst) >= 20);
    assert!(receiver.accepted.lock().unwrap().is_empty());
    assert_eq!(
        t.stack.queues.callbacks_dlq.depth(),
        0,
        "nothing given up on"
    );
    receiver.down.store(false, Ordering::SeqCst);
    until("every status delivered", Duration::from_secs(60), || {
        receiver.accepted.lock().unwrap().len() == ids.len()
    })
    .await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    for id in &ids {
        assert!(
            accepted.contains_key(&format!("{id}:credited")),
            "{id} lost"
        );
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    t.stack.shutdown().await;
}
