//! The built operations binary answers console events through the Lambda
//! Runtime API, on the emulator, calling only the AWS actions its policy in
//! template.yaml grants: a search (an index), a redrive (the queues) and a
//! get, each written to the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CONFIG, Provisioned};
use serde_json::{Value, json};

fn event_file(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../infra/events/operations/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap()
}

async fn invoke(stack: &Provisioned, event: Value) -> Value {
    stack
        .respond(
            env!("CARGO_BIN_EXE_pointsflow-operations"),
            "OperationsFunction",
            event,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_the_console_events() {
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-ops"),
        CONFIG,
    )
    .await
    .unwrap();

    let answer = invoke(&stack, event_file("search.json")).await;
    assert_eq!(answer["ok"], true, "{answer:#}");
    assert_eq!(answer["result"]["requests"], json!([]));

    // A message in the dispatch DLQ goes back to the dispatch queue.
    let sdk = pointsflow_harness::emulator::config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    sqs.send_message()
        .queue_url(&stack.dispatch.dlq_url)
        .message_body(r#"{"request_id":"pr_3c5a0d4e9b1f2a7c8d6e0f1a2b3c4d5e"}"#)
        .send()
        .await
        .unwrap();
    let answer = invoke(&stack, event_file("redrive.json")).await;
    assert_eq!(answer["ok"], true, "{answer:#}");
    assert_eq!(answer["result"]["report"]["moved"], 1, "{answer:#}");
    let moved = sqs
        .receive_message()
        .queue_url(&stack.dispatch.url)
        .send()
        .await
        .unwrap();
    assert_eq!(moved.messages().len(), 1);

    // An unknown request: a clear error, and the invocation succeeded.
    let answer = invoke(&stack, event_file("get.json")).await;
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"]["code"], "not_found");

    let answer = invoke(
        &stack,
        event_file("audit.json")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("day");
                Value::Object(o)
            })
            .unwrap(),
    )
    .await;
    let commands: Vec<&str> = answer["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        ["search", "redrive", "get", "audit"],
        "{answer:#}"
    );
}
