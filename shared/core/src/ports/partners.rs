//! A partner, as dispatch, eligibility and operators call it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, ReversalInstruction,
    ReversalOutcome,
};
use crate::reconcile::StatementLine;
use crate::values::PartnerReference;

/// Why a partner's statement could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// This partner offers no statement: reconciliation compares our side only.
    #[error("this partner offers no statement")]
    Unsupported,
    /// No answer, or an answer that could not be read: try again later.
    #[error("the statement could not be read: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PartnerConnector: Send + Sync {
    /// Whether a repeated credit with the same reference is answered with the
    /// original outcome. When it is not, a status look-up must precede a retry.
    fn idempotent_on_reference(&self) -> bool;

    /// How long after receiving a call the partner may still commit what
    /// it asked for (an order recorded late): a partner that does not
    /// recognise a repeated reference is not looked up before then
    /// ([`crate::delivery::lease_left`]).
    fn commit_within(&self) -> Duration {
        Duration::ZERO
    }

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
    ) -> Result<Vec<StatementLine>, StatementError> {
        let _ = (from, to);
        Err(StatementError::Unsupported)
    }
}
