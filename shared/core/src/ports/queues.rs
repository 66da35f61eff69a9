//! The queues between stages: sending work on, putting a message back for a
//! retry, and moving dead letters back after a fix.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::error::QueueError;
use crate::callback::CallbackMessage;
use crate::values::RequestId;
use crate::window::WindowWork;

/// The queues of a stack, as operators name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    Eligibility,
    Dispatch,
    /// Status callbacks.
    Callbacks,
}

impl QueueName {
    pub const ALL: [QueueName; 3] = [
        QueueName::Eligibility,
        QueueName::Dispatch,
        QueueName::Callbacks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Eligibility => "eligibility",
            QueueName::Dispatch => "dispatch",
            QueueName::Callbacks => "callbacks",
        }
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message between pipeline stages: which request to work on next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineMessage {
    pub request_id: RequestId,
}

/// Which messages of a batch were not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} of {} messages could not be sent: {cause}", failed.len(), total)]
pub struct PublishError {
    pub failed: Vec<RequestId>,
    pub total: usize,
    pub cause: QueueError,
}

#[async_trait]
pub trait Publish: Send + Sync {
    /// Sends every message or reports exactly which were not sent.
    async fn publish(&self, messages: &[PipelineMessage]) -> Result<(), PublishError>;
}

/// Sends window work to the dispatch queue.
#[async_trait]
pub trait PublishWork: Send + Sync {
    /// Sends every message or fails (a retry sends them again; work is idempotent).
    async fn publish_work(&self, work: &[WindowWork]) -> Result<(), QueueError>;
}

/// Where callback messages go.
#[async_trait]
pub trait PublishCallback: Send + Sync {
    async fn publish_callback(&self, message: &CallbackMessage) -> Result<(), QueueError>;
}

/// How a consumer puts a message it will retry back on its queue.
#[async_trait]
pub trait Redelivery: Send + Sync {
    /// Makes a received message visible again after `delay`
    /// (`ChangeMessageVisibility`); it keeps counting towards the queue's
    /// receive limit.
    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError>;

    /// Sends `body` anew, to be delivered after `delay` (at most 15
    /// minutes): a fresh message, so waiting does not count towards the
    /// receive limit. The caller then reports the original done.
    async fn send_later(&self, body: &str, delay: Duration) -> Result<(), QueueError>;

    /// Sends `body` straight to this queue's dead-letter queue: a message
    /// that will never be processed (given up on, unreadable) goes there
    /// at once, where an alarm reports it and a redrive can replay it,
    /// instead of waiting out the receive limit or the retention period.
    /// The caller then reports the original done. Refused when the queue
    /// has no dead-letter queue.
    async fn dead_letter(&self, body: &str) -> Result<(), QueueError>;
}

/// Every role of one queue: what an adapter implements.
pub trait Queue: Publish + PublishWork + PublishCallback + Redelivery {}

impl<T: Publish + PublishWork + PublishCallback + Redelivery> Queue for T {}

/// What a redrive moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveReport {
    /// Messages moved back to the source queue (and deleted from the DLQ).
    pub moved: u64,
    /// Messages that could not be moved; they stay in the DLQ.
    pub failed: u64,
    /// Messages still in the DLQ when the redrive stopped (its limit).
    pub left: u64,
}

/// A dead-letter queue and the queue its messages came from.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Moves up to `max` messages back to the source queue, each deleted
    /// from the DLQ only once sent (so a crash can duplicate a message,
    /// which every consumer ignores, but never lose one).
    async fn redrive(&self, max: u64) -> Result<RedriveReport, QueueError>;

    /// About how many messages wait in the DLQ.
    async fn depth(&self) -> Result<u64, QueueError>;
}
