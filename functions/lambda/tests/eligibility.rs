//! The built eligibility binary answers an SQS event through the Lambda
//! Runtime API, with its request and ledger in DynamoDB on the emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::DateTime;
use pointsflow_aws::{DynamoLedger, DynamoRequestStore};
use pointsflow_conformance::runtime_api::{self, Outcome};
use pointsflow_core::ledger::Entry;
use pointsflow_core::money::{Currency, Money};
use pointsflow_core::ports::{LedgerWrite, RequestCreate, RequestGet};
use pointsflow_core::request::{Award, NewRequest, Recipient, SourceEvent, StatusKind};
use pointsflow_core::values::{
    EventType, IdempotencyKey, Points, ProgramId, RecipientId, SourceId,
};
mod common;

use common::Provisioned;
use pointsflow_sandbox::{SandboxConfig, SandboxMember, SandboxPartner};
use serde_json::{Value, json};

/// The configuration, with the partner at `partner_url`.
fn config(partner_url: &str) -> String {
    CONFIG.replace("http://127.0.0.1:9", partner_url)
}

const CONFIG: &str = r#"
[[sources]]
id = "salesforce"
api_key = "pf_test_key_0123456789"

[[partners]]
id = "air"
kind = "rest"
base_url = "http://127.0.0.1:9"
api_key = "sandbox-partner-key"

[[programs]]
id = "sales-incentive"
sources = ["salesforce"]
name = "Sales incentive"
currency = "USD"
budget = 1000000
points = { rule = "rate", points = 2, per = "100" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }

[[members]]
program = "sales-incentive"
recipient = "0055g00000DemoAA1"
member_number = "SKY1000001"
first_name = "Ada"
last_name = "Lovelace"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reserves_a_request_through_the_runtime_api() {
    let endpoint = pointsflow_harness::emulator::endpoint();
    // The partner validates the member before the first reservation.
    let partner = SandboxPartner::start(
        SandboxConfig {
            api_key: "sandbox-partner-key".into(),
            members: vec![SandboxMember {
                member_number: "SKY1000001".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
            }],
            slow_response: std::time::Duration::from_secs(1),
            behaviour: Default::default(),
        },
        "127.0.0.1:0".parse().unwrap(),
        Box::pin(std::future::pending()),
    )
    .await
    .unwrap();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-elig"),
        &config(&partner.base_url()),
    )
    .await
    .unwrap();
    let sdk = pointsflow_harness::emulator::config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoRequestStore::new(dynamodb.clone(), &stack.table);
    let ledger = DynamoLedger::new(dynamodb, &stack.table);
    let program = ProgramId::parse("sales-incentive").unwrap();
    ledger
        .apply(&[Entry::fund(
            &program,
            "initial",
            Points::new(1_000_000).unwrap(),
            DateTime::UNIX_EPOCH,
        )])
        .await
        .unwrap();
    let request = NewRequest {
        source: SourceId::parse("salesforce").unwrap(),
        idempotency_key: IdempotencyKey::parse("deal-1").unwrap(),
        program,
        recipient: Recipient {
            id: RecipientId::parse("0055g00000DemoAA1").unwrap(),
            email: None,
        },
        award: Some(Award::Amount(
            Money::parse("12550.00", Currency::parse("USD").unwrap()).unwrap(),
        )),
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").unwrap(),
            id: None,
            occurred_at: DateTime::UNIX_EPOCH,
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(chrono::Utc::now());
    store.create(&request).await.unwrap();

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
        env!("CARGO_BIN_EXE_pointsflow-eligibility"),
        "EligibilityFunction",
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
    assert_eq!(stored.state(), StatusKind::Reserved);
    assert_eq!(stored.points, Some(Points::new(251).unwrap()));
}
