//! The built intake binary answers an API Gateway v2 event through the Lambda
//! Runtime API, against the AWS API emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use pointsflow_conformance::runtime_api::{self, Outcome, RuntimeApi};
mod common;

use common::Provisioned;
use serde_json::Value;

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
sources = ["salesforce"]
name = "Sales incentive"
currency = "USD"
budget = 1000000
points = { rule = "rate", points = 2, per = "100" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_accepts_a_request_through_the_runtime_api() {
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-intake"),
        CONFIG,
    )
    .await
    .unwrap();
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../intake/tests/fixtures/apigw-v2-create.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let (outcome, _) = runtime_api::run_deployed(
        env!("CARGO_BIN_EXE_pointsflow-intake"),
        "IntakeFunction",
        event,
        |names| stack.env_named(names).unwrap(),
        &endpoint,
    )
    .await;

    let Some(Outcome::Response(response)) = outcome else {
        panic!("no response from the binary: {outcome:?}");
    };
    assert_eq!(response["statusCode"], 202, "{response:#}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "received");

    // The request is stored and queued for eligibility.
    let sqs = aws_sdk_sqs::Client::new(&pointsflow_harness::emulator::config().await);
    let received = sqs
        .receive_message()
        .queue_url(&stack.eligibility.url)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = received
        .messages()
        .iter()
        .filter_map(|m| m.body())
        .collect();
    assert_eq!(
        bodies,
        [serde_json::json!({"request_id": body["id"]}).to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_stops_the_cold_start_naming_it() {
    let mut api = RuntimeApi::start("pointsflow-intake", Value::Null).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pointsflow-intake"))
        .envs(api.lambda_env("pointsflow-intake"))
        .env_remove("POINTSFLOW_TABLE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let outcome = api.outcome(Duration::from_millis(100)).await;
    let reported = format!("{stderr} {outcome:?}");
    assert!(
        reported.contains("POINTSFLOW_TABLE"),
        "the error does not name the variable: {reported}"
    );
}
