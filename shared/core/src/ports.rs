//! Ports: the small role traits handlers depend on. Each has an embedded
//! adapter (`pointsflow-memory`) and an AWS adapter with the same semantics.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ledger::{AccountId, Applied, Balance, Entry, LedgerError};
use crate::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, ReversalInstruction,
    ReversalOutcome,
};
use crate::program::Program;
use crate::request::{PointsRequest, Reason, StatusKind};
use crate::values::{
    MemberNumber, OperatorId, PartnerReference, ProgramId, RecipientId, RequestId,
};

/// A storage failure. `Conflict` is an answer (a condition failed); the
/// others are transient and the caller retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the item changed since it was read (expected version {expected})")]
    Conflict { expected: u64 },
    #[error("no such item")]
    NotFound,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The outcome of a conditional create.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New,
    /// An item with this id already exists; here it is, as stored.
    Existing(Box<PointsRequest>),
}

#[async_trait]
pub trait RequestCreate: Send + Sync {
    /// Puts the request only if no request with its id exists.
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError>;
}

#[async_trait]
pub trait RequestGet: Send + Sync {
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError>;
}

#[async_trait]
pub trait RequestUpdate: Send + Sync {
    /// Replaces the stored request if its version is still `request.version`;
    /// the stored copy gets `version + 1`, which is returned.
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait LedgerWrite: Send + Sync {
    /// Applies the entries all together or not at all. Entries that exist
    /// already with the same effect make the call a retry ([`Applied::Already`]).
    async fn apply(&self, entries: &[Entry]) -> Result<Applied, LedgerError>;
}

#[async_trait]
pub trait LedgerRead: Send + Sync {
    async fn entries_for(&self, request: &RequestId) -> Result<Vec<Entry>, LedgerError>;
    async fn balance(&self, account: &AccountId) -> Result<Balance, LedgerError>;
}

/// A message between pipeline stages: which request to work on next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineMessage {
    pub request_id: RequestId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} of {} messages could not be sent: {reason}", failed.len(), total)]
pub struct PublishError {
    pub failed: Vec<RequestId>,
    pub total: usize,
    pub reason: String,
}

#[async_trait]
pub trait Publish: Send + Sync {
    /// Sends every message or reports exactly which were not sent.
    async fn publish(&self, messages: &[PipelineMessage]) -> Result<(), PublishError>;
}

/// How a consumer puts a message it will retry back on its queue.
#[async_trait]
pub trait Redelivery: Send + Sync {
    /// Makes a received message visible again after `delay`
    /// (`ChangeMessageVisibility`); it keeps counting towards the queue's
    /// receive limit.
    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), String>;

    /// Sends `body` anew, to be delivered after `delay` (at most 15
    /// minutes): a fresh message, so waiting does not count towards the
    /// receive limit. The caller then reports the original done.
    async fn send_later(&self, body: &str, delay: Duration) -> Result<(), String>;
}

/// The time, injected so a run can be replayed.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// New ids, injected so a run can be replayed.
pub trait IdSource: Send + Sync {
    fn partner_reference(&self) -> PartnerReference;
}

#[async_trait]
pub trait PartnerConnector: Send + Sync {
    /// Whether a repeated credit with the same reference is answered with the
    /// original outcome. When it is not, a status look-up must precede a retry.
    fn idempotent_on_reference(&self) -> bool;

    async fn credit(&self, instruction: &CreditInstruction) -> CreditOutcome;

    /// What the partner knows of a reference; `CreditOutcome::NotFound` when
    /// nothing. Only a settled failure is a rejection; any error is `Unknown`.
    async fn status(
        &self,
        reference: &PartnerReference,
        timeout: Option<Duration>,
    ) -> CreditOutcome;

    /// Whether the partner knows the member with these names.
    async fn validate_member(&self, check: &MemberCheck) -> MemberCheckOutcome;

    /// Takes back points a credit gave, never more than it gave.
    async fn reverse(&self, reversal: &ReversalInstruction) -> ReversalOutcome;

    /// The partner's statement: the credits it created in `[from, to)`.
    async fn statement(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::reconcile::StatementLine>, String> {
        let _ = (from, to);
        Err("this partner offers no statement".into())
    }
}

/// Programs as currently configured. Reads are cheap and synchronous: the
/// catalog is a snapshot, which each handler refreshes (when it is older than
/// the refresh interval) at the start of an invocation.
#[async_trait]
pub trait ProgramCatalog: Send + Sync {
    fn program(&self, id: &ProgramId) -> Option<Arc<Program>>;

    /// Every program in the snapshot.
    fn programs(&self) -> Vec<Arc<Program>>;

    /// Reloads the snapshot if it is stale. On an error the last snapshot stays.
    async fn refresh(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Reloads the snapshot now, whatever its age (a release that says the
    /// program changed).
    async fn reload(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A program as an operator applied it, over the configuration's: its
/// revision (1, 2, ...) and who applied it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProgram {
    pub program: Program,
    pub revision: u64,
    pub applied_by: OperatorId,
    pub applied_at: DateTime<Utc>,
}

/// Where applied programs are kept (`pointsflow programs apply`).
#[async_trait]
pub trait ProgramStore: Send + Sync {
    /// Every applied program, at its latest revision.
    async fn programs(&self) -> Result<Vec<StoredProgram>, StoreError>;

    /// Stores `program` if the stored revision is `program.revision - 1`
    /// (nothing stored, for revision 1); otherwise `Conflict`.
    async fn put_program(&self, program: &StoredProgram) -> Result<(), StoreError>;
}

/// A recipient's link to a member account at a program's partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLink {
    pub program: ProgramId,
    pub recipient: RecipientId,
    pub member: MemberNumber,
    pub first_name: String,
    pub last_name: String,
    /// What the partner said of this member and these names, once asked
    /// (before the first reservation for the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<MemberValidation>,
}

/// The partner's answer to a member validation, kept on the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValidation {
    pub valid: bool,
    /// The partner's reason when not valid, e.g. `name_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait Enrollments: Send + Sync {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError>;

    /// Stores the link, replacing the recipient's previous one in the program.
    async fn put_link(&self, link: &MemberLink) -> Result<(), StoreError>;

    /// Stores `link` with its validation only if the link stored now (if
    /// any) is still to the same member with the same names; `false` when
    /// the recipient was linked anew meanwhile.
    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError>;
}

impl MemberLink {
    /// Whether `other` links the same member under the same names.
    pub fn same_member(&self, other: &MemberLink) -> bool {
        self.member == other.member
            && self.first_name == other.first_name
            && self.last_name == other.last_name
    }
}

/// The requests of a program waiting in a state something else releases:
/// `awaiting_enrollment` (a link) or `held` (the program resuming).
#[async_trait]
pub trait WaitingRequests: Send + Sync {
    /// The ids of the requests in `state` for `recipient` in `program`
    /// (every recipient when `None`), oldest first. Only the waiting states
    /// are indexed: any other state finds nothing.
    async fn waiting(
        &self,
        program: &ProgramId,
        state: StatusKind,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError>;
}
