//! `POST /v1/sources/{source}/events`: Salesforce Outbound Messages and
//! signed JSON webhooks, fed to the handler as API Gateway HTTP API events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use pointsflow_config::SourceEntry;
use pointsflow_core::ports::{Clock, Created, RequestCreate, StoreError};
use pointsflow_core::program::PointsRule;
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_intake::{Intake, IntakeConfig, IntakePorts, webhook_signature};
use pointsflow_memory::{
    ManualClock, MemoryLedger, MemoryQueue, MemoryRequestStore, StaticCatalog,
};

mod common;
use common::program;
use serde_json::{Value, json};

const TOKEN: &str = "sf_test_token_0123456789abcdef";
const ORG_15: &str = "00D5g000004XyZa";
const SECRET_OLD: &str = "hris_old_secret_0123456789abcdef0123";
const SECRET_NEW: &str = "hris_new_secret_0123456789abcdef0123";
const NOW: i64 = 1_795_795_200; // 2026-11-27T16:00:00Z
/// A Standard Webhooks secret (`whsec_` and a 32-byte key).
const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD8Xpq3shjV3I=";

const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;

fn sources(hmac_secrets: &[&str]) -> Vec<SourceEntry> {
    let secrets: Vec<String> = hmac_secrets.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        r#"
[[sources]]
id = "salesforce"
kind = "salesforce_outbound_message"
program = "sales-incentive"
salesforce = {{ tokens = ["{TOKEN}"], org_ids = ["{ORG_15}"] }}
mapping = {{ recipient = "OwnerId", amount = "Amount", currency_field = "CurrencyIsoCode", currency = "USD", event_type = "opportunity.closed_won", occurred_at = "CloseDate" }}
qualify = [{{ field = "StageName", equals = "Closed Won" }}]
routes = [{{ field = "Type", equals = "Renewal", program = "renewals" }}]

[[sources]]
id = "hris"
kind = "webhook"
program = "recognition"
webhook = {{ auth = "hmac", secrets = [{}] }}
mapping = {{ recipient = "/employee/id", points = "/award/points", event_id = "/id", event_type = "recognition.awarded", occurred_at = "/awarded_at" }}
qualify = [{{ field = "/status", in = ["approved", "final"] }}]

[[sources]]
id = "darwinbox"
kind = "webhook"
program = "recognition"
webhook = {{ auth = "standard_webhooks", secrets = ["{SW_SECRET}"] }}
mapping = {{ recipient = "/employee/id", points = "/award/points", event_type = "recognition.awarded" }}

[[sources]]
id = "workday"
kind = "webhook"
program = "recognition"
webhook = {{ auth = "basic", basic = [{{ username = "workday", password = "wd_password_0123456789" }}] }}
mapping = {{ recipient = "/worker", points = "/points", event_id = "/eventId", event_type = "recognition.awarded" }}
"#,
        secrets.join(", ")
    );
    common::sources(&text)
}

/// A request store whose creates fail from the `fail_from`-th on, once each,
/// as a store might in the middle of a message.
struct Flaky {
    inner: Arc<MemoryRequestStore>,
    calls: AtomicUsize,
    fail_from: usize,
    failures_left: AtomicUsize,
}

#[async_trait]
impl RequestCreate for Flaky {
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_from
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                .is_ok()
        {
            return Err(StoreError::Unavailable("throttled".into()));
        }
        self.inner.create(request).await
    }
}

struct Harness {
    intake: Intake,
    store: Arc<MemoryRequestStore>,
    queue: Arc<MemoryQueue>,
    clock: Arc<ManualClock>,
}

fn harness_with(hmac_secrets: &[&str], failures: Option<(usize, usize)>) -> Harness {
    harness_of(sources(hmac_secrets), failures)
}

