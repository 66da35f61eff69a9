//! `openapi.yaml` against the code, both ways: every route, status code,
//! problem code and response field the code produces is in the document,
//! and everything the document describes is produced by the code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use pointsflow_core::access::Principal;
use pointsflow_core::approval::{Approval, ApprovalDecision};
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ledger::{AccountId, CapCharge, CapKey, Entry};
use pointsflow_core::ports::{
    Created, Enrollments, LedgerWrite, RequestCreate, RequestGet, RequestUpdate, StoreError,
    WaitingRequests,
};
use pointsflow_core::program::PointsRule;
use pointsflow_core::reason::ReasonCode;
use pointsflow_core::request::{PointsRequest, Status};
use pointsflow_core::values::{
    MemberNumber, PartnerId, PartnerReference, Points, ProgramId, RecipientId, RequestId, SourceId,
};
use pointsflow_intake::{
    Intake, IntakeConfig, IntakePorts, OPENAPI_JSON, ROUTES, webhook_signature,
};
use pointsflow_memory::{
    ManualClock, MemoryEnrollments, MemoryLedger, MemoryRequestStore, StaticCatalog,
};
use serde_json::{Value, json};

const KEY: &str = "pf_contract_key_0123456789";
const TOKEN: &str = "sf_contract_token_0123456789abcdef";
const SECRET: &str = "hook_contract_secret_0123456789abcdef";
const NOW: i64 = 1_795_795_200;

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).unwrap()
}

/// A store that is down.
struct Down;

