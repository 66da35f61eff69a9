//! The built dispatch binary answers an SQS event through the Lambda Runtime
//! API: it credits a reserved request at a partner and posts the ledger in
//! DynamoDB on the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use chrono::DateTime;
use pointsflow_aws::{DynamoLedger, DynamoRequestStore};
use pointsflow_conformance::runtime_api::{self, Outcome};
use pointsflow_core::ledger::{AccountId, Entry};
use pointsflow_core::partner::Destination;
use pointsflow_core::ports::{LedgerRead, LedgerWrite, RequestCreate, RequestGet, RequestUpdate};
use pointsflow_core::request::{Award, NewRequest, Recipient, SourceEvent, Status, StatusKind};
use pointsflow_core::values::{
    EventType, IdempotencyKey, MemberNumber, PartnerId, Points, ProgramId, RecipientId, SourceId,
};
mod common;

use common::Provisioned;
use pointsflow_sandbox::{SandboxConfig, SandboxMember, SandboxPartner};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_credits_a_reserved_request_through_the_runtime_api() {
    let sandbox = SandboxPartner::start(
        SandboxConfig {
            api_key: "partner-key".into(),
            members: vec![SandboxMember {
                member_number: "SKY1000001".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
            }],
            slow_response: Duration::from_secs(5),
            behaviour: Default::default(),
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Box::pin(std::future::pending()),
    )
    .await
    .unwrap();
    let config = format!(
        r#"
[[sources]]
id = "salesforce"
api_key = "pf_test_key_0123456789"

[[partners]]
id = "air"
kind = "rest"
base_url = "{}"
api_key = "partner-key"

[[programs]]
id = "sales-incentive"
sources = ["salesforce"]
name = "Sales incentive"
currency = "USD"
budget = 1000000
points = {{ rule = "given" }}
transfer = {{ mode = "realtime" }}
destination = {{ partner = "air", partner_program = "SKY" }}
"#,
        sandbox.base_url()
    );
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-disp"),
        &config,
    )
    .await
    .unwrap();
    let sdk = pointsflow_harness::emulator::config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoRequestStore::new(dynamodb.clone(), &stack.table);
    let ledger = DynamoLedger::new(dynamodb, &stack.table);

    // A request as eligibility leaves it: reserved, with its reservation.
    let program = ProgramId::parse("sales-incentive").unwrap();
    let partner = PartnerId::parse("air").unwrap();
    let member = MemberNumber::parse("SKY1000001").unwrap();
    let points = Points::new(300).unwrap();
    let now = chrono::Utc::now();
    ledger
        .apply(&[Entry::fund(
            &program,
            "initial",
            Points::new(1_000_000).unwrap(),
            now,
        )])
        .await
        .unwrap();
    let mut request = NewRequest {
        source: SourceId::parse("salesforce").unwrap(),
        idempotency_key: IdempotencyKey::parse("deal-1").unwrap(),
        program: program.clone(),
        recipient: Recipient {
            id: RecipientId::parse("0055g00000DemoAA1").unwrap(),
            email: None,
        },
        award: Some(Award::Points(points)),
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").unwrap(),
            id: None,
            occurred_at: DateTime::UNIX_EPOCH,
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(now);
    store.create(&request).await.unwrap();
    let reservation = Entry::reserve(
        &request.id,
        AccountId::budget(&program),
        AccountId::member(&partner, &member),
        points,
        Vec::new(),
        now,
    );
    ledger.apply(&[reservation]).await.unwrap();
    request.points = Some(points);
    request.member = Some(member.clone());
    request.destination = Some(Destination {
        partner: partner.clone(),
        partner_program: "SKY".into(),
    });
    request
        .transition(Status::Reserved, now, "reserved")
        .unwrap();
    store.update(&request).await.unwrap();

    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../eligibility/tests/fixtures/sqs-event.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    event["Records"][0]["body"] = json!(json!({"request_id": request.id}).to_string());
    let (outcome, _) = runtime_api::run_deployed(
        env!("CARGO_BIN_EXE_pointsflow-dispatch"),
        "DispatchFunction",
        event,
        |names| stack.env_named(names).unwrap(),
        &endpoint,
    )
    .await;

    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({"batchItemFailures": []})))
    );
    let stored = store.get(&request.id).await.unwrap().unwrap();
    assert_eq!(stored.state(), StatusKind::Credited);
    assert_eq!(sandbox.stats().credits, 1);
    let entries = ledger.entries_for(&request.id).await.unwrap();
    let account = pointsflow_core::ledger::invariants::balances_from_entries(&entries).unwrap()
        [&AccountId::member(&partner, &member)];
    assert_eq!(account.credits_posted, 300);
}

fn event_file(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../infra/events/dispatch/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_a_window_closing_and_the_resolver_schedule() {
    let config = r#"
[[sources]]
id = "hris"
api_key = "pf_test_key_0123456789"

[[partners]]
id = "air"
kind = "rest"
base_url = "http://127.0.0.1:9"
api_key = "partner-key"

[[programs]]
id = "payroll-bonus"
sources = ["hris"]
name = "Payroll bonus"
currency = "USD"
budget = 1000000
points = { rule = "given" }
transfer = { mode = "scheduled", cron = "0 18 * * *", time_zone = "Europe/London", consolidate = true }
destination = { partner = "air", partner_program = "SKY" }
"#;
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-win"),
        config,
    )
    .await
    .unwrap();
    let (outcome, _) = runtime_api::run_deployed(
        env!("CARGO_BIN_EXE_pointsflow-dispatch"),
        "DispatchFunction",
        event_file("window-closed.json"),
        |names| stack.env_named(names).unwrap(),
        &endpoint,
    )
    .await;
    let Some(Outcome::Response(run)) = outcome else {
        panic!("no response: {outcome:?}");
    };
    assert_eq!(run["window"], "payroll-bonus@2030-01-01T18:00Z");
    assert_eq!(run["state"], "planning", "claimed; its planning is queued");

    let (outcome, _) = runtime_api::run_deployed(
        env!("CARGO_BIN_EXE_pointsflow-dispatch"),
        "DispatchFunction",
        event_file("resolve-unsettled.json"),
        |names| stack.env_named(names).unwrap(),
        &endpoint,
    )
    .await;
    assert_eq!(
        outcome,
        Some(Outcome::Response(json!({
            "requeued": 0,
            "oldest_age_seconds": 0,
            "stalled": 0,
            "oldest_stalled_age_seconds": 0,
            "swept": 0,
            "found_stalled": 0,
            "sweep_lag_seconds": 0
        })))
    );
}
