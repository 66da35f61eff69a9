//! What the intake tests share: programs, sources, queues and API Gateway
//! HTTP API (payload 2.0) events.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use lambda_http::Request;
use pointsflow_config::SourceEntry;
use pointsflow_core::money::Currency;
use pointsflow_core::partner::Destination;
use pointsflow_core::program::{PointsRule, Program, ProgramState, TransferMode};
use pointsflow_core::values::{PartnerId, Points, ProgramId};
use pointsflow_memory::{MemoryQueue, QueueConfig};
use serde_json::{Value, json};

/// An active, real-time USD program open to the sources the intake tests
/// use, crediting partner `air`.
pub fn program(id: &str, points: PointsRule) -> Program {
    Program {
        id: ProgramId::parse(id).unwrap(),
        name: id.into(),
        state: ProgramState::Active,
        sources: ["api", "salesforce", "workday", "hris", "hook"]
            .map(|s| pointsflow_core::values::SourceId::parse(s).unwrap())
            .to_vec(),
        event_types: vec![],
        currency: Currency::parse("USD").unwrap(),
        points,
        conditions: vec![],
        min_points_per_request: None,
        max_points_per_request: None,
        member_format: None,
        daily_cap_per_recipient: None,
        approval_threshold: None,
        second_approval_threshold: None,
        reversal_limit: None,
        budget_alert_below: None,
        events_show_member: false,
        wait_for_enrollment_hours: None,
        when_paused: Default::default(),
        on_undo: Default::default(),
        time_zone: pointsflow_core::program::Tz::UTC,
        monthly_cap_per_recipient: None,
        budget: Points::new(1_000_000).unwrap(),
        destination: Destination {
            partner: PartnerId::parse("air").unwrap(),
            partner_program: "SKY".into(),
        },
        transfer: TransferMode::Realtime,
    }
}

/// 2 points per 100 of the amount.
pub fn rate() -> PointsRule {
    PointsRule::Rate {
        points: Points::new(2).unwrap(),
        per: 100.into(),
    }
}

/// The eligibility queue.
pub fn queue() -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new(
        QueueConfig {
            name: "eligibility".into(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            retention: pointsflow_memory::DEFAULT_RETENTION,
        },
        None,
    ))
}

/// The `[[sources]]` of a configuration snippet.
pub fn sources(toml_text: &str) -> Vec<SourceEntry> {
    #[derive(serde::Deserialize)]
    struct File {
        sources: Vec<SourceEntry>,
    }
    toml::from_str::<File>(toml_text).unwrap().sources
}

/// An API Gateway HTTP API event as Lambda receives it.
pub fn event(method: &str, path: &str, query: &str, headers: Value, body: &[u8]) -> Request {
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => {
            use base64::Engine;
            (base64::engine::general_purpose::STANDARD.encode(body), true)
        }
    };
    let raw = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123xyz",
            "domainName": "abc123xyz.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123xyz",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "13.108.0.1", "userAgent": "Jakarta Commons-HttpClient/3.1"},
            "requestId": "CXk3fj2OoAMEVxA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "27/Nov/2026:16:00:00 +0000",
            "timeEpoch": 1_795_795_200_000u64
        },
        "body": body,
        "isBase64Encoded": encoded
    });
    lambda_http::request::from_str(&raw.to_string()).unwrap()
}