#[async_trait]
impl Enrollments for Down {
    async fn member_link(
        &self,
        _: &ProgramId,
        _: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    async fn replace_link(&self, _: &MemberLink, _: &MemberNumber) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    async fn create_link(&self, _: &MemberLink) -> Result<Option<MemberLink>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    async fn record_validation(&self, _: &MemberLink) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait]
impl WaitingRequests for Down {
    async fn waiting(
        &self,
        _: &ProgramId,
        _: pointsflow_core::request::StatusKind,
        _: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait]
impl RequestUpdate for Down {
    async fn update(&self, _: &PointsRequest) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait]
impl RequestCreate for Down {
    async fn create(&self, _: &PointsRequest) -> Result<Created, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait]
impl RequestGet for Down {
    async fn get(&self, _: &RequestId) -> Result<Option<PointsRequest>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

struct Harness {
    intake: Intake,
    store: Arc<MemoryRequestStore>,
    ledger: Arc<MemoryLedger>,
}

fn harness(down: bool) -> Harness {
    let sources = common::sources(&format!(
        r#"
[[sources]]
id = "api"
api_key = "{KEY}"

[[sources]]
id = "salesforce"
kind = "salesforce_outbound_message"
program = "sales"
salesforce = {{ tokens = ["{TOKEN}"], org_ids = ["00D5g000004Demo"] }}
mapping = {{ recipient = "OwnerId", amount = "Amount", currency = "USD", event_type = "opportunity.closed_won" }}

[[sources]]
id = "hook"
kind = "webhook"
program = "sales"
webhook = {{ auth = "hmac", secrets = ["{SECRET}"] }}
mapping = {{ recipient = "/who", points = "/points", event_id = "/id", event_type = "opportunity.closed_won" }}
qualify = [{{ field = "/status", equals = "approved" }}]
"#
    ));
    let store = Arc::new(MemoryRequestStore::new());
    let ledger = Arc::new(MemoryLedger::new());
    let mut program = common::program("sales", PointsRule::Given);
    program.sources = ["api", "salesforce", "hook"]
        .map(|s| SourceId::parse(s).unwrap())
        .to_vec();
    // A program the api source is not listed in.
    let mut closed = common::program("closed", PointsRule::Given);
    closed.sources = vec![SourceId::parse("hook").unwrap()];
    let (create, get): (Arc<dyn RequestCreate>, Arc<dyn RequestGet>) = if down {
        (Arc::new(Down), Arc::new(Down))
    } else {
        (store.clone(), store.clone())
    };
    let (enrollments, waiting): (Arc<dyn Enrollments>, Arc<dyn WaitingRequests>) = if down {
        (Arc::new(Down), Arc::new(Down))
    } else {
        let linked = MemberLink::new(
            ProgramId::parse("sales").unwrap(),
            RecipientId::parse("E-9").unwrap(),
            MemberNumber::parse("SKY1000009").unwrap(),
            "Grace".into(),
            "Hopper".into(),
        );
        (Arc::new(MemoryEnrollments::new([linked])), store.clone())
    };
    let intake = Intake::new(
        IntakeConfig {
            sources,
            max_body_bytes: 2048,
        },
        IntakePorts {
            create,
            get,
            ledger: ledger.clone(),
            eligibility_queue: common::queue(),
            programs: Arc::new(StaticCatalog::new([program, closed])),
            enrollments,
            waiting,
            clock: Arc::new(ManualClock::new(
                DateTime::<Utc>::from_timestamp(NOW, 0).unwrap(),
            )),
        },
    );
    Harness {
        intake,
        store,
        ledger,
    }
}

fn request(method: &str, path: &str, query: &str, headers: Value, body: &str) -> Request {
    common::event(method, path, query, headers, body.as_bytes())
}

fn canonical(key: &str, body: &Value) -> Request {
    request(
        "POST",
        "/v1/points-requests",
        "",
        json!({"content-type": "application/json", "authorization": format!("Bearer {KEY}"), "idempotency-key": key}),
        &body.to_string(),
    )
}

fn create_body(points: bool) -> Value {
    let mut body = json!({
        "program": "sales",
        "recipient": {"id": "0055g00000DemoAA1", "email": "ada@example.com"},
        "event": {"type": "opportunity.closed_won", "id": "0065g00000Q4zXyAAB",
                  "occurred_at": "2026-11-27T15:59:58Z", "attributes": {"stage": "Closed Won"}}
    });
    if points {
        body["points"] = json!(100);
    } else {
        body["amount"] = json!({"value": "12550.00", "currency": "USD"});
    }
    body
}

fn hook(body: &str) -> Request {
    let at = NOW.to_string();
    let signature = webhook_signature(SECRET.as_bytes(), &at, body.as_bytes());
    request(
        "POST",
        "/v1/sources/hook/events",
        "",
        json!({"content-type": "application/json", "x-pointsflow-timestamp": at,
               "x-pointsflow-signature": format!("sha256={signature}")}),
        body,
    )
}

fn outbound(org: &str, with_id: bool) -> Request {
    let id = if with_id {
        "<sf:Id>0065g00000Q4zXyAAB</sf:Id>"
    } else {
        ""
    };
    let body = format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org}</OrganizationId><Notification><Id>04l1</Id><sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{id}<sf:OwnerId>0055g00000DemoAA1</sf:OwnerId><sf:Amount>100.00</sf:Amount></sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"#
    );
    request(
        "POST",
        "/v1/sources/salesforce/events",
        &format!("token={TOKEN}"),
        json!({"content-type": "text/xml"}),
        &body,
    )
}

fn json_of(response: &Response<Body>) -> Option<Value> {
    serde_json::from_slice(response.body().as_ref()).ok()
}

/// Every operation in the document, as (method, path).
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_code_serves() {
    let doc = doc();
    let code: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented_routes(&doc), code);
    // The deployment routes the same ones to the function.
    let template: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(pointsflow_conformance::template::path()).unwrap(),
    )
    .unwrap();
    let deployed: BTreeSet<(String, String)> =
        template["Resources"]["IntakeFunction"]["Properties"]["Events"]
            .as_mapping()
            .unwrap()
            .values()
            .map(|e| {
                let p = &e["Properties"];
                (
                    p["Method"].as_str().unwrap().to_owned(),
                    p["Path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    assert_eq!(deployed, code, "template.yaml's IntakeFunction events");
    // And the router really serves each (no "no route" 404).
    let h = harness(false);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", "pr_00000000000000000000000000000000")
            .replace("{source}", "api")
            .replace("{program}", "sales")
            .replace("{recipient}", "E-1");
        let response = h
            .intake
            .handle(request(method, &concrete, "", json!({}), ""))
            .await;
        let detail = json_of(&response)
            .map(|v| v["detail"].to_string())
            .unwrap_or_default();
        assert!(!detail.contains("no route"), "{method} {path}: {detail}");
    }
    let served = h
        .intake
        .handle(request("GET", "/v1/openapi.json", "", json!({}), ""))
        .await;
    assert_eq!(served.status(), 200);
    assert_eq!(json_of(&served).unwrap(), doc);
}

#[test]
fn the_document_lists_exactly_the_problem_codes() {
    let doc = doc();
    let documented: Vec<String> =
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
    assert_eq!(documented, pointsflow_intake::problem::CODES);
}

/// A checker for the subset of JSON Schema the document uses, recording
/// which properties and alternatives real responses exercise.
struct Checker<'a> {
    doc: &'a Value,
    seen: BTreeMap<String, BTreeSet<String>>,
}

impl<'a> Checker<'a> {
    fn name_of(&self, schema: &Value) -> Option<String> {
        self.doc["components"]["schemas"]
            .as_object()?
            .iter()
            .find(|(_, s)| std::ptr::eq(*s, schema))
            .map(|(n, _)| n.clone())
    }

    fn resolve(&self, schema: &'a Value) -> (String, &'a Value) {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                (name.to_owned(), &self.doc["components"]["schemas"][name])
            }
            None => (String::new(), schema),
        }
    }

    fn check(&mut self, at: &str, schema: &'a Value, value: &Value) -> Result<(), String> {
        let (name, schema) = self.resolve(schema);
        // A schema reached by name counts as that schema.
        let name = if name.is_empty() {
            self.name_of(schema).unwrap_or_default()
        } else {
            name
        };
        let here = if name.is_empty() { at.to_owned() } else { name };
        if let Some(options) = schema["oneOf"].as_array() {
            let matching: Vec<usize> = (0..options.len())
                .filter(|&i| {
                    let mut probe = Checker {
                        doc: self.doc,
                        seen: BTreeMap::new(),
                    };
                    probe
                        .check(&format!("{here}/oneOf/{i}"), &options[i], value)
                        .is_ok()
                })
                .collect();
            if matching.len() != 1 {
                return Err(format!(
                    "{here}: {value} matches {} alternatives",
                    matching.len()
                ));
            }
            self.seen
                .entry(format!("{here} (oneOf)"))
                .or_default()
                .insert(matching[0].to_string());
            return self.check(
                &format!("{here}/oneOf/{}", matching[0]),
                &options[matching[0]],
                value,
            );
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            return Err(format!("{here}: {value} is not one of {allowed:?}"));
        }
        match (schema["type"].as_str(), value) {
            (Some("object"), Value::Object(map)) => {
                let properties = schema["properties"].as_object();
                for required in schema["required"].as_array().into_iter().flatten() {
                    let required = required.as_str().unwrap();
                    if !map.contains_key(required) {
                        return Err(format!("{here}: required {required} is missing in {value}"));
                    }
                }
                let Some(properties) = properties else {
                    return Ok(()); // a free-form object
                };
                // Open only where the document says so (`additionalProperties: true`).
                let open = schema["additionalProperties"] == Value::Bool(true);
                for (key, v) in map {
                    let Some(property) = properties.get(key) else {
                        if open {
                            continue;
                        }
                        return Err(format!("{here}: {key} is not in the document ({value})"));
                    };
                    self.seen
                        .entry(here.clone())
                        .or_default()
                        .insert(key.clone());
                    self.check(&format!("{here}/{key}"), property, v)?;
                }
                Ok(())
            }
            (Some("array"), Value::Array(items)) => {
                for item in items {
                    self.check(&format!("{here}[]"), &schema["items"], item)?;
                }
                Ok(())
            }
            (Some("string"), Value::String(_))
            | (Some("integer"), Value::Number(_))
            | (Some("boolean"), Value::Bool(_)) => Ok(()),
            (None, _) => Ok(()),
            (Some(t), v) => Err(format!("{here}: {v} is not a {t}")),
        }
    }

    /// Every property and alternative of every schema visited was produced.
    fn unexercised(&self, names: &[&str]) -> Vec<String> {
        let mut missing = Vec::new();
        for name in names {
            let schema = &self.doc["components"]["schemas"][*name];
            let seen = self.seen.get(*name).cloned().unwrap_or_default();
            for key in schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if !seen.contains(key) {
                    missing.push(format!("{name}.{key}"));
                }
            }
            if let Some(options) = schema["oneOf"].as_array() {
                let seen = self
                    .seen
                    .get(&format!("{name} (oneOf)"))
                    .cloned()
                    .unwrap_or_default();
                for i in 0..options.len() {
                    if !seen.contains(&i.to_string()) {
                        missing.push(format!("{name} alternative {i}"));
                    }
                }
            }
        }
        missing
    }
}

