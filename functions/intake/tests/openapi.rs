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
use pointsflow_config::Known;
use pointsflow_core::enrollment::{MemberLink, MemberValidation};
use pointsflow_core::ledger::{AccountId, CapCharge, CapKey, Entry};
use pointsflow_core::ports::WindowStore;
use pointsflow_core::ports::{
    Created, Enrollments, LedgerWrite, ProgramStore, RequestCreate, RequestGet, RequestUpdate,
    StoreError, StoredProgram, WaitingRequests,
};
use pointsflow_core::program::PointsRule;
use pointsflow_core::reason::ReasonCode;
use pointsflow_core::request::{PointsRequest, Status};
use pointsflow_core::values::{
    MemberNumber, PartnerId, PartnerReference, Points, ProgramId, RecipientId, RequestId, SourceId,
};
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, RunCounts, WindowCredit, WindowId, WindowRun,
};
use pointsflow_intake::{
    Intake, IntakeConfig, IntakePorts, OPENAPI_JSON, ROUTES, webhook_signature,
};
use pointsflow_memory::{
    ManualClock, MemoryEnrollments, MemoryLedger, MemoryProgramStore, MemoryRequestStore,
    StaticCatalog,
};
use serde_json::{Value, json};

const KEY: &str = "pf_contract_key_0123456789";
const TOKEN: &str = "sf_contract_token_0123456789abcdef";
const SECRET: &str = "hook_contract_secret_0123456789abcdef";
const OPERATOR_KEY: &str = "ops_contract_key_0123456789";
const NOW: i64 = 1_795_795_200;

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).unwrap()
}

/// A store that is down.
struct Down;

#[async_trait]
impl ProgramStore for Down {
    async fn programs(&self) -> Result<Vec<StoredProgram>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    async fn put_program(&self, _: &StoredProgram) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait]
impl Enrollments for Down {
    async fn member_link(
        &self,
        _: &ProgramId,
        _: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }

    async fn put_link(&self, _: &MemberLink) -> Result<(), StoreError> {
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

#[async_trait]
impl pointsflow_core::ports::UnsettledIndex for Down {
    async fn unsettled(
        &self,
        _: DateTime<Utc>,
        _: usize,
    ) -> Result<Vec<pointsflow_core::unsettled::Unsettled>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

#[async_trait]
impl WindowStore for Down {
    async fn claim(&self, _: &WindowRun) -> Result<Claim, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn run(&self, _: &WindowId) -> Result<Option<WindowRun>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn save_run(&self, _: &WindowRun) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn create_credit(&self, _: &WindowCredit) -> Result<CreditCreated, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn credit(&self, _: &CreditId) -> Result<Option<WindowCredit>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn save_credit(&self, _: &WindowCredit) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn settled(&self, _: &WindowId) -> Result<RunCounts, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

struct Harness {
    intake: Intake,
    windows: Arc<dyn WindowStore>,
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
    let program = common::program("sales", PointsRule::Given);
    let (create, get, update): (
        Arc<dyn RequestCreate>,
        Arc<dyn RequestGet>,
        Arc<dyn RequestUpdate>,
    ) = if down {
        (Arc::new(Down), Arc::new(Down), Arc::new(Down))
    } else {
        (store.clone(), store.clone(), store.clone())
    };
    let program_store: Arc<dyn ProgramStore> = if down {
        Arc::new(Down)
    } else {
        Arc::new(MemoryProgramStore::new())
    };
    let (enrollments, waiting): (Arc<dyn Enrollments>, Arc<dyn WaitingRequests>) = if down {
        (Arc::new(Down), Arc::new(Down))
    } else {
        let mut validated = MemberLink {
            program: ProgramId::parse("sales").unwrap(),
            recipient: RecipientId::parse("E-9").unwrap(),
            member: MemberNumber::parse("SKY1000009").unwrap(),
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
            validation: None,
        };
        validated.validation = Some(MemberValidation {
            valid: false,
            reason: Some(pointsflow_core::reason::Reason::new(
                ReasonCode::partner("name_mismatch"),
                "the names do not match",
            )),
            at: DateTime::<Utc>::from_timestamp(NOW, 0).unwrap(),
        });
        (Arc::new(MemoryEnrollments::new([validated])), store.clone())
    };
    let windows: Arc<dyn WindowStore> = if down {
        Arc::new(Down)
    } else {
        Arc::new(pointsflow_memory::MemoryWindowStore::new())
    };
    let intake = Intake::new(
        IntakeConfig {
            sources,
            operators: vec![
                toml::from_str(&format!("id = \"ops-anna\"\napi_key = \"{OPERATOR_KEY}\""))
                    .unwrap(),
            ],
            programs: vec![program.clone()],
            known: Known {
                partners: vec![PartnerId::parse("air").unwrap()],
                sources: ["api", "salesforce", "hook"]
                    .map(|s| SourceId::parse(s).unwrap())
                    .to_vec(),
            },
            max_body_bytes: 2048,
        },
        IntakePorts {
            create,
            get,
            update,
            ledger: ledger.clone(),
            eligibility_queue: common::queue(),
            programs: Arc::new(StaticCatalog::new([program])),
            program_store,
            enrollments,
            waiting,
            windows: windows.clone(),
            schedules: Arc::new(pointsflow_memory::MemorySchedules::new()),
            clock: Arc::new(ManualClock::new(
                DateTime::<Utc>::from_timestamp(NOW, 0).unwrap(),
            )),
        },
    );
    Harness {
        intake,
        windows,
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

/// An operator's approve or decline of request `id`.
fn decide(action: &str, id: &str, key: &str, content_type: &str, body: &str) -> Request {
    request(
        "POST",
        &format!("/v1/points-requests/{id}/{action}"),
        "",
        json!({"content-type": content_type, "authorization": format!("Bearer {key}")}),
        body,
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
    // Three requests waiting for approval.
    let mut waiting = Vec::new();
    for key in ["big-1", "big-2", "big-3"] {
        let accepted = json_of(&up.intake.handle(canonical(key, &points_body)).await).unwrap();
        let id = RequestId::parse(accepted["id"].as_str().unwrap()).unwrap();
        let mut r = up.store.get(&id).await.unwrap().unwrap();
        r.transition(
            Status::AwaitingApproval {
                reason: pointsflow_core::reason::Reason::new(
                    ReasonCode::ApprovalRequired,
                    "above 500",
                ),
            },
            at,
            "waiting",
        )
        .unwrap();
        up.store.update(&r).await.unwrap();
        waiting.push(id.to_string());
    }
    let (w1, w2, w3) = (&waiting[0], &waiting[1], &waiting[2]);
    // A window that has fired and been planned.
    let window = WindowId::parse("sales@2026-11-27T18:00Z").unwrap();
    let Claim::Started(mut run) = up
        .windows
        .claim(&WindowRun::new(window.clone(), true, at))
        .await
        .unwrap()
    else {
        panic!("a fresh window");
    };
    run.state = pointsflow_core::window::RunState::Planned;
    run.planned_at = Some(at);
    up.windows.save_run(&run).await.unwrap();
    let gw = ("GET", "/v1/windows/{window}");
    let show_window =
        |path: &str, headers: &Value, method: &str| request(method, path, "", headers.clone(), "");
    let rich = rich_id.to_string();
    let nobody = "pr_00000000000000000000000000000000";
    let js = "application/json";
    let long = json!({"reason": "x".repeat(4096)}).to_string();

    // (operation, expected status, request, harness)
    let pr = ("POST", "/v1/points-requests");
    let get = ("GET", "/v1/points-requests/{id}");
    let ev = ("POST", "/v1/sources/{source}/events");
    let spec = ("GET", "/v1/openapi.json");
    let pl = ("GET", "/v1/programs");
    let pg = ("GET", "/v1/programs/{program}");
    let pp = ("PUT", "/v1/programs/{program}");
    let ops = json!({"authorization": format!("Bearer {OPERATOR_KEY}")});
    let program_json = serde_json::to_value(common::program("sales", PointsRule::Given)).unwrap();
    let apply = |revision: u64, budget: u64, partner: &str, content_type: &str, key: &str| {
        let mut p = program_json.clone();
        p["budget"] = json!(budget);
        p["destination"]["partner"] = json!(partner);
        request(
            "PUT",
            "/v1/programs/sales",
            "",
            json!({"content-type": content_type, "authorization": format!("Bearer {key}")}),
            &json!({"revision": revision, "program": p}).to_string(),
        )
    };
    let get_program = |path: &str, headers: &Value| request("GET", path, "", headers.clone(), "");
    let ml = ("GET", "/v1/programs/{program}/members/{recipient}");
    let mp = ("PUT", "/v1/programs/{program}/members/{recipient}");
    let member = |path: &str, key: &str, content_type: &str, body: &str| {
        let method = if body.is_empty() { "GET" } else { "PUT" };
        request(
            method,
            path,
            "",
            json!({"content-type": content_type, "authorization": format!("Bearer {key}")}),
            body,
        )
    };
    let grace =
        r#"{"member_number": " sky1000005 ", "first_name": "Grace", "last_name": "Hopper"}"#;
    let ap = ("POST", "/v1/points-requests/{id}/approve");
    let de = ("POST", "/v1/points-requests/{id}/decline");
    let too_big = json!({"x": "y".repeat(4096)});
    let good_hook =
        json!({"id": "h-1", "who": "E1", "points": 5, "status": "approved"}).to_string();
    let changed_hook =
        json!({"id": "h-1", "who": "E1", "points": 6, "status": "approved"}).to_string();
    let scenarios: Vec<((&str, &str), u16, Request, &Harness)> = vec![
        (
            gw,
            200,
            show_window("/v1/windows/sales@2026-11-27T18:00Z", &ops, "GET"),
            &up,
        ),
        (
            gw,
            401,
            show_window("/v1/windows/sales@2026-11-27T18:00Z", &bearer, "GET"),
            &up,
        ),
        (
            gw,
            404,
            show_window("/v1/windows/sales@2026-11-28T18:00Z", &ops, "GET"),
            &up,
        ),
        (
            gw,
            405,
            show_window("/v1/windows/sales@2026-11-27T18:00Z", &ops, "DELETE"),
            &up,
        ),
        (
            gw,
            503,
            show_window("/v1/windows/sales@2026-11-27T18:00Z", &ops, "GET"),
            &broken,
        ),
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
            200,
            member("/v1/programs/sales/members/E-5", OPERATOR_KEY, js, grace),
            &up,
        ),
        (
            mp,
            200,
            member("/v1/programs/sales/members/E-6", KEY, js, grace),
            &up,
        ),
        (
            mp,
            400,
            member("/v1/programs/sales/members/E-5", OPERATOR_KEY, js, "{"),
            &up,
        ),
        (
            mp,
            401,
            member(
                "/v1/programs/sales/members/E-5",
                "nobody-0123456789",
                js,
                grace,
            ),
            &up,
        ),
        (
            mp,
            404,
            member("/v1/programs/nope/members/E-5", OPERATOR_KEY, js, grace),
            &up,
        ),
        (
            mp,
            413,
            member("/v1/programs/sales/members/E-5", OPERATOR_KEY, js, &long),
            &up,
        ),
        (
            mp,
            415,
            member(
                "/v1/programs/sales/members/E-5",
                OPERATOR_KEY,
                "text/plain",
                grace,
            ),
            &up,
        ),
        (
            mp,
            422,
            member(
                "/v1/programs/sales/members/E-5",
                OPERATOR_KEY,
                js,
                r#"{"member_number": "SKY 1", "first_name": "G", "last_name": "H"}"#,
            ),
            &up,
        ),
        (
            mp,
            503,
            member("/v1/programs/sales/members/E-5", OPERATOR_KEY, js, grace),
            &broken,
        ),
        (
            ml,
            200,
            member("/v1/programs/sales/members/E-5", OPERATOR_KEY, js, ""),
            &up,
        ),
        (
            ml,
            200,
            member("/v1/programs/sales/members/E-9", OPERATOR_KEY, js, ""),
            &up,
        ),
        (
            ml,
            401,
            member("/v1/programs/sales/members/E-5", "", js, ""),
            &up,
        ),
        (
            ml,
            404,
            member("/v1/programs/sales/members/E-404", OPERATOR_KEY, js, ""),
            &up,
        ),
        (
            ml,
            503,
            member("/v1/programs/sales/members/E-5", OPERATOR_KEY, js, ""),
            &broken,
        ),
        (pl, 200, get_program("/v1/programs", &ops), &up),
        (pl, 401, get_program("/v1/programs", &bearer), &up),
        (pl, 503, get_program("/v1/programs", &ops), &broken),
        (pp, 200, apply(1, 5_000, "air", js, OPERATOR_KEY), &up),
        (pp, 200, apply(1, 5_000, "air", js, OPERATOR_KEY), &up),
        (
            pp,
            400,
            request(
                "PUT",
                "/v1/programs/sales",
                "",
                json!({"content-type": js, "authorization": format!("Bearer {OPERATOR_KEY}")}),
                "{",
            ),
            &up,
        ),
        (pp, 401, apply(2, 5_000, "air", js, KEY), &up),
        (pp, 409, apply(1, 6_000, "air", js, OPERATOR_KEY), &up),
        (
            pp,
            413,
            request(
                "PUT",
                "/v1/programs/sales",
                "",
                json!({"content-type": js, "authorization": format!("Bearer {OPERATOR_KEY}")}),
                &long,
            ),
            &up,
        ),
        (
            pp,
            415,
            apply(2, 5_000, "air", "text/plain", OPERATOR_KEY),
            &up,
        ),
        (pp, 422, apply(2, 5_000, "nowhere", js, OPERATOR_KEY), &up),
        (pp, 503, apply(1, 5_000, "air", js, OPERATOR_KEY), &broken),
        (pg, 200, get_program("/v1/programs/sales", &ops), &up),
        (pg, 401, get_program("/v1/programs/sales", &json!({})), &up),
        (pg, 404, get_program("/v1/programs/nope", &ops), &up),
        (pg, 503, get_program("/v1/programs/sales", &ops), &broken),
        (
            ap,
            200,
            decide(
                "approve",
                w1,
                OPERATOR_KEY,
                js,
                r#"{"reason": "signed off"}"#,
            ),
            &up,
        ),
        (ap, 200, decide("approve", w1, OPERATOR_KEY, js, ""), &up),
        (ap, 400, decide("approve", w3, OPERATOR_KEY, js, "{"), &up),
        (ap, 401, decide("approve", w3, KEY, js, ""), &up),
        (
            ap,
            404,
            decide("approve", nobody, OPERATOR_KEY, js, ""),
            &up,
        ),
        (ap, 409, decide("approve", &rich, OPERATOR_KEY, js, ""), &up),
        (ap, 413, decide("approve", w3, OPERATOR_KEY, js, &long), &up),
        (
            ap,
            415,
            decide("approve", w3, OPERATOR_KEY, "text/plain", "ok"),
            &up,
        ),
        (
            ap,
            422,
            decide("approve", w3, OPERATOR_KEY, js, r#"{"reason": 5}"#),
            &up,
        ),
        (
            ap,
            503,
            decide("approve", w3, OPERATOR_KEY, js, ""),
            &broken,
        ),
        (
            de,
            200,
            decide(
                "decline",
                w2,
                OPERATOR_KEY,
                js,
                r#"{"reason": "duplicate deal"}"#,
            ),
            &up,
        ),
        (de, 400, decide("decline", w3, OPERATOR_KEY, js, "{"), &up),
        (de, 401, decide("decline", w3, "", js, ""), &up),
        (
            de,
            404,
            decide("decline", "not-an-id", OPERATOR_KEY, js, ""),
            &up,
        ),
        (
            de,
            409,
            decide("decline", w1, OPERATOR_KEY, js, r#"{"reason": "no"}"#),
            &up,
        ),
        (de, 413, decide("decline", w3, OPERATOR_KEY, js, &long), &up),
        (
            de,
            415,
            decide("decline", w3, OPERATOR_KEY, "text/plain", "no"),
            &up,
        ),
        (de, 422, decide("decline", w3, OPERATOR_KEY, js, "{}"), &up),
        (
            de,
            503,
            decide("decline", w3, OPERATOR_KEY, js, r#"{"reason": "no"}"#),
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
    for (name, body) in [
        ("Approve", json!({"reason": "signed off"})),
        ("Approve", json!({})),
        ("Decline", json!({"reason": "duplicate deal"})),
    ] {
        checker
            .check(name, &doc["components"]["schemas"][name], &body)
            .unwrap();
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
        "ProgramRevision",
        "MemberLink",
        "MemberValidation",
        "Approve",
        "Decline",
        "Problem",
    ]);
    assert!(
        missing.is_empty(),
        "documented but never produced: {missing:?}"
    );
}
