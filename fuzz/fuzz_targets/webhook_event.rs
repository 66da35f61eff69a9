//! A webhook source's events (an HRIS calling with a bearer key) on
//! arbitrary bytes, through intake itself: the body is read and mapped
//! (JSON pointers, the qualify rules, amounts, points, dates). It may be
//! refused, never with a panic or a 5xx.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pointsflow_config::Config;
use pointsflow_intake::{DEFAULT_MAX_BODY_BYTES, Intake, IntakeConfig, IntakePorts};
use pointsflow_memory::{
    ManualClock, MemoryEnrollments, MemoryLedger, MemoryQueue, MemoryRequestStore, QueueConfig,
    StaticCatalog,
};

const CONFIG: &str = r#"
[[sources]]
id = "hook"
kind = "webhook"
program = "recognition"
webhook = { auth = "bearer", keys = ["fuzz_hook_key_0123456789"] }
mapping = { recipient = "/employee/id", points = "/award/points", event_id = "/id", event_type = "recognition.awarded", occurred_at = "/awarded_at", attributes = ["/award/reason"] }
qualify = [{ field = "/status", equals = "approved" }]

[[partners]]
id = "air"
kind = "rest"
base_url = "http://127.0.0.1:9"
api_key = "fuzz-partner-key"
timeout_ms = 100

[[programs]]
id = "recognition"
name = "Recognition"
currency = "USD"
sources = ["hook"]
budget = 1000000
points = { rule = "given" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }
"#;

fn intake() -> &'static Intake {
    static INTAKE: OnceLock<Intake> = OnceLock::new();
    INTAKE.get_or_init(|| {
        let config = Config::parse(CONFIG).expect("the fuzz configuration is valid");
        let store = Arc::new(MemoryRequestStore::new());
        Intake::new(
            IntakeConfig {
                sources: config.sources.clone(),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
            IntakePorts {
                create: store.clone(),
                get: store.clone(),
                ledger: Arc::new(MemoryLedger::new()),
                eligibility_queue: Arc::new(MemoryQueue::new(
                    QueueConfig {
                        name: "eligibility".into(),
                        visibility_timeout: Duration::from_secs(30),
                        max_receive_count: 5,
                        retention: pointsflow_memory::DEFAULT_RETENTION,
                    },
                    None,
                )),
                programs: Arc::new(StaticCatalog::new(config.programs.clone())),
                enrollments: Arc::new(MemoryEnrollments::new(Vec::new())),
                waiting: store.clone(),
                clock: Arc::new(ManualClock::new(chrono::DateTime::UNIX_EPOCH)),
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let body = match std::str::from_utf8(data) {
        Ok(text) => lambda_http::Body::Text(text.to_owned()),
        Err(_) => lambda_http::Body::Binary(data.to_vec()),
    };
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/sources/hook/events")
        .header("content-type", "application/json")
        .header("authorization", "Bearer fuzz_hook_key_0123456789")
        .body(body)
        .expect("a valid request");
    let response = futures::executor::block_on(intake().handle(request));
    assert!(
        response.status().as_u16() < 500,
        "answered {} to {:?}",
        response.status(),
        String::from_utf8_lossy(data)
    );
});
