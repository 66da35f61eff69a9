//! Test support. The adapter conformance suite: what every implementation of
//! a port must do, written once. The embedded adapters run it in their tests and the AWS
//! adapters run it against the AWS API emulator, so both behave alike.
//!
//! Each check panics with a message saying what the adapter got wrong.
//!
//! And [`runtime_api`], a double of the Lambda Runtime API to run a built
//! function binary as Lambda does, and [`template`], what the deployment
//! template gives each function.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod enrollment;
pub mod governance;
pub mod ledger;
pub mod operations;
pub mod programs;
pub mod queue;
pub mod runtime_api;
pub mod store;
pub mod template;
pub mod windows;

use chrono::{DateTime, Utc};
use pointsflow_core::request::{NewRequest, PointsRequest, Recipient, SourceEvent};
use pointsflow_core::values::{EventType, IdempotencyKey, ProgramId, RecipientId, SourceId};

/// A fresh request, distinct per `key`.
pub fn request(key: &str) -> PointsRequest {
    NewRequest {
        source: SourceId::parse("conformance").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        program: ProgramId::parse("p").unwrap(),
        recipient: Recipient {
            id: RecipientId::parse("005A").unwrap(),
            email: None,
        },
        award: None,
        event: SourceEvent {
            kind: EventType::parse("e").unwrap(),
            id: Some(key.to_owned()),
            occurred_at: DateTime::UNIX_EPOCH,
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(t0())
}

pub fn t0() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}
