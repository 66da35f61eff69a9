//! A double of the Lambda Runtime API, so a built function binary can be run
//! as Lambda runs it: it asks for the next invocation, gets `event`, and posts
//! its response (or error) back, which the test then reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::mpsc;

pub const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";

/// What the function sent back.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error(Value),
    InitError(Value),
}

struct Api {
    event: Value,
    function_arn: String,
    served: AtomicBool,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

async fn next(State(api): State<Arc<Api>>) -> impl IntoResponse {
    if api.served.swap(true, Ordering::SeqCst) {
        // One invocation per test: later polls wait, as an idle runtime does.
        std::future::pending::<()>().await;
    }
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(30);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", REQUEST_ID.into());
    set(
        "lambda-runtime-deadline-ms",
        deadline.timestamp_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        api.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into(),
    );
    (StatusCode::OK, headers, api.event.to_string())
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(api): State<Arc<Api>>,
    Path(_id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let _ = api.outcomes.send(Outcome::Response(json(&body)));
    StatusCode::ACCEPTED
}

async fn error(
    State(api): State<Arc<Api>>,
    Path(_id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let _ = api.outcomes.send(Outcome::Error(json(&body)));
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> StatusCode {
    let _ = api.outcomes.send(Outcome::InitError(json(&body)));
    StatusCode::ACCEPTED
}

/// A running Runtime API double serving one invocation of `event`.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl RuntimeApi {
    pub async fn start(function: &str, event: Value) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let api = Arc::new(Api {
            event,
            function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
            served: AtomicBool::new(false),
            outcomes: tx,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, outcomes: rx }
    }

    /// The environment Lambda gives a function, pointing at this double.
    pub fn lambda_env(&self, function: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/27/[$LATEST]test".into(),
            ),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The function's answer to the invocation, waiting up to `within`.
    pub async fn outcome(&mut self, within: Duration) -> Option<Outcome> {
        tokio::time::timeout(within, self.outcomes.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Runs a built function binary for one invocation of `event`, as Lambda
/// would run it deployed from template.yaml: with exactly the environment the
/// template gives `logical_id` (values from `env_for`), and an access key of
/// its own so the emulator at `endpoint` can tell its calls apart. Fails if
/// the function called an AWS action its policy does not grant. Returns the
/// function's answer and the time from process start to it.
pub async fn run_deployed(
    binary: &str,
    logical_id: &str,
    event: Value,
    env_for: impl FnOnce(&std::collections::BTreeSet<String>) -> Vec<(String, String)>,
    endpoint: &str,
) -> (Option<Outcome>, Duration) {
    let function = std::path::Path::new(binary)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("function")
        .to_owned();
    let spec = crate::template::function(logical_id);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("{}{nanos}", logical_id.to_ascii_lowercase());
    let mut api = RuntimeApi::start(&function, event).await;
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(api.lambda_env(&function))
        .env("AWS_ACCESS_KEY_ID", &key)
        .envs(env_for(&spec.env))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // A hang guard, not a speed target: long enough for a busy machine
    // and a slow emulator.
    let outcome = api.outcome(Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    child.kill().await.unwrap();
    let called = crate::template::calls(endpoint, &key).await;
    let ungranted: Vec<_> = called.difference(&spec.actions).collect();
    assert!(
        !called.is_empty() && ungranted.is_empty(),
        "{logical_id} called {ungranted:?}, which its policy in template.yaml does not grant (it called {called:?})"
    );
    // Every item it touched is under a partition key its policy's
    // dynamodb:LeadingKeys conditions grant for that action.
    let touched = crate::template::touched(endpoint, &key).await;
    let outside: Vec<_> = touched
        .iter()
        .filter(|(action, resource, pk)| {
            !spec
                .statements
                .iter()
                .any(|s| s.allows(action, resource, pk))
        })
        .collect();
    assert!(
        outside.is_empty(),
        "{logical_id} touched items outside its policy's LeadingKeys in template.yaml: {outside:?} (it touched {touched:?})"
    );
    eprintln!("{function}: process start to first response {elapsed:?}");
    (outcome, elapsed)
}