fn harness_of(sources: Vec<SourceEntry>, failures: Option<(usize, usize)>) -> Harness {
    // Every program lists every source of the harness.
    let ids: Vec<_> = sources.iter().map(|s| s.id.clone()).collect();
    let program = |id: &str, rule| {
        let mut p = program(id, rule);
        p.sources = ids.clone();
        p
    };
    let store = Arc::new(MemoryRequestStore::new());
    let queue = common::queue();
    let create: Arc<dyn RequestCreate> = match failures {
        Some((fail_from, count)) => Arc::new(Flaky {
            inner: store.clone(),
            calls: AtomicUsize::new(0),
            fail_from,
            failures_left: AtomicUsize::new(count),
        }),
        None => store.clone(),
    };
    let manual = Arc::new(ManualClock::new(
        DateTime::<Utc>::from_timestamp(NOW, 0).unwrap(),
    ));
    let clock: Arc<dyn Clock> = manual.clone();
    let intake = Intake::new(
        IntakeConfig {
            sources,
            max_body_bytes: 4096,
        },
        IntakePorts {
            create,
            get: store.clone(),
            ledger: Arc::new(MemoryLedger::new()),
            eligibility_queue: queue.clone(),
            programs: Arc::new(StaticCatalog::new([
                program("sales-incentive", common::rate()),
                program("renewals", common::rate()),
                program("recognition", PointsRule::Given),
            ])),
            enrollments: Arc::new(pointsflow_memory::MemoryEnrollments::default()),
            waiting: store.clone(),
            clock,
        },
    );
    Harness {
        intake,
        store,
        queue,
        clock: manual,
    }
}

fn harness() -> Harness {
    harness_with(&[SECRET_OLD], None)
}

fn api_event(path: &str, query: &str, headers: Value, body: &str) -> Request {
    common::event("POST", path, query, headers, body.as_bytes())
}

fn outbound(query: &str, body: &str) -> Request {
    api_event(
        "/v1/sources/salesforce/events",
        query,
        json!({"content-type": "text/xml; charset=utf-8", "soapaction": "\"\""}),
        body,
    )
}

struct Deal<'a> {
    notification: String,
    object: &'a str,
    id: String,
    stage: &'a str,
    amount: Option<&'a str>,
    kind: Option<&'a str>,
}

fn deal(n: usize, stage: &str) -> Deal<'_> {
    Deal {
        notification: format!("04l5g00000{n:05}AAA"),
        object: "Opportunity",
        id: format!("0065g00000{n:05}"),
        stage,
        amount: Some("12550.00"),
        kind: None,
    }
}

fn message(org: &str, deals: &[Deal<'_>]) -> String {
    let mut notifications = String::new();
    for d in deals {
        let amount = match d.amount {
            Some(a) => format!("<sf:Amount>{a}</sf:Amount>"),
            None => r#"<sf:Amount xsi:nil="true"/>"#.to_owned(),
        };
        let kind = match d.kind {
            Some(k) => format!("<sf:Type>{k}</sf:Type>"),
            None => r#"<sf:Type xsi:nil="true"/>"#.to_owned(),
        };
        notifications.push_str(&format!(
            r#"<Notification><Id>{}</Id><sObject xsi:type="sf:{}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>{}</sf:Id>{amount}<sf:CloseDate>2026-11-20</sf:CloseDate><sf:CurrencyIsoCode>USD</sf:CurrencyIsoCode><sf:Description xsi:nil="true"/><sf:OwnerId>0055g00000DemoAA1</sf:OwnerId><sf:StageName>{}</sf:StageName>{kind}</sObject></Notification>"#,
            d.notification, d.object, d.id, d.stage
        ));
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org}</OrganizationId><ActionId>04k5g000000XyZaAAK</ActionId><SessionId xsi:nil="true"/><EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/61.0/{org}</EnterpriseUrl><PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/61.0/{org}</PartnerUrl>{notifications}</notifications></soapenv:Body></soapenv:Envelope>"#
    )
}

fn text(response: &Response<Body>) -> String {
    String::from_utf8(response.body().as_ref().to_vec()).unwrap()
}

