//! Status callbacks: each request's final status reaches the source's
//! callback URL, signed so the receiver can verify it (checked here with
//! HMAC-SHA256 computed independently, and, for Standard Webhooks, with
//! the published `standardwebhooks` Python package), retried when the
//! receiver fails, and none lost while the receiver is down for a while.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use pointsflow_config::{CallbackSettings, CallbackSignature};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::RequestGet;
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::RequestId;
use pointsflow_tests::{ADA, TestStack, amount_for, deal, spawn_aws_stack, spawn_stack};
use serde_json::{Value, json};

/// The id request `id`'s callback for `state` has: the event id of the
/// timeline line that moved it there (`{request}:{sequence}`).
async fn status_id(t: &TestStack, id: &str, state: &str) -> String {
    let request = t
        .stack
        .store
        .get(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let state: StatusKind = serde_json::from_value(json!(state)).unwrap();
    CallbackMessage::of_write(None, &request)
        .into_iter()
        .find(|m| m.state == state)
        .unwrap_or_else(|| panic!("{id} never became {state}"))
        .event_id()
}

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

/// Serves `app` on a loopback port; its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A local stack whose `demo` source has `callback`.
async fn stack_with_callback(callback: CallbackSettings) -> TestStack {
    spawn_stack(|c| {
        let demo = c
            .sources
            .iter_mut()
            .find(|s| s.id.as_str() == "demo")
            .unwrap();
        demo.callback = Some(callback);
    })
    .await
}

async fn stack_with_receiver(receiver: Arc<Receiver>) -> TestStack {
    let app = axum::Router::new()
        .route("/pointsflow/status", axum::routing::post(receive))
        .with_state(receiver);
    stack_with_callback(CallbackSettings {
        url: format!("{}/pointsflow/status", serve(app).await),
        secret: SECRET.into(),
        retiring_secrets: Vec::new(),
        signature: CallbackSignature::Pointsflow,
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
    until(
        "three statuses accepted",
        pointsflow_tests::PATIENCE,
        || receiver.accepted.lock().unwrap().len() == 3,
    )
    .await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    let ok = &accepted[&status_id(&t, &credited, "credited").await];
    assert_eq!(ok["event_id"], format!("{credited}:4"));
    assert_eq!(ok["points"], 300);
    assert_eq!(ok["source"], "demo");
    assert_eq!(ok["idempotency_key"], "cb-1");
    let ko = &accepted[&status_id(&t, &failed, "failed").await];
    assert_eq!(ko["reason"]["code"], "partner_member_blocked", "{ko:#}");
    assert!(accepted.contains_key(&status_id(&t, &rejected, "rejected").await));
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
    t.wait_for(&credited, &["reversed"]).await;
    let reversed = status_id(&t, &credited, "reversed").await;
    until(
        "the reversal's status accepted",
        Duration::from_secs(30),
        || receiver.accepted.lock().unwrap().contains_key(&reversed),
    )
    .await;
    // The operations command `notify` sends a status again (a replay).
    let answer = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-demo", "command": "notify", "request_id": failed}))
        .await;
    assert!(answer.ok, "{answer:#?}");
    // Under the id it was first sent with.
    let replayed = status_id(&t, &failed, "failed").await;
    until(
        "the replayed status delivered",
        Duration::from_secs(30),
        || receiver.deliveries.lock().unwrap().get(&replayed) >= Some(&2),
    )
    .await;
    assert!(t.stack.queues.callbacks_dlq.depth() == 0);
    t.stack.shutdown().await;
}

/// On the AWS adapters the status callback comes from the table's stream
/// too: the events function reads the emulator's DynamoDB stream, puts the
/// events on its EventBridge bus and queues the callback on SQS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_status_is_called_back_from_the_tables_stream_on_the_aws_adapters() {
    let receiver = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/pointsflow/status", axum::routing::post(receive))
        .with_state(receiver.clone());
    let url = format!("{}/pointsflow/status", serve(app).await);
    let t = spawn_aws_stack(|c| {
        let demo = c
            .sources
            .iter_mut()
            .find(|s| s.id.as_str() == "demo")
            .unwrap();
        demo.callback = Some(CallbackSettings {
            url,
            secret: SECRET.into(),
            retiring_secrets: Vec::new(),
            signature: CallbackSignature::Pointsflow,
        });
    })
    .await;
    let credited = t.accept("cb-aws-1", &deal(ADA, &amount_for(300))).await;
    t.wait_for(&credited, &["credited"]).await;
    until("the status accepted", pointsflow_tests::PATIENCE, || {
        !receiver.accepted.lock().unwrap().is_empty()
    })
    .await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    let ids: Vec<&String> = accepted.keys().collect();
    assert_eq!(ids, [&format!("{credited}:4")]);
    assert_eq!(accepted[&format!("{credited}:4")]["status"], "credited");
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
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
    until("every status delivered", pointsflow_tests::PATIENCE, || {
        receiver.accepted.lock().unwrap().len() == ids.len()
    })
    .await;
    let accepted = receiver.accepted.lock().unwrap().clone();
    for id in &ids {
        assert!(
            accepted.contains_key(&status_id(&t, id, "credited").await),
            "{id} lost"
        );
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    t.stack.shutdown().await;
}

/// A new and a retiring Standard Webhooks secret (32-byte keys).
const SW_NEW: &str = "whsec_Qm9yZWRvbV9pc19ub3RfYV9zZWNyZXRfMTIzNDU2Nzg=";
const SW_RETIRING: &str = "whsec_7Lc0xH1a3y6vJm2QnT9rWk4sUeYbZdFgHiKpNoRtVwA=";

type Calls = Arc<Mutex<Vec<(BTreeMap<String, String>, Vec<u8>)>>>;

async fn record(
    State(calls): State<Calls>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    calls.lock().unwrap().push((headers, body.to_vec()));
    StatusCode::NO_CONTENT
}

/// What the published Python library says of each call, for each secret:
/// `verified`, or the error it raised.
fn python_verdicts(calls: &[(BTreeMap<String, String>, Vec<u8>)], secrets: &[&str]) -> Vec<String> {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(headers, body)| json!({"headers": headers, "body": String::from_utf8(body.clone()).unwrap()}))
        .collect();
    let out = pointsflow_harness::python::run(
        r#"
import json, sys
from standardwebhooks import Webhook, WebhookVerificationError
calls = json.load(sys.stdin)
for secret in sys.argv[1:]:
    for call in calls:
        try:
            Webhook(secret).verify(call["body"].encode(), call["headers"])
            print("verified")
        except WebhookVerificationError as e:
            print(f"refused: {e}")
"#,
        secrets,
        serde_json::to_string(&calls).unwrap().as_bytes(),
    );
    out.lines().map(str::to_owned).collect()
}

/// A source that chose `signature = "standard_webhooks"` gets each status
/// signed as Standard Webhooks 1.0 has it, under its secret and, during a
/// rotation, its retiring secret too: the published library verifies every
/// call with either, and refuses them under any other secret or when the
/// body was changed. `webhook-id` is the status's stable id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_callbacks_verify_with_the_published_library() {
    let calls: Calls = Arc::default();
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(record))
        .with_state(calls.clone());
    let t = stack_with_callback(CallbackSettings {
        url: format!("{}/hooks", serve(app).await),
        secret: SW_NEW.into(),
        retiring_secrets: vec![SW_RETIRING.into()],
        signature: CallbackSignature::StandardWebhooks,
    })
    .await;
    let credited = t.accept("sw-1", &deal(ADA, &amount_for(250))).await;
    let failed = t
        .accept(
            "sw-2",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    until(
        "both statuses delivered",
        pointsflow_tests::PATIENCE,
        || calls.lock().unwrap().len() >= 2,
    )
    .await;
    let expected = [
        status_id(&t, &credited, "credited").await,
        status_id(&t, &failed, "failed").await,
    ];
    t.stack.shutdown().await;
    let calls = calls.lock().unwrap().clone();
    let ids: std::collections::BTreeSet<&str> = calls
        .iter()
        .map(|(h, _)| h["webhook-id"].as_str())
        .collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect());
    for (headers, body) in &calls {
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(payload["event_id"], headers["webhook-id"].as_str());
        assert_eq!(headers["webhook-signature"].split(' ').count(), 2);
        assert!(!headers.contains_key("x-pointsflow-signature"));
    }
    let n = calls.len();
    assert_eq!(
        python_verdicts(&calls, &[SW_NEW, SW_RETIRING]),
        vec!["verified".to_owned(); 2 * n]
    );
    let stranger = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // Each body with its points changed.
    let tampered: Vec<_> = calls
        .iter()
        .map(|(h, b)| {
            let mut payload: Value = serde_json::from_slice(b).unwrap();
            payload["points"] = json!(1_000_000);
            (h.clone(), serde_json::to_vec(&payload).unwrap())
        })
        .collect();
    for verdict in python_verdicts(&calls, &[stranger])
        .into_iter()
        .chain(python_verdicts(&tampered, &[SW_NEW]))
    {
        assert_eq!(verdict, "refused: No matching signature found");
    }
}
