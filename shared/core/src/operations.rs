//! What operators' commands need beyond the pipeline's ports: an audit log
//! (who ran which command when, and what came of it) and the dead-letter
//! queues they move messages back from.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::StoreError;
use crate::values::OperatorId;

/// One command an operator ran, as the audit log keeps it. Written when the
/// command starts (`outcome` none) and again, under the same id, when it
/// ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique per invocation: `{time}-{random}`.
    pub id: String,
    pub operator: OperatorId,
    /// `get`, `reverse`, ...
    pub command: String,
    /// The command's arguments, as given.
    pub arguments: serde_json::Value,
    /// The request the command is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditOutcome>,
}

/// How a command ended: `ok` with a one-line summary, or the error's code
/// and sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditOutcome {
    pub ok: bool,
    /// `ok`, or the error's stable code.
    pub code: String,
    pub summary: String,
    pub finished_at: DateTime<Utc>,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes `entry`, replacing the one with its id (its start, when it ends).
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The entries of commands started on `day` (UTC), oldest first.
    async fn entries(&self, day: NaiveDate) -> Result<Vec<AuditEntry>, StoreError>;
}

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
    async fn redrive(&self, max: u64) -> Result<RedriveReport, String>;

    /// About how many messages wait in the DLQ.
    async fn depth(&self) -> Result<u64, String>;
}

/// What `search` looks for: every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    /// The source system's record id (`event.id`), e.g. an Opportunity id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<crate::values::RecipientId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<crate::values::MemberNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::request::StatusKind>,
    /// A scheduled program's window, `{program}@YYYY-MM-DDTHH:MMZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<crate::values::ProgramId>,
}

impl SearchFilter {
    pub fn is_empty(&self) -> bool {
        self == &SearchFilter::default()
    }

    pub fn matches(&self, r: &crate::request::PointsRequest) -> bool {
        let window = match &r.status {
            crate::request::Status::Scheduled { window } => Some(window.as_str()),
            _ => r
                .credit
                .as_ref()
                .and_then(|c| c.as_str().split_once('/'))
                .map(|(w, _)| w),
        };
        self.source_record
            .as_deref()
            .is_none_or(|s| r.event.id.as_deref() == Some(s))
            && self.recipient.as_ref().is_none_or(|x| &r.recipient.id == x)
            && self
                .member
                .as_ref()
                .is_none_or(|m| r.member.as_ref() == Some(m))
            && self.status.is_none_or(|s| r.state() == s)
            && self.window.as_deref().is_none_or(|w| window == Some(w))
            && self.program.as_ref().is_none_or(|p| &r.program == p)
    }
}

/// Finds requests by what operators know of them.
#[async_trait]
pub trait RequestSearch: Send + Sync {
    /// Up to `limit` requests matching `filter`, oldest received first
    /// within what was read.
    async fn search(
        &self,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<crate::request::PointsRequest>, StoreError>;
}