fn assert_fault(response: &Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "{}", text(response));
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let body = text(response);
    assert!(body.contains("<soapenv:Fault>"), "{body}");
    assert!(body.contains(&format!("<faultstring>{code}: ")), "{body}");
    assert!(!body.contains("<Ack>"), "{body}");
}

fn by_state(h: &Harness) -> (usize, usize) {
    let all = h.store.all().unwrap();
    let received = all
        .iter()
        .filter(|r| r.state() == StatusKind::Received)
        .count();
    let rejected = all
        .iter()
        .filter(|r| r.state() == StatusKind::Rejected)
        .count();
    (received, rejected)
}

#[tokio::test]
async fn one_notification_is_recorded_queued_and_acknowledged_exactly() {
    let h = harness();
    let response = h
        .intake
        .handle(outbound(
            &format!("token={TOKEN}"),
            &message(ORG_15, &[deal(1, "Closed Won")]),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(&response), ACK);
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.queue.depth(), 1);
    let r = &h.store.all().unwrap()[0];
    assert_eq!(r.state(), StatusKind::Received);
    assert_eq!(r.program.as_str(), "sales-incentive");
    assert_eq!(r.recipient.id.as_str(), "0055g00000DemoAA1");
    // The business key: org (18) + record (18) + program.
    assert_eq!(
        r.idempotency_key.as_str(),
        "00D5g000004XyZaEAK:0065g0000000001AAA:sales-incentive"
    );
    assert_eq!(r.event.id.as_deref(), Some("0065g0000000001AAA"));
    assert_eq!(
        r.event.attributes["salesforce_notification_id"],
        "04l5g0000000001AAA"
    );
    assert_eq!(
        r.event.occurred_at.to_rfc3339(),
        "2026-11-20T00:00:00+00:00"
    );
}