/// The documented statuses of one operation.
fn statuses(doc: &Value, method: &str, path: &str) -> BTreeSet<u16> {
    doc["paths"][path][method.to_lowercase()]["responses"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect()
}

/// The schema a documented response declares for a media type, if any.
fn response_schema<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: u16,
    media: &str,
) -> Option<&'a Value> {
    let mut response = &doc["paths"][path][method.to_lowercase()]["responses"][status.to_string()];
    if let Some(r) = response["$ref"].as_str() {
        response = &doc["components"]["responses"][r.trim_start_matches("#/components/responses/")];
    }
    let schema = &response["content"][media]["schema"];
    (!schema.is_null()).then_some(schema)
}

#[tokio::test]
async fn every_status_and_field_is_documented_and_every_documented_one_happens() {
    let doc = doc();
    let up = harness(false);
    let broken = harness(true);

    // A credited request with every optional field, and its ledger entries.
    let program = ProgramId::parse("sales").unwrap();
    let accepted = json_of(
        &up.intake
            .handle(canonical("rich", &create_body(false)))
            .await,
    )
    .unwrap();
    let rich_id = RequestId::parse(accepted["id"].as_str().unwrap()).unwrap();
    let mut rich = up.store.get(&rich_id).await.unwrap().unwrap();
    let member = MemberNumber::parse("SKY1000001").unwrap();
    let at = DateTime::<Utc>::from_timestamp(NOW, 0).unwrap();
    rich.points = Some(Points::new(251).unwrap());
    rich.member = Some(member.clone());
    rich.partner_reference = Some(PartnerReference::from_number(7));
    rich.partner_transaction = Some("AIR-1".into());
    // Sent in a consolidated window credit.
    rich.credit = Some(
        pointsflow_core::window::CreditId::parse("sales@2026-11-27T18:00Z/air/SKY1000001").unwrap(),
    );
    for to in [Status::Reserved, Status::Dispatching, Status::Credited] {
        rich.transition(to, at, "step").unwrap();
    }
    // A reversal asked for since (its timeline line names it).
    rich.request_reversal(
        "r-1",
        Some(Points::new(10).unwrap()),
        "deal reduced",
        "ops",
        at,
    )
    .unwrap();
    // Approved by an operator on the way.
    rich.approval = Some(Approval {
        decision: ApprovalDecision::Approve,
        by: Principal::parse("arn:aws:sts::123456789012:assumed-role/PointsflowApprover/anna")
            .unwrap(),
        at,
        reason: Some("signed off".into()),
    });
    up.store.update(&rich).await.unwrap();
    let reserve = Entry::reserve(
        &rich_id,
        AccountId::budget(&program),
        AccountId::member(&PartnerId::parse("air").unwrap(), &member),
        Points::new(251).unwrap(),
        vec![CapCharge {
            key: CapKey {
                program: program.clone(),
                recipient: RecipientId::parse("0055g00000DemoAA1").unwrap(),
                period: "2026-11".into(),
            },
            limit: Points::new(50_000).unwrap(),
        }],
        at,
    );
    up.ledger
        .apply(&[Entry::fund(
            &program,
            "initial",
            Points::new(1_000).unwrap(),
            at,
        )])
        .await
        .unwrap();
    up.ledger
        .apply(std::slice::from_ref(&reserve))
        .await
        .unwrap();
    up.ledger.apply(&[Entry::post(&reserve, at)]).await.unwrap();
    let points_body = create_body(true);
    // A failed request, asked for in points, with its reason.
    let failing = json_of(&up.intake.handle(canonical("failing", &points_body)).await).unwrap();
    let failed_id = RequestId::parse(failing["id"].as_str().unwrap()).unwrap();
    let mut failed = up.store.get(&failed_id).await.unwrap().unwrap();
    for to in [
        Status::Reserved,
        Status::Dispatching,
        Status::Failed {
            reason: pointsflow_core::reason::Reason::new(
                ReasonCode::partner("unknown_member"),
                "no such member",
            ),
        },
    ] {
        failed.transition(to, at, "step").unwrap();
    }
    up.store.update(&failed).await.unwrap();
    let rejected_body =
        json!({"id": "h-2", "who": "E1", "points": 5, "status": "draft"}).to_string();
    let rejected = json_of(&up.intake.handle(hook(&rejected_body)).await).unwrap();
    let bearer = json!({"authorization": format!("Bearer {KEY}")});
    let js = "application/json";
    let long = json!({"reason": "x".repeat(4096)}).to_string();

    // (operation, expected status, request, harness)
    let pr = ("POST", "/v1/points-requests");
    let get = ("GET", "/v1/points-requests/{id}");
    let ev = ("POST", "/v1/sources/{source}/events");
    let spec = ("GET", "/v1/openapi.json");
    let mp = ("PUT", "/v1/programs/{program}/members/{recipient}");
    let member = |path: &str, key: &str, content_type: &str, body: &str| {
        request(
            "PUT",
            path,
            "",
            json!({"content-type": content_type, "authorization": format!("Bearer {key}")}),
            body,
        )
    };
    let grace =
        r#"{"member_number": " sky1000005 ", "first_name": "Grace", "last_name": "Hopper"}"#;
    let too_big = json!({"x": "y".repeat(4096)});
    let good_hook =
        json!({"id": "h-1", "who": "E1", "points": 5, "status": "approved"}).to_string();
    let changed_hook =
        json!({"id": "h-1", "who": "E1", "points": 6, "status": "approved"}).to_string();
    let scenarios: Vec<((&str, &str), u16, Request, &Harness)> = vec![
        (pr, 202, canonical("k-1", &points_body), &up),
        (
            pr,
            400,
            request(
                "POST",
                "/v1/points-requests",
                "",
                json!({"content-type": "application/json", "authorization": format!("Bearer {KEY}"), "idempotency-key": "k-2"}),
                "{",
            ),
            &up,
        ),
        (
            pr,
            401,
            request(
                "POST",
                "/v1/points-requests",
                "",
                json!({"content-type": "application/json"}),
                "{}",
            ),
            &up,
        ),
        (pr, 409, canonical("k-1", &create_body(false)), &up),
        (pr, 413, canonical("k-3", &too_big), &up),
        (
            pr,
            415,
            request(
                "POST",
                "/v1/points-requests",
                "",
                json!({"content-type": "text/plain", "authorization": format!("Bearer {KEY}"), "idempotency-key": "k-4"}),
                "{}",
            ),
            &up,
        ),
        (pr, 422, canonical("k-5", &json!({"program": "sales"})), &up),
        (pr, 503, canonical("k-6", &points_body), &broken),
        (
            get,
            200,
            request(
                "GET",
                &format!("/v1/points-requests/{rich_id}"),
                "",
                bearer.clone(),
                "",
            ),
            &up,
        ),
        (
            get,
            200,
            request(
                "GET",
                &format!("/v1/points-requests/{failed_id}"),
                "",
                bearer.clone(),
                "",
            ),
            &up,
        ),
        (
            get,
            401,
            request(
                "GET",
                &format!("/v1/points-requests/{rich_id}"),
                "",
                json!({}),
                "",
            ),
            &up,
        ),
        (
            get,
            404,
            request(
                "GET",
                "/v1/points-requests/pr_00000000000000000000000000000000",
                "",
                bearer.clone(),
                "",
            ),
            &up,
        ),
        (
            get,
            503,
            request(
                "GET",
                &format!("/v1/points-requests/{rich_id}"),
                "",
                bearer.clone(),
                "",
            ),
            &broken,
        ),
        (ev, 200, outbound("00D5g000004Demo", true), &up),
        (ev, 202, hook(&good_hook), &up),
        (ev, 400, outbound("00D5g000004Demo", false), &up),
        (ev, 400, hook("{"), &up),
        (
            ev,
            401,
            request(
                "POST",
                "/v1/sources/hook/events",
                "",
                json!({"content-type": "application/json"}),
                "{}",
            ),
            &up,
        ),
        (ev, 403, outbound("00D000000000001", true), &up),
        (ev, 409, hook(&changed_hook), &up),
        (ev, 413, hook(&too_big.to_string()), &up),
        (
            ev,
            415,
            request(
                "POST",
                "/v1/sources/hook/events",
                "",
                json!({"content-type": "text/plain", "x-pointsflow-timestamp": NOW.to_string(), "x-pointsflow-signature": format!("sha256={}", webhook_signature(SECRET.as_bytes(), &NOW.to_string(), b"{}"))}),
                "{}",
            ),
            &up,
        ),
        (
            ev,
            422,
            hook(&json!({"id": "h-3", "status": "approved"}).to_string()),
            &up,
        ),
        (ev, 500, outbound("00D5g000004Demo", true), &broken),
        (ev, 503, hook(&good_hook), &broken),
        (
            spec,
            200,
            request("GET", "/v1/openapi.json", "", json!({}), ""),
            &up,
        ),
        (
            mp,
            201,
            member("/v1/programs/sales/members/E-5", KEY, js, grace),
            &up,
        ),
        (
            mp,
            200,
            member("/v1/programs/sales/members/E-5", KEY, js, grace),
            &up,
        ),
        (
            mp,
            400,
            member("/v1/programs/sales/members/E-6", KEY, js, "{"),
            &up,
        ),
        (
            mp,
            401,
            member(
                "/v1/programs/sales/members/E-6",
                "nobody-0123456789",
                js,
                grace,
            ),
            &up,
        ),
        (
            mp,
            404,
            member("/v1/programs/nope/members/E-6", KEY, js, grace),
            &up,
        ),
        (
            mp,
            404,
            member("/v1/programs/closed/members/E-6", KEY, js, grace),
            &up,
        ),
        (
            mp,
            409,
            member("/v1/programs/sales/members/E-9", KEY, js, grace),
            &up,
        ),
        (
            mp,
            413,
            member("/v1/programs/sales/members/E-6", KEY, js, &long),
            &up,
        ),
        (
            mp,
            415,
            member("/v1/programs/sales/members/E-6", KEY, "text/plain", grace),
            &up,
        ),
        (
            mp,
            422,
            member(
                "/v1/programs/sales/members/E-6",
                KEY,
                js,
                r#"{"member_number": "SKY 1", "first_name": "G", "last_name": "H"}"#,
            ),
            &up,
        ),
        (
            mp,
            503,
            member("/v1/programs/sales/members/E-6", KEY, js, grace),
            &broken,
        ),
    ];

    let mut checker = Checker {
        doc: &doc,
        seen: BTreeMap::new(),
    };
    let mut produced: BTreeMap<(&str, &str), BTreeSet<u16>> = BTreeMap::new();
    for ((method, path), expected, req, h) in scenarios {
        let response = h.intake.handle(req).await;
        let status = response.status().as_u16();
        assert_eq!(status, expected, "{method} {path}: {:?}", response.body());
        produced.entry((method, path)).or_default().insert(status);
        let media = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let schema = response_schema(&doc, method, path, status, &media)
            .unwrap_or_else(|| panic!("{method} {path} {status}: {media} is not documented"));
        if media.ends_with("json") && path != "/v1/openapi.json" {
            let body = json_of(&response).unwrap();
            checker
                .check(&format!("{method} {path} {status}"), schema, &body)
                .unwrap();
        }
    }
    // The canonical request body: everything documented is accepted.
    let create_schema = &doc["paths"]["/v1/points-requests"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    for body in [create_body(false), create_body(true)] {
        checker.check("request", create_schema, &body).unwrap();
    }
    checker
        .check(
            "accepted",
            &doc["components"]["schemas"]["Accepted"],
            &rejected,
        )
        .unwrap();

    for (method, path) in ROUTES {
        let documented = statuses(&doc, method, path);
        let seen = produced.get(&(*method, *path)).cloned().unwrap_or_default();
        assert_eq!(
            documented, seen,
            "{method} {path}: documented vs produced statuses"
        );
    }
    let missing = checker.unexercised(&[
        "PointsRequestCreate",
        "Recipient",
        "Money",
        "SourceEvent",
        "Accepted",
        "Links",
        "Reason",
        "Award",
        "PointsRequestView",
        "TimelineEntry",
        "Account",
        "LedgerEntry",
        "CapCharge",
        "Approval",
        "MemberLink",
        "Problem",
    ]);
    assert!(
        missing.is_empty(),
        "documented but never produced: {missing:?}"
    );
}
