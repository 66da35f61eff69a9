//! `pointsflow ops` reaches the admin API of the local stack (with an
//! operator's key) and of a deployed stack (signed with SigV4, checked
//! against AWS's own SDK), and redrives a large dead-letter queue in
//! rounds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use pointsflow_local::ops::{self, Target};
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

/// One call the stand-in for API Gateway received: the command, the
/// headers and the body.
type Call = (String, Vec<(String, String)>, Vec<u8>);

/// What the stand-in for API Gateway received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Call>>>);

async fn gateway(
    State(received): State<Received>,
    Path(command): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    received
        .0
        .lock()
        .unwrap()
        .push((command, headers, body.to_vec()));
    axum::Json(json!({"ok": true, "command": "get", "result": {}}))
}

/// The Authorization header botocore (AWS's Python SDK, in the test
/// virtualenv) computes for the same request at the same time.
fn botocore_authorization(url: &str, body: &[u8], amz_date: &str, token: &str) -> String {
    let script = r#"
import sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, amz_date, token = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.stdin.buffer.read()
request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
auth = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "execute-api", "eu-west-1")
request.context["timestamp"] = amz_date
auth._modify_request_before_signing(request)
canonical = auth.canonical_request(request)
signature = auth.signature(auth.string_to_sign(request, canonical), request)
auth._inject_signature_to_request(request, signature)
print(request.headers["Authorization"])
"#;
    pointsflow_harness::python::run(script, &[url, amz_date, token], body)
}

/// Deployed, `pointsflow` signs its admin calls with SigV4 from the
/// shell's credentials (service execute-api): the signature is the one
/// AWS's own SDK computes for the same request, and nothing in it names
/// the operator (API Gateway does, from the signature).
#[tokio::test]
async fn the_deployed_target_signs_its_calls_as_aws_does() {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/admin/commands/{command}", axum::routing::post(gateway))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let token = "session-token-example";
    let credentials = aws_credential_types::Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some(token.into()),
        None,
        "test",
    );
    let target = Target::new(
        &api,
        ops::Auth::Iam {
            credentials,
            region: "eu-west-1".into(),
        },
    );
    let answer = target
        .invoke(json!({"command": "get", "request_id": "pr_00000000000000000000000000000001"}))
        .await
        .unwrap();
    assert_eq!(answer["ok"], true, "{answer:#}");
    let (command, headers, body) = received.0.lock().unwrap().pop().unwrap();
    assert_eq!(command, "get");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} header: {headers:?}"))
    };
    assert_eq!(header("x-amz-security-token"), token);
    assert!(!String::from_utf8_lossy(&body).contains("operator"));
    let authorization = header("authorization");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && authorization.contains("/eu-west-1/execute-api/aws4_request"),
        "{authorization}"
    );
    let url = format!("{api}/v1/admin/commands/get");
    assert_eq!(
        authorization,
        botocore_authorization(&url, &body, &header("x-amz-date"), token)
    );
}