#[tokio::test]
async fn a_hundred_mixed_notifications_are_all_recorded_and_retries_add_nothing() {
    let h = harness();
    let mut deals: Vec<Deal<'_>> = (0..100)
        .map(|n| {
            deal(
                n,
                if n % 3 == 0 {
                    "Negotiation"
                } else {
                    "Closed Won"
                },
            )
        })
        .collect();
    // A custom object, a nil amount, and a route to another program.
    deals[1].object = "Deal__c";
    deals[1].id = "a015g00000AbCdE".into();
    deals[2].amount = None;
    deals[4].kind = Some("Renewal");
    let body = message(ORG_15, &deals);
    let response = h
        .intake
        .handle(outbound(&format!("token={TOKEN}"), &body))
        .await;
    assert_eq!(text(&response), ACK);
    assert_eq!(h.store.len(), 100);
    let not_qualifying = (0..100).filter(|n| n % 3 == 0).count();
    // Notification 2 has no amount: recorded as rejected, still acknowledged.
    assert_eq!(by_state(&h), (100 - not_qualifying - 1, not_qualifying + 1));
    assert_eq!(h.queue.depth(), 100 - not_qualifying - 1);
    let all = h.store.all().unwrap();
    let nil = all
        .iter()
        .find(|r| r.event.id.as_deref() == Some("0065g0000000002AAA"))
        .unwrap();
    assert_eq!(nil.state(), StatusKind::Rejected);
    let reason = serde_json::to_value(&nil.status).unwrap();
    assert_eq!(reason["reason"]["code"], "field_missing", "{reason}");
    let stage = all
        .iter()
        .find(|r| r.event.id.as_deref() == Some("0065g0000000000AAA"))
        .unwrap();
    let reason = serde_json::to_value(&stage.status).unwrap();
    assert_eq!(reason["reason"]["code"], "not_qualifying");
    assert!(
        reason["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("StageName must be 'Closed Won' (it is 'Negotiation')")
    );
    assert!(
        all.iter()
            .any(|r| r.event.attributes["salesforce_object"] == "Deal__c")
    );
    assert!(all.iter().any(|r| r.program.as_str() == "renewals"));

    // Salesforce retries the whole message: nothing new, acknowledged again.
    let again = h
        .intake
        .handle(outbound(&format!("token={TOKEN}"), &body))
        .await;
    assert_eq!(text(&again), ACK);
    assert_eq!(h.store.len(), 100);
    // The same deal reaching Closed Won again (a new notification id): no new request.
    let mut refired = deal(5, "Closed Won");
    refired.notification = "04l5g00000ZZZZZAAA".into();
    let once_more = h
        .intake
        .handle(outbound(
            &format!("token={TOKEN}"),
            &message("00D5g000004XyZaEAK", &[refired]),
        ))
        .await;
    assert_eq!(text(&once_more), ACK);
    assert_eq!(h.store.len(), 100);
}

#[tokio::test]
async fn credentials_and_org_are_checked_before_anything_is_recorded() {
    let h = harness();
    let body = message(ORG_15, &[deal(1, "Closed Won")]);
    assert_fault(
        &h.intake.handle(outbound("token=wrong", &body)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_fault(
        &h.intake.handle(outbound("", &body)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let foreign = message("00D000000000001", &[deal(1, "Closed Won")]);
    assert_fault(
        &h.intake
            .handle(outbound(&format!("token={TOKEN}"), &foreign))
            .await,
        StatusCode::FORBIDDEN,
        "org_not_allowed",
    );
    assert_eq!(h.store.len(), 0);
    assert_eq!(h.queue.depth(), 0);
}

#[tokio::test]
async fn hostile_or_broken_xml_is_a_fault_and_records_nothing() {
    let h = harness();
    let query = format!("token={TOKEN}");
    let dtd = r#"<?xml version="1.0"?><!DOCTYPE soapenv:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;</soapenv:Body></soapenv:Envelope>"#;
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
    let truncated = &message(ORG_15, &[deal(1, "Closed Won")])[..300];
    for body in [dtd, bomb, truncated, "not xml at all", ""] {
        let response = h.intake.handle(outbound(&query, body)).await;
        assert_fault(&response, StatusCode::BAD_REQUEST, "malformed_message");
    }
    let huge = format!(
        "{}{}",
        message(ORG_15, &[deal(1, "Closed Won")]),
        " ".repeat(1024 * 1024)
    );
    assert_fault(
        &h.intake.handle(outbound(&query, &huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_eq!(h.store.len(), 0);
}

#[tokio::test]
async fn a_storage_failure_mid_message_is_a_fault_and_the_retry_records_each_once() {
    // Creates 40.. fail (20 of them), as a throttled table might.
    let h = harness_with(&[SECRET_OLD], Some((40, 20)));
    let deals: Vec<Deal<'_>> = (0..100).map(|n| deal(n, "Closed Won")).collect();
    let body = message(ORG_15, &deals);
    let query = format!("token={TOKEN}");
    let first = h.intake.handle(outbound(&query, &body)).await;
    assert_fault(&first, StatusCode::INTERNAL_SERVER_ERROR, "unavailable");
    assert!(text(&first).contains("soapenv:Server"));
    assert!(h.store.len() < 100);
    let retry = h.intake.handle(outbound(&query, &body)).await;
    assert_eq!(text(&retry), ACK);
    assert_eq!(h.store.len(), 100);
    // Every request is queued at least once; duplicates are harmless.
    let queued: std::collections::BTreeSet<String> = h.queue.peek_bodies().into_iter().collect();
    assert_eq!(queued.len(), 100);
}

fn signed(secret: &str, at: i64, body: &str) -> Value {
    json!({
        "content-type": "application/json",
        "x-pointsflow-timestamp": at.to_string(),
        "x-pointsflow-signature": format!("sha256={}", webhook_signature(secret.as_bytes(), &at.to_string(), body.as_bytes())),
    })
}

fn recognition(id: &str, status: &str) -> String {
    json!({
        "id": id,
        "status": status,
        "employee": {"id": "E1001", "name": "Alan Turing"},
        "award": {"points": 500, "reason": "Shipped the release"},
        "awarded_at": "2026-11-21T15:00:00Z"
    })
    .to_string()
}

fn hris(headers: Value, body: &str) -> Request {
    api_event("/v1/sources/hris/events", "", headers, body)
}

/// The Standard Webhooks headers the published `standardwebhooks` Python
/// package makes for `body` sent as `id` at `at` under `secret`.
fn standard_signed(secret: &str, id: &str, at: i64, body: &str) -> Value {
    let signature = pointsflow_harness::python::run(
        r#"
import sys
from datetime import datetime, timezone
from standardwebhooks import Webhook
secret, msg_id, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=timezone.utc), sys.stdin.buffer.read()))
"#,
        &[secret, id, &at.to_string()],
        body.as_bytes(),
    );
    json!({
        "content-type": "application/json",
        "webhook-id": id,
        "webhook-timestamp": at.to_string(),
        "webhook-signature": signature,
    })
}

fn darwinbox(headers: Value, body: &str) -> Request {
    api_event("/v1/sources/darwinbox/events", "", headers, body)
}

/// A source with `auth = "standard_webhooks"` verifies what a sender signed
/// with a published Standard Webhooks library, and keys the event by its
/// `webhook-id` when no field is mapped for it: the sender's retry is the
/// same request. Anything else is refused and changes nothing.
#[tokio::test]
async fn a_standard_webhooks_event_is_verified_and_keyed_by_its_id() {
    let h = harness();
    let body = recognition("ignored-here", "approved");
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let first = h
        .intake
        .handle(darwinbox(standard_signed(SW_SECRET, id, NOW, &body), &body))
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED, "{}", text(&first));
    let retried = h
        .intake
        .handle(darwinbox(
            standard_signed(SW_SECRET, id, NOW + 60, &body),
            &body,
        ))
        .await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(h.store.len(), 1);
    let r = &h.store.all().unwrap()[0];
    assert_eq!(r.idempotency_key.as_str(), format!("{id}:recognition"));
    assert_eq!(r.event.id.as_deref(), Some(id));
    assert_eq!(r.recipient.id.as_str(), "E1001");

    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let next = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4X";
    let mut unsigned = standard_signed(SW_SECRET, next, NOW, &body);
    unsigned
        .as_object_mut()
        .unwrap()
        .remove("webhook-signature");
    let mut no_id = standard_signed(SW_SECRET, next, NOW, &body);
    no_id.as_object_mut().unwrap().remove("webhook-id");
    // Only the first 8 signatures are looked at: a header of thousands
    // costs no more than a few.
    let mut many = standard_signed(SW_SECRET, next, NOW, &body);
    let genuine = many["webhook-signature"].as_str().unwrap().to_owned();
    many["webhook-signature"] = json!(format!("{}{genuine}", "v1,AAAA ".repeat(5_000)));
    let mut other_id = standard_signed(SW_SECRET, next, NOW, &body);
    other_id["webhook-id"] = json!("msg_somebody_else");
    for (what, headers, sent) in [
        (
            "another secret",
            standard_signed(other, next, NOW, &body),
            body.clone(),
        ),
        (
            "too old",
            standard_signed(SW_SECRET, next, NOW - 301, &body),
            body.clone(),
        ),
        (
            "too new",
            standard_signed(SW_SECRET, next, NOW + 301, &body),
            body.clone(),
        ),
        (
            "another body",
            standard_signed(SW_SECRET, next, NOW, &body),
            body.replace("500", "50000"),
        ),
        ("another id", other_id, body.clone()),
        ("thousands of signatures", many, body.clone()),
        ("no signature", unsigned, body.clone()),
        ("no id", no_id, body.clone()),
        (
            "the pointsflow scheme",
            signed(SECRET_OLD, NOW, &body),
            body.clone(),
        ),
    ] {
        let refused = h.intake.handle(darwinbox(headers, &sent)).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(problem_code(&refused), "bad_signature", "{what}");
    }
    assert_eq!(h.store.len(), 1);
}

fn problem_code(response: &Response<Body>) -> String {
    let v: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    v["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_signed_webhook_is_accepted_once() {
    let h = harness();
    let body = recognition("rec-1", "approved");
    let response = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, &body), &body))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        text(&response)
    );
    let accepted: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(accepted["status"], "received");
    // A replay inside the window, even re-signed later, is the same request.
    let replay = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW + 60, &body), &body))
        .await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(h.store.len(), 1);
    // Still `received`, so the replay queued it again; eligibility ignores the duplicate.
    let queued: std::collections::BTreeSet<String> = h.queue.peek_bodies().into_iter().collect();
    assert_eq!(queued.len(), 1);
    let r = &h.store.all().unwrap()[0];
    assert_eq!(r.idempotency_key.as_str(), "rec-1:recognition");
    assert_eq!(r.recipient.id.as_str(), "E1001");
}

