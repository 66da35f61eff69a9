//! `pointsflow ops` reaches the operations function of the local stack
//! (with an operator's key) and of a deployed stack (the Lambda Invoke API
//! of the function `{stack}-operations`, here served by a stand-in for the
//! Lambda service that runs the local stack's operations), and redrives a
//! large dead-letter queue in rounds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use pointsflow_local::ops::{self, Target};
use pointsflow_operations::Operations;
use pointsflow_tests::{ADA, OPERATOR_KEY, deal, spawn_stack};
use serde_json::{Value, json};

#[tokio::test]
async fn the_local_target_runs_commands_and_redrives_in_rounds() {
    let t = spawn_stack(|_| {}).await;
    let id = t.accept("cli-1", &deal(ADA, "12550.00")).await;
    t.wait_for(&id, &["credited"]).await;
    let target = Target::local(&t.base, OPERATOR_KEY);
    let answer = target
        .invoke(json!({"command": "get", "request_id": id}))
        .await
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer:#}");
    let rendered = ops::render("get", &answer);
    assert!(rendered.contains("credited"), "{rendered}");

    let bad = Target::local(&t.base, "not-a-key")
        .invoke(json!({"command": "get", "request_id": id}))
        .await
        .unwrap();
    assert_eq!(bad["error"]["code"], "unauthorized");

    // 250 dead letters (duplicates of a settled request: harmless) go back
    // in three rounds.
    let bodies: Vec<String> = (0..10)
        .map(|_| json!({"request_id": id}).to_string())
        .collect();
    for _ in 0..25 {
        t.stack.queues.dispatch_dlq.send_batch(&bodies).unwrap();
    }
    let answer = ops::redrive(&target, "dispatch", None).await.unwrap();
    assert_eq!(answer["result"]["report"]["moved"], 250, "{answer:#}");
    assert_eq!(answer["result"]["report"]["left"], 0);
    t.settle().await;
    assert_eq!(t.get(&id).await["status"], "credited");
    let redrives = t
        .stack
        .audit
        .all()
        .iter()
        .filter(|e| e.command == "redrive")
        .count();
    assert_eq!(redrives, 3);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[derive(Clone)]
struct FakeLambda {
    operations: Operations,
    invoked: Arc<Mutex<Vec<String>>>,
}

/// `POST /2015-03-31/functions/{name}/invocations`, as the Lambda service
/// answers a synchronous invocation: the function's JSON answer.
async fn invocations(
    State(fake): State<FakeLambda>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    fake.invoked.lock().unwrap().push(name);
    let event: Value = serde_json::from_slice(&body).unwrap();
    axum::Json(serde_json::to_value(fake.operations.invoke(event).await).unwrap())
}

#[tokio::test]
async fn the_deployed_target_invokes_the_stacks_function_as_the_operator() {
    let t = spawn_stack(|_| {}).await;
    let id = t.accept("cli-2", &deal(ADA, "12550.00")).await;
    t.wait_for(&id, &["credited"]).await;
    let fake = FakeLambda {
        operations: t.stack.operations.clone(),
        invoked: Arc::new(Mutex::new(Vec::new())),
    };
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invocations),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sdk = pointsflow_harness::emulator::config_at(&url).await;
    let target = Target::deployed_with(&sdk, "pointsflow-prod", "ana");
    let answer = target
        .invoke(json!({"command": "reverse", "request_id": id, "points": 1, "reason": "test"}))
        .await
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer:#}");
    assert_eq!(
        *fake.invoked.lock().unwrap(),
        ["pointsflow-prod-operations"]
    );
    let audit = t.stack.audit.all();
    assert_eq!(audit.last().unwrap().operator.as_str(), "ana");
    t.check_ledger();
    t.stack.shutdown().await;
}
