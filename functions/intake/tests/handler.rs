//! The intake handler, fed API Gateway HTTP API (payload 2.0) events as Lambda receives them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::DateTime;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use pointsflow_config::SourceEntry;

mod common;
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ports::{Clock, Enrollments, RequestGet};
use pointsflow_core::program::Program;
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId, RequestId};
use pointsflow_intake::{Intake, IntakeConfig, IntakePorts};
use pointsflow_memory::{
    ManualClock, MemoryLedger, MemoryQueue, MemoryRequestStore, StaticCatalog,
};
use serde_json::{Value, json};

const KEY: &str = "pf_test_key_0123456789";
const OTHER_KEY: &str = "pf_other_key_0123456789";

struct Harness {
    intake: Intake,
    store: Arc<MemoryRequestStore>,
    queue: Arc<MemoryQueue>,
    links: Arc<pointsflow_memory::MemoryEnrollments>,
}

fn program() -> Program {
    common::program("sales-incentive", common::rate())
}

fn harness() -> Harness {
    let store = Arc::new(MemoryRequestStore::new());
    let queue = common::queue();
    // Ada is linked already (the configuration's link, or one made before).
    let links = Arc::new(pointsflow_memory::MemoryEnrollments::new([
        MemberLink::new(
            ProgramId::parse("sales-incentive").unwrap(),
            RecipientId::parse("0055g00000DemoAA1").unwrap(),
            MemberNumber::parse("SKY1000001").unwrap(),
            "Ada".into(),
            "Lovelace".into(),
        ),
    ]));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH));
    let intake = Intake::new(
        IntakeConfig {
            sources: vec![
                api_source("salesforce", KEY),
                api_source("workday", OTHER_KEY),
            ],
            max_body_bytes: 4096,
        },
        IntakePorts {
            create: store.clone(),
            get: store.clone(),
            ledger: Arc::new(MemoryLedger::new()),
            eligibility_queue: queue.clone(),
            programs: Arc::new(StaticCatalog::new([program(), closed_program()])),
            enrollments: links.clone(),
            waiting: store.clone(),
            clock,
        },
    );
    Harness {
        intake,
        store,
        queue,
        links,
    }
}

/// A program that lists only `workday`.
fn closed_program() -> Program {
    let mut p = common::program("recognition", common::rate());
    p.sources = vec![pointsflow_core::values::SourceId::parse("workday").unwrap()];
    p
}

fn api_source(id: &str, key: &str) -> SourceEntry {
    toml::from_str(&format!("id = \"{id}\"\napi_key = \"{key}\"")).unwrap()
}

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn event(mut raw: Value, edit: impl FnOnce(&mut Value)) -> Request {
    edit(&mut raw);
    lambda_http::request::from_str(&raw.to_string()).unwrap()
}

fn create_event(edit: impl FnOnce(&mut Value)) -> Request {
    event(fixture("apigw-v2-create.json"), edit)
}

fn set_body(v: &mut Value, body: &str) {
    v["body"] = Value::String(body.to_owned());
}

fn body_of(v: &Value) -> Value {
    serde_json::from_str(v["body"].as_str().unwrap()).unwrap()
}

fn json_of(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

fn assert_problem(response: &Response<Body>, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "{:?}", response.body());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem = json_of(response);
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16());
    assert!(
        problem["title"].is_string()
            && problem["detail"].is_string()
            && problem["type"].is_string()
    );
    problem
}