#[tokio::test]
async fn bad_signatures_change_nothing() {
    let h = harness();
    let body = recognition("rec-2", "approved");
    let wrong = h
        .intake
        .handle(hris(
            signed("not_the_secret_at_all_0123456789ab", NOW, &body),
            &body,
        ))
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_code(&wrong), "bad_signature");
    let stale = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW - 301, &body), &body))
        .await;
    assert_eq!(problem_code(&stale), "bad_signature");
    let future = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW + 301, &body), &body))
        .await;
    assert_eq!(problem_code(&future), "bad_signature");
    let changed = recognition("rec-2", "approved").replace("500", "50000");
    let tampered = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, &body), &changed))
        .await;
    assert_eq!(problem_code(&tampered), "bad_signature");
    let unsigned = h
        .intake
        .handle(hris(json!({"content-type": "application/json"}), &body))
        .await;
    assert_eq!(problem_code(&unsigned), "bad_signature");
    assert_eq!(h.store.len(), 0);
    assert_eq!(h.queue.depth(), 0);
}

#[tokio::test]
async fn secrets_rotate_with_both_valid_in_between() {
    let body_old = recognition("rec-3", "approved");
    let body_new = recognition("rec-4", "approved");
    let during = harness_with(&[SECRET_OLD, SECRET_NEW], None);
    for (secret, body) in [(SECRET_OLD, &body_old), (SECRET_NEW, &body_new)] {
        let r = during
            .intake
            .handle(hris(signed(secret, NOW, body), body))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let after = harness_with(&[SECRET_NEW], None);
    let old = after
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, &body_old), &body_old))
        .await;
    assert_eq!(problem_code(&old), "bad_signature");
    let new = after
        .intake
        .handle(hris(signed(SECRET_NEW, NOW, &body_new), &body_new))
        .await;
    assert_eq!(new.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_webhook_event_that_does_not_qualify_is_recorded_as_rejected() {
    let h = harness();
    let body = recognition("rec-5", "draft");
    let response = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, &body), &body))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(accepted["status"], "rejected", "{accepted}");
    assert_eq!(accepted["reason"]["code"], "not_qualifying");
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.queue.depth(), 0);
}

