//! Hostile input: the readers and the routes never panic, never answer 5xx
//! to a malformed body, and never record anything for one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use chrono::DateTime;
use lambda_http::Request;
use pointsflow_core::program::PointsRule;
use pointsflow_intake::{Intake, IntakeConfig, IntakePorts, soap, wire};
use pointsflow_memory::{ManualClock, MemoryLedger, MemoryRequestStore, StaticCatalog};
use proptest::prelude::*;
use serde_json::json;

const SAMPLE: &str = include_str!("../../../infra/events/salesforce/outbound-message-mixed.xml");

/// The api source's key in [`intake_with`].
const SOURCE_KEY: &str = "pf_hostile_key_0123456789";

fn intake() -> (Intake, Arc<MemoryRequestStore>) {
    let (intake, store, _) = intake_with();
    (intake, store)
}

/// Intake, and the stores a source's routes change.
fn intake_with() -> (
    Intake,
    Arc<MemoryRequestStore>,
    Arc<pointsflow_memory::MemoryEnrollments>,
) {
    let sources = common::sources(
        r#"
[[sources]]
id = "api"
api_key = "pf_hostile_key_0123456789"

[[sources]]
id = "salesforce"
kind = "salesforce_outbound_message"
program = "sales"
salesforce = { tokens = ["sf_hostile_token_0123456789abcdef"], org_ids = ["00D5g000004Demo"] }
mapping = { recipient = "OwnerId", amount = "Amount", currency = "USD", event_type = "opportunity.closed_won" }

[[sources]]
id = "hook"
kind = "webhook"
program = "sales"
webhook = { auth = "bearer", keys = ["hook_hostile_key_0123456789"] }
mapping = { recipient = "/who", points = "/points", event_id = "/id", event_type = "opportunity.closed_won" }
"#,
    );
    let store = Arc::new(MemoryRequestStore::new());
    let enrollments = Arc::new(pointsflow_memory::MemoryEnrollments::default());
    let program = common::program("sales", PointsRule::Given);
    let intake = Intake::new(
        IntakeConfig {
            sources,
            max_body_bytes: 64 * 1024,
        },
        IntakePorts {
            create: store.clone(),
            get: store.clone(),
            ledger: Arc::new(MemoryLedger::new()),
            eligibility_queue: common::queue(),
            programs: Arc::new(StaticCatalog::new([program])),
            enrollments: enrollments.clone(),
            waiting: store.clone(),
            clock: Arc::new(ManualClock::new(DateTime::UNIX_EPOCH)),
        },
    );
    (intake, store, enrollments)
}

fn post(path: &str, query: &str, headers: serde_json::Value, body: &[u8]) -> Request {
    common::event("POST", path, query, headers, body)
}

