//! The built admin binary answers API Gateway's event for an IAM-authorized
//! route through the Lambda Runtime API, against the AWS API emulator: the
//! operator is the principal in the request context, its roles come from
//! the configuration, and every item it touches is one its policy grants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Provisioned;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[sources]]
id = "salesforce"
api_key = "pf_test_key_0123456789"

[[partners]]
id = "air"
kind = "rest"
base_url = "http://127.0.0.1:9"
api_key = "partner-key"

[[programs]]
id = "sales-incentive"
name = "Sales incentive"
currency = "USD"
sources = ["salesforce"]
budget = 1000000
points = { rule = "rate", points = 2, per = "100" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }

[[operators]]
id = "admins"
principals = ["arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/*"]
roles = ["viewer", "admin"]
"#;

/// The fixture event for `command` with `body`.
fn event(command: &str, body: &Value) -> Value {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../admin/tests/fixtures/apigw-v2-iam.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let path = format!("/v1/admin/commands/{command}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"]["command"] = json!(command);
    event["body"] = json!(body.to_string());
    event
}

async fn invoke(stack: &Provisioned, event: Value) -> Value {
    stack
        .respond(
            env!("CARGO_BIN_EXE_pointsflow-admin"),
            "AdminFunction",
            event,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_commands_as_the_request_contexts_principal() {
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-admin"),
        CONFIG,
    )
    .await
    .unwrap();

    // An admin proposes a revision: stored as a proposal, nothing applied.
    let program: Value = json!({
        "id": "sales-incentive", "name": "Sales incentive", "currency": "USD",
        "sources": ["salesforce"], "budget": 2000000,
        "points": {"rule": "rate", "points": 2, "per": "100"},
        "transfer": {"mode": "realtime"},
        "destination": {"partner": "air", "partner_program": "SKY"}
    });
    let response = invoke(
        &stack,
        event(
            "propose_program",
            &json!({"revision": 1, "program": program, "reason": "budget"}),
        ),
    )
    .await;
    assert_eq!(response["statusCode"], 200, "{response:#}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let proposal = body["result"]["proposal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        body["result"]["proposal"]["proposed_by"],
        "arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/anna"
    );

    // The same principal cannot confirm it.
    let response = invoke(&stack, event("confirm", &json!({"proposal_id": proposal}))).await;
    assert_eq!(response["statusCode"], 403, "{response:#}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "four_eyes");

    // The audit log (in DynamoDB) names the principal, as IAM established it.
    let response = invoke(&stack, event("audit", &json!({}))).await;
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let entries = body["result"]["entries"].as_array().unwrap();
    assert!(
        entries.iter().all(|e| e["operator"]
            == "arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/anna"
            && e["verified"] == "iam"),
        "{entries:#?}"
    );
    let commands: Vec<&str> = entries
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["propose_program", "confirm", "audit"]);
}