#[tokio::test]
async fn a_webhook_event_missing_a_mapped_field_is_refused_and_changes_nothing() {
    let h = harness();
    let body =
        json!({"id": "rec-6", "status": "approved", "employee": {"id": "E1001"}}).to_string();
    let response = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, &body), &body))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_code(&response), "invalid_field");
    let no_id = json!({"status": "approved"}).to_string();
    let response = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, &no_id), &no_id))
        .await;
    assert_eq!(problem_code(&response), "invalid_field");
    let not_json = "{nope";
    let response = h
        .intake
        .handle(hris(signed(SECRET_OLD, NOW, not_json), not_json))
        .await;
    assert_eq!(problem_code(&response), "malformed_json");
    assert_eq!(h.store.len(), 0);
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn basic_auth_for_hris_event_connectors() {
    let h = harness();
    let body = json!({"eventId": "wd-1", "worker": "21001", "points": 250}).to_string();
    let good = api_event(
        "/v1/sources/workday/events",
        "",
        json!({"content-type": "application/json", "authorization": basic("workday", "wd_password_0123456789")}),
        &body,
    );
    let response = h.intake.handle(good).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        text(&response)
    );
    for auth in [
        basic("workday", "wrong_password_0123456789"),
        basic("someone", "wd_password_0123456789"),
        "Basic !!!".to_owned(),
        "Bearer wd_password_0123456789".to_owned(),
    ] {
        let bad = api_event(
            "/v1/sources/workday/events",
            "",
            json!({"content-type": "application/json", "authorization": auth}),
            &body,
        );
        let response = h.intake.handle(bad).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(h.store.len(), 1);
}