/// A valid message with bytes flipped, cut or repeated.
fn mutated_sample() -> impl Strategy<Value = Vec<u8>> {
    let len = SAMPLE.len();
    prop::collection::vec((0..len, any::<u8>(), 0u8..3), 1..8).prop_map(|edits| {
        let mut bytes = SAMPLE.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] = byte,
                1 => bytes.truncate(at),
                _ => {
                    let tail = bytes[at..].to_vec();
                    bytes.extend_from_slice(&tail[..tail.len().min(64)]);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_soap_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = soap::parse(&bytes);
    }

    #[test]
    fn the_soap_reader_survives_mutated_messages(bytes in mutated_sample()) {
        let _ = soap::parse(&bytes);
    }

    #[test]
    fn the_soap_reader_survives_hostile_families_of_any_size(
        family in 0..soap::hostile::FAMILIES.len(),
        size in 0usize..128 * 1024,
        cut in any::<prop::sample::Index>(),
    ) {
        let body = (soap::hostile::FAMILIES[family].build)(size);
        let cut = cut.index(body.len() + 1);
        prop_assert!(soap::parse(&body.as_bytes()[..cut]).is_err());
    }

    #[test]
    fn the_json_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = wire::parse_body(&bytes);
    }

    #[test]
    fn the_json_reader_never_panics_on_json(value in json_value()) {
        if let Ok(body) = wire::parse_body(value.to_string().as_bytes()) {
            let key = pointsflow_core::values::IdempotencyKey::parse("k").unwrap();
            let source = pointsflow_core::values::SourceId::parse("s").unwrap();
            let _ = body.into_new_request(source, key);
        }
    }

    #[test]
    fn no_route_answers_a_malformed_body_with_5xx_or_records_it(
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..1024), mutated_sample()],
        route in 0usize..3,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (intake, store) = intake();
        let request = match route {
            0 => post("/v1/points-requests", "", json!({"content-type": "application/json", "authorization": "Bearer pf_hostile_key_0123456789", "idempotency-key": "k1"}), &bytes),
            1 => post("/v1/sources/hook/events", "", json!({"content-type": "application/json", "authorization": "Bearer hook_hostile_key_0123456789"}), &bytes),
            _ => post("/v1/sources/salesforce/events", "token=sf_hostile_token_0123456789abcdef", json!({"content-type": "text/xml"}), &bytes),
        };
        let response = runtime.block_on(intake.handle(request));
        let status = response.status().as_u16();
        prop_assert!(status < 500, "answered {status} to {:?}", String::from_utf8_lossy(&bytes));
        // Anything refused recorded nothing.
        if !(200..300).contains(&status) {
            prop_assert_eq!(store.len(), 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every other route (and the operators' routes intake does not
    /// serve), as a source and as nobody, with hostile paths and bodies:
    /// never a 5xx, and a refused request changes nothing.
    #[test]
    fn no_other_route_answers_hostile_input_with_5xx_or_changes_anything(
        route in 0usize..6,
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH")],
        segment in "[A-Za-z0-9_.~%-]{0,40}",
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
        as_source in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (intake, store, enrollments) = intake_with();
        let auth = if as_source { format!("Bearer {SOURCE_KEY}") } else { "Bearer nobody".into() };
        let headers = json!({"content-type": "application/json", "authorization": auth});
        let request_id = format!("pr_{}", "0".repeat(32));
        let (method, path) = match route {
            0 => ("PUT", "/v1/programs/sales".to_owned()),
            1 => ("PUT", format!("/v1/programs/sales/members/{segment}")),
            2 => ("POST", format!("/v1/points-requests/{request_id}/approve")),
            3 => ("POST", format!("/v1/points-requests/{request_id}/decline")),
            4 => ("GET", format!("/v1/points-requests/{segment}")),
            _ => (method, format!("/v1/{segment}")),
        };
        let request = common::event(method, &path, "", headers, &bytes);
        let response = runtime.block_on(intake.handle(request));
        let status = response.status().as_u16();
        prop_assert!(status < 500, "{method} {path} answered {status} to {:?}", String::from_utf8_lossy(&bytes));
        if !(200..300).contains(&status) {
            prop_assert_eq!(store.len(), 0);
            if let Ok(recipient) = pointsflow_core::values::RecipientId::parse(&segment) {
                let program = pointsflow_core::values::ProgramId::parse("sales").unwrap();
                let link = runtime
                    .block_on(pointsflow_core::ports::Enrollments::member_link(enrollments.as_ref(), &program, &recipient))
                    .unwrap();
                prop_assert!(link.is_none(), "a refused request linked a member");
            }
        }
    }
}

/// Bodies built to make the reader work hard, at the default body limit and
/// at the largest a source may configure: refused or read, never a panic,
/// never a 5xx, nothing recorded. (Their parse time is the bench's to print:
/// `pointsflow-bench --outbound-messages 1`.)
#[test]
fn hostile_xml_families_are_bounded_by_structure_not_by_time() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (intake, store) = intake();
    for size in [64 * 1024, pointsflow_config::MAX_BODY_BYTES] {
        for family in soap::hostile::FAMILIES {
            let body = (family.build)(size);
            assert!(
                body.len() <= size && body.len() > size / 2,
                "{}: {} bytes",
                family.name,
                body.len()
            );
            let parsed = soap::parse(body.as_bytes());
            assert!(parsed.is_err(), "{}: read as a message", family.name);
            if size <= 64 * 1024 {
                let request = post(
                    "/v1/sources/salesforce/events",
                    "token=sf_hostile_token_0123456789abcdef",
                    json!({"content-type": "text/xml"}),
                    body.as_bytes(),
                );
                let response = runtime.block_on(intake.handle(request));
                assert!(
                    response.status().is_client_error(),
                    "{}: {}",
                    family.name,
                    response.status()
                );
            }
        }
    }
    assert_eq!(store.len(), 0);
    let flood = (soap::hostile::FAMILIES[0].build)(670 * 1024);
    assert_eq!(
        soap::parse(flood.as_bytes()),
        Err(soap::SoapError::TooManyNamespaces)
    );
}

/// The fuzz seeds hold every hostile family (at libFuzzer's default input
/// size), so a fuzzing run starts from them. `POINTSFLOW_WRITE_SEEDS=1`
/// writes them after a family changes.
#[test]
fn the_fuzz_seeds_hold_every_hostile_family() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds/soap_outbound_message");
    for (i, family) in soap::hostile::FAMILIES.iter().enumerate() {
        let body = (family.build)(4096);
        let path = dir.join(format!("hostile-{i}.xml"));
        if std::env::var_os("POINTSFLOW_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &body).unwrap();
        }
        let seed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            seed,
            body,
            "{} is not {} (POINTSFLOW_WRITE_SEEDS=1 writes it)",
            path.display(),
            family.name
        );
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(serde_json::Value::String),
        Just(json!("sales")),
        Just(json!("12550.00")),
        Just(json!("USD")),
        Just(json!("2026-11-27T16:00:00Z")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("program".to_owned()),
            Just("recipient".to_owned()),
            Just("id".to_owned()),
            Just("amount".to_owned()),
            Just("value".to_owned()),
            Just("currency".to_owned()),
            Just("points".to_owned()),
            Just("event".to_owned()),
            Just("type".to_owned()),
            Just("occurred_at".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