#[tokio::test]
async fn a_valid_request_is_accepted_stored_and_queued() {
    let h = harness();
    let response = h.intake.handle(create_event(|_| {})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_of(&response);
    assert_eq!(body["status"], "received");
    let id = RequestId::parse(body["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        response.headers()["location"],
        format!("/v1/points-requests/{id}")
    );
    assert_eq!(body["links"]["self"], format!("/v1/points-requests/{id}"));
    assert!(response.headers().get("idempotent-replayed").is_none());

    let stored = h.store.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.program.as_str(), "sales-incentive");
    assert_eq!(
        stored.recipient.email.as_ref().unwrap().as_str(),
        "ada@example.com"
    );
    assert_eq!(
        h.queue.peek_bodies(),
        vec![json!({"request_id": id}).to_string()]
    );
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_original_answer() {
    let h = harness();
    let first = h.intake.handle(create_event(|_| {})).await;
    // The same payload with other key order and whitespace is the same request.
    let replay = h
        .intake
        .handle(create_event(|v| {
            let b = body_of(v);
            let reordered = json!({"event": b["event"], "amount": b["amount"], "recipient": b["recipient"], "program": b["program"]});
            set_body(v, &serde_json::to_string_pretty(&reordered).unwrap());
        }))
        .await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(&first), json_of(&replay));
    assert_eq!(h.store.len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_changes_nothing() {
    let h = harness();
    let first = json_of(&h.intake.handle(create_event(|_| {})).await);
    let id = RequestId::parse(first["id"].as_str().unwrap()).unwrap();
    let before = h.store.get(&id).await.unwrap().unwrap();
    let response = h
        .intake
        .handle(create_event(|v| {
            let mut b = body_of(v);
            b["amount"]["value"] = json!("99999.00");
            set_body(v, &b.to_string());
        }))
        .await;
    assert_problem(&response, StatusCode::CONFLICT, "idempotency_key_reused");
    assert_eq!(h.store.get(&id).await.unwrap().unwrap(), before);
    assert_eq!(h.queue.depth(), 1);
}

#[tokio::test]
async fn the_same_key_from_another_source_is_another_request() {
    let h = harness();
    h.intake.handle(create_event(|_| {})).await;
    let other = h
        .intake
        .handle(create_event(|v| {
            v["headers"]["authorization"] = json!(format!("Bearer {OTHER_KEY}"))
        }))
        .await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert_eq!(h.store.len(), 2);
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let h = harness();
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Edit, StatusCode, &str, Option<&str>)> = vec![
        (
            Box::new(|v| {
                v["headers"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorization");
            }),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        (
            Box::new(|v| v["headers"]["authorization"] = json!("Bearer wrong-key-0000000000")),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        (
            Box::new(|v| v["headers"]["authorization"] = json!(format!("Basic {KEY}"))),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        (
            Box::new(|v| v["headers"]["content-type"] = json!("text/plain")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            Box::new(|v| set_body(v, &format!("{{\"pad\":\"{}\"}}", "x".repeat(5000)))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
        ),
        (
            Box::new(|v| {
                v["headers"]
                    .as_object_mut()
                    .unwrap()
                    .remove("idempotency-key");
            }),
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            None,
        ),
        (
            Box::new(|v| v["headers"]["idempotency-key"] = json!(" padded")),
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            None,
        ),
        (
            Box::new(|v| set_body(v, "{\"program\": ")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            Box::new(|v| set_body(v, "[1,2]")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(""),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["program"] = json!("no-such-program");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_program",
            Some("/program"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["program"] = json!("Not A Slug");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/program"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["recipient"]["id"] = json!("");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/recipient/id"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["recipient"]["email"] = json!("nope");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/recipient/email"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["amount"]["value"] = json!("-5");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/amount/value"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["amount"]["value"] = json!(true);
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/amount/value"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["amount"]["currency"] = json!("usd");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/amount/currency"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["points"] = json!(5);
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/points"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["event"]["occurred_at"] = json!("yesterday");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/event/occurred_at"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["event"]["type"] = json!(7);
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/event/type"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b.as_object_mut().unwrap().remove("recipient");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/recipient"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["event"].as_object_mut().unwrap().remove("occurred_at");
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/event/occurred_at"),
        ),
        (
            Box::new(|v| {
                let mut b = body_of(v);
                b["surprise"] = json!(1);
                set_body(v, &b.to_string());
            }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("/surprise"),
        ),
    ];
    for (i, (edit, status, code, field)) in cases.into_iter().enumerate() {
        let response = h.intake.handle(create_event(edit)).await;
        let problem = assert_problem(&response, status, code);
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "case {i}: {problem}");
        }
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
    }
    assert!(h.store.is_empty(), "a refused request stored something");
    assert_eq!(h.queue.depth(), 0, "a refused request queued something");
}

#[tokio::test]
async fn a_request_is_shown_to_its_source_only() {
    let h = harness();
    let id = json_of(&h.intake.handle(create_event(|_| {})).await)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |key: &str, id: &str| {
        let key = key.to_owned();
        let id = id.to_owned();
        event(fixture("apigw-v2-get.json"), move |v| {
            let path = format!("/v1/points-requests/{id}");
            v["rawPath"] = json!(path);
            v["requestContext"]["http"]["path"] = json!(path);
            v["headers"]["authorization"] = json!(format!("Bearer {key}"));
        })
    };
    let response = h.intake.handle(get(KEY, &id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let view = json_of(&response);
    assert_eq!(view["status"], "received");
    assert_eq!(view["timeline"][0]["state"], "received");
    assert_eq!(view["ledger"], json!([]));

    assert_problem(
        &h.intake.handle(get(OTHER_KEY, &id)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &h.intake
            .handle(get(KEY, "pr_00000000000000000000000000000000"))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &h.intake.handle(get(KEY, "../../etc")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &h.intake.handle(get("nope-nope-nope-nope", &id)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let h = harness();
    let response = h
        .intake
        .handle(create_event(|v| {
            v["rawPath"] = json!("/v2/whatever");
            v["requestContext"]["http"]["path"] = json!("/v2/whatever");
        }))
        .await;
    assert_problem(&response, StatusCode::NOT_FOUND, "not_found");
    let response = h
        .intake
        .handle(create_event(|v| {
            v["requestContext"]["http"]["method"] = json!("DELETE")
        }))
        .await;
    let problem = assert_problem(
        &response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_eq!(response.headers()["allow"], "POST", "{problem}");
    assert!(h.store.is_empty());
}

fn put_link(key: &str, program: &str, recipient: &str, body: &str) -> Request {
    let (key, program, recipient, body) = (
        key.to_owned(),
        program.to_owned(),
        recipient.to_owned(),
        body.to_owned(),
    );
    event(fixture("apigw-v2-create.json"), move |v| {
        let path = format!("/v1/programs/{program}/members/{recipient}");
        v["rawPath"] = json!(path);
        v["requestContext"]["http"]["path"] = json!(path);
        v["requestContext"]["http"]["method"] = json!("PUT");
        v["headers"]["authorization"] = json!(format!("Bearer {key}"));
        v["headers"]
            .as_object_mut()
            .unwrap()
            .remove("idempotency-key");
        v["body"] = json!(body);
    })
}

/// The attack of issue 17, as a source's key would try it: re-pointing a
/// linked recipient's miles at another member account is refused and
/// changes nothing; a recipient without a link is linked, once.
#[tokio::test]
async fn a_source_creates_links_and_never_changes_one() {
    let h = harness();
    let program = ProgramId::parse("sales-incentive").unwrap();
    let ada = RecipientId::parse("0055g00000DemoAA1").unwrap();
    let grace = r#"{"member_number":"SKY1000005","first_name":"Grace","last_name":"Hopper"}"#;
    let before = h.links.member_link(&program, &ada).await.unwrap();

    let refused = h
        .intake
        .handle(put_link(KEY, "sales-incentive", "0055g00000DemoAA1", grace))
        .await;
    let problem = assert_problem(&refused, StatusCode::CONFLICT, "already_linked");
    assert!(
        !problem.to_string().contains("SKY1000001"),
        "the refusal reveals the member number: {problem}"
    );
    assert_eq!(h.links.member_link(&program, &ada).await.unwrap(), before);

    // A recipient with no link: created (201), then the same again is a
    // repeat (200); another member for it is refused like Ada's.
    let new = RecipientId::parse("0055g00000DemoAA9").unwrap();
    let created = h
        .intake
        .handle(put_link(KEY, "sales-incentive", new.as_str(), grace))
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.body()
    );
    let again = h
        .intake
        .handle(put_link(KEY, "sales-incentive", new.as_str(), grace))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let other = r#"{"member_number":"SKY1000006","first_name":"Grace","last_name":"Hopper"}"#;
    assert_problem(
        &h.intake
            .handle(put_link(KEY, "sales-incentive", new.as_str(), other))
            .await,
        StatusCode::CONFLICT,
        "already_linked",
    );
    // The link keeps who made it: a source's function writes no history.
    let link = h.links.member_link(&program, &new).await.unwrap().unwrap();
    assert_eq!(link.linked_by.as_deref(), Some("source:salesforce"));
    assert_eq!(link.member.as_str(), "SKY1000005");

    // A program that does not list the source is not found to it.
    assert_problem(
        &h.intake
            .handle(put_link(KEY, "recognition", "0055g00000DemoAA7", grace))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // An operator's routes are not intake's: no route, whatever the key.
    for (method, path) in [
        ("PUT", "/v1/programs/sales-incentive"),
        ("GET", "/v1/programs"),
        (
            "GET",
            "/v1/programs/sales-incentive/members/0055g00000DemoAA1",
        ),
        (
            "POST",
            "/v1/points-requests/pr_00000000000000000000000000000001/approve",
        ),
        ("GET", "/v1/windows/sales-incentive@2026-11-27T18:00Z"),
        ("POST", "/v1/admin/commands/link"),
    ] {
        let response = h
            .intake
            .handle(event(fixture("apigw-v2-create.json"), |v| {
                v["rawPath"] = json!(path);
                v["requestContext"]["http"]["path"] = json!(path);
                v["requestContext"]["http"]["method"] = json!(method);
            }))
            .await;
        let status = response.status();
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
    }
    assert_eq!(h.links.member_link(&program, &ada).await.unwrap(), before);
}