/// An event with no time of its own is stamped with its receipt time; the
/// source's retry arrives later and must still be the same request, whether
/// the source maps no time field (`workday`) or maps one the event lacks
/// (`hris`).
#[tokio::test]
async fn a_retry_of_an_event_without_its_own_time_is_a_replay() {
    let h = harness();
    let workday = json!({"eventId": "wd-9", "worker": "21001", "points": 10}).to_string();
    let hris_body = json!({"id": "e9", "status": "approved", "employee": {"id": "E1001"}, "award": {"points": 10}}).to_string();
    let intake = &h.intake;
    let post = |at: i64| {
        let workday = api_event(
            "/v1/sources/workday/events",
            "",
            json!({"content-type": "application/json", "authorization": basic("workday", "wd_password_0123456789")}),
            &workday,
        );
        let hris = hris(signed(SECRET_OLD, at, &hris_body), &hris_body);
        async move { (intake.handle(workday).await, intake.handle(hris).await) }
    };
    let (first_workday, first_hris) = post(NOW).await;
    assert_eq!(
        first_workday.status(),
        StatusCode::ACCEPTED,
        "{}",
        text(&first_workday)
    );
    assert_eq!(
        first_hris.status(),
        StatusCode::ACCEPTED,
        "{}",
        text(&first_hris)
    );
    let stored: Vec<_> = h.store.all().unwrap();
    assert!(stored.iter().all(|r| r.event.occurred_at_is_receipt));

    h.clock.advance(chrono::Duration::milliseconds(61_234));
    let (workday_retry, hris_retry) = post(NOW + 61).await;
    for retry in [&workday_retry, &hris_retry] {
        assert_eq!(retry.status(), StatusCode::ACCEPTED, "{}", text(retry));
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
    }
    assert_eq!(h.store.len(), 2);

    // A different award under the same id is still a conflict.
    let changed = json!({"eventId": "wd-9", "worker": "21001", "points": 11}).to_string();
    let conflict = h
        .intake
        .handle(api_event(
            "/v1/sources/workday/events",
            "",
            json!({"content-type": "application/json", "authorization": basic("workday", "wd_password_0123456789")}),
            &changed,
        ))
        .await;
    assert_eq!(
        conflict.status(),
        StatusCode::CONFLICT,
        "{}",
        text(&conflict)
    );
}

#[tokio::test]
async fn an_unknown_source_is_unauthorized() {
    let h = harness();
    let body = recognition("rec-7", "approved");
    let response = h
        .intake
        .handle(api_event(
            "/v1/sources/nobody/events",
            "",
            signed(SECRET_OLD, NOW, &body),
            &body,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.store.len(), 0);
}

/// The sources of `infra/events/{dir}/sources.toml`, validated as a whole
/// configuration would be.
fn sample_sources(dir: &str) -> Vec<SourceEntry> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/events");
    let sources = std::fs::read_to_string(format!("{root}/{dir}/sources.toml")).unwrap();
    // Every program lists the sources that may submit to it: here, all of them.
    let ids: Vec<String> = common::sources(&sources)
        .iter()
        .map(|s| format!("\"{}\"", s.id))
        .collect();
    let listed = format!("sources = [{}]", ids.join(", "));
    let text = format!(
        r#"
[[partners]]
id = "air"
kind = "sandbox"

[[programs]]
id = "sales-incentive"
name = "Sales"
currency = "USD"
budget = 1000000
points = {{ rule = "rate", points = 2, per = "100" }}
transfer = {{ mode = "realtime" }}
destination = {{ partner = "air", partner_program = "SKY" }}
{listed}

[[programs]]
id = "recognition"
name = "Recognition"
currency = "USD"
budget = 1000000
points = {{ rule = "given" }}
transfer = {{ mode = "realtime" }}
destination = {{ partner = "air", partner_program = "SKY" }}
{listed}

{sources}"#
    );
    pointsflow_config::Config::parse(&text)
        .unwrap_or_else(|e| panic!("infra/events/{dir}/sources.toml: {e}"))
        .sources
}

