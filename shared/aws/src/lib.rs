//! AWS adapters for the pointsflow ports: the request store and the ledger
//! over DynamoDB (one table, documented in docs/data-model.md), and queue
//! publishing over SQS. They pass the same conformance suite as the embedded
//! adapters, run against an AWS API emulator in the tests.
//!
//! Wire mapping (`AttributeValue` <-> domain) is private to this crate.

mod bus;
mod days;
mod enrollments;
mod governance;
mod item;
mod ledger;
mod operations;
mod programs;
mod proposals;
mod schedules;
mod sqs;
mod store;
pub mod stream;
mod unsettled;
mod versioned;
mod windows;

pub mod tables;

pub use bus::EventBridgeBus;
pub use enrollments::{DynamoEnrollments, DynamoLinkHistory};
pub use governance::DynamoPartnerState;
pub use ledger::DynamoLedger;
pub use operations::{DynamoAuditLog, DynamoReportStore, SqsDeadLetters};
pub use programs::DynamoProgramStore;
pub use proposals::DynamoProposals;
pub use schedules::{EventBridgeSchedules, ScheduleTarget, window_event};
pub use sqs::SqsQueue;
pub use store::DynamoRequestStore;
pub use windows::DynamoWindowStore;

use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK configuration from the environment (credentials, region), with
/// every service pointed at `endpoint` when one is given (an emulator).
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
