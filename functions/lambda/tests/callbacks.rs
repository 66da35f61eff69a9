//! The built callbacks binary answers an SQS event through the Lambda
//! Runtime API: it reads the request from DynamoDB on the emulator and posts
//! its final status, signed, to the source's callback URL, calling only the
//! AWS actions its policy in template.yaml grants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use pointsflow_aws::DynamoRequestStore;
use pointsflow_conformance::runtime_api::{self, Outcome};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{RequestCreate, RequestUpdate};
use pointsflow_core::request::{NewRequest, Recipient, SourceEvent, Status};
use pointsflow_core::values::{
    EventType, IdempotencyKey, Points, ProgramId, RecipientId, SourceId,
};
mod common;

use common::Provisioned;
use serde_json::{Value, json};

const SECRET: &str = "cb_test_secret_0123456789abcdef";

type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn receive(State(received): State<Received>, headers: HeaderMap, body: axum::body::Bytes) {
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    received.lock().unwrap().push((
        header("x-pointsflow-timestamp"),
        header("x-pointsflow-signature"),
        serde_json::from_slice(&body).unwrap(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_posts_a_final_status_through_the_runtime_api() {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/status", axum::routing::post(receive))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = format!(
        r#"
[[sources]]
id = "demo"
api_key = "pf_test_key_0123456789"
callback = {{ url = "{url}", secret = "{SECRET}" }}

[[partners]]
id = "air"
kind = "rest"
base_url = "http://127.0.0.1:9"
api_key = "partner-key"

[[programs]]
id = "sales-incentive"
sources = ["demo"]
name = "Sales incentive"
currency = "USD"
budget = 1000000
points = {{ rule = "given" }}
transfer = {{ mode = "realtime" }}
destination = {{ partner = "air", partner_program = "SKY" }}
"#
    );
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-cb"),
        &config,
    )
    .await
    .unwrap();
    let sdk = pointsflow_harness::emulator::config().await;
    let store = DynamoRequestStore::new(aws_sdk_dynamodb::Client::new(&sdk), &stack.table);
    let now = Utc::now();
    let mut request = NewRequest {
        source: SourceId::parse("demo").unwrap(),
        idempotency_key: IdempotencyKey::parse("deal-1").unwrap(),
        program: ProgramId::parse("sales-incentive").unwrap(),
        recipient: Recipient {
            id: RecipientId::parse("0055g00000DemoAA1").unwrap(),
            email: None,
        },
        award: Some(pointsflow_core::request::Award::Points(
            Points::new(300).unwrap(),
        )),
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").unwrap(),
            id: Some("0065g00000Q4zXyAAB".into()),
            occurred_at: now,
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(now);
    store.create(&request).await.unwrap();
    request.points = Some(Points::new(300).unwrap());
    for to in [Status::Reserved, Status::Dispatching, Status::Credited] {
        request.transition(to, now, "test").unwrap();
    }
    store.update(&request).await.unwrap();
    let message = CallbackMessage::latest(&request).unwrap();

    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../eligibility/tests/fixtures/sqs-event.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    event["Records"][0]["body"] = json!(serde_json::to_string(&message).unwrap());
    let (outcome, _) = runtime_api::run_deployed(
        env!("CARGO_BIN_EXE_pointsflow-callbacks"),
        "CallbacksFunction",
        event,
        |names| stack.env_named(names).unwrap(),
        &endpoint,
    )
    .await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (timestamp, signature, payload) = &received[0];
    assert_eq!(payload["status"], "credited");
    // The id of the credited line's event (received, reserved, dispatching, credited).
    assert_eq!(payload["event_id"], format!("{}:4", request.id));
    let body = serde_json::to_vec(payload).unwrap();
    // The signature covers the exact body sent; re-serialising the parsed
    // JSON gives the same bytes (keys in order, no whitespace).
    assert_eq!(
        *signature,
        format!(
            "sha256={}",
            pointsflow_callbacks::signature(SECRET.as_bytes(), timestamp, &body)
        )
    );
}