fn sample(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/events");
    std::fs::read_to_string(format!("{root}/{path}")).unwrap()
}

#[tokio::test]
async fn the_salesforce_samples_are_accepted_as_documented() {
    let h = harness_of(sample_sources("salesforce"), None);
    for (source, token, file) in [
        (
            "salesforce",
            "sf_demo_token_7c1e9b2a4d6f8e0c",
            "outbound-message-closed-won.xml",
        ),
        (
            "salesforce",
            "sf_demo_token_7c1e9b2a4d6f8e0c",
            "outbound-message-mixed.xml",
        ),
        (
            "salesforce-deals",
            "sf_deals_token_0a9b8c7d6e5f4a3b2c1d",
            "outbound-message-custom-object.xml",
        ),
    ] {
        let response = h
            .intake
            .handle(api_event(
                &format!("/v1/sources/{source}/events"),
                &format!("token={token}"),
                json!({"content-type": "text/xml; charset=utf-8"}),
                &sample(&format!("salesforce/{file}")),
            ))
            .await;
        assert_eq!(text(&response), ACK, "{file}");
    }
    // Closed Won x3 received, Closed Lost rejected.
    assert_eq!(by_state(&h), (3, 1));
    let flow = sample("salesforce/flow-callout.json");
    let response = h
        .intake
        .handle(api_event(
            "/v1/points-requests",
            "",
            json!({"content-type": "application/json", "authorization": "Bearer pf_flow_key_5d2e8a1b7c4f9e3a", "idempotency-key": "0065g00000Q4zXyAAB"}),
            &flow,
        ))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        text(&response)
    );
}

#[tokio::test]
async fn the_hris_samples_are_accepted_as_documented() {
    let h = harness_of(sample_sources("hris"), None);
    let cases = [
        (
            "workday",
            "workday.json",
            json!({"authorization": basic("workday-pointsflow", "wd_5b1f0c7e2a9d4e6f8a3b")}),
        ),
        (
            "successfactors",
            "successfactors.json",
            json!({"authorization": basic("sf-isc-pointsflow", "sfsf_3e8d1a6c9b2f5e7a0d4c")}),
        ),
        (
            "darwinbox",
            "darwinbox.json",
            json!({"authorization": "Bearer dbx_key_9c4e1b7a2d5f8e3c6a0b"}),
        ),
    ];
    for (source, file, mut headers) in cases {
        headers["content-type"] = json!("application/json");
        let response = h
            .intake
            .handle(api_event(
                &format!("/v1/sources/{source}/events"),
                "",
                headers,
                &sample(&format!("hris/{file}")),
            ))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{file}: {}",
            text(&response)
        );
        let accepted: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(accepted["status"], "received", "{file}: {accepted}");
    }
    let body = sample("hris/signed-webhook.json");
    let response = h
        .intake
        .handle(hris(
            signed("hris_demo_secret_2b8f4e6a1c3d5e7f9a0b", NOW, &body),
            &body,
        ))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{}",
        text(&response)
    );
    assert_eq!(by_state(&h), (4, 0));
    let points: Vec<u64> = h
        .store
        .all()
        .unwrap()
        .iter()
        .filter_map(|r| match &r.award {
            Some(pointsflow_core::request::Award::Points(p)) => Some(p.get()),
            _ => None,
        })
        .collect();
    assert_eq!(points.iter().sum::<u64>(), 500 + 250 + 300 + 750);
}
