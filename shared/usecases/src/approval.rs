//! Approve or decline: an operator's decision on a request waiting for
//! approval, the one way every edge (the admin API, the operations
//! function) records it.

use pointsflow_core::access::Principal;
use pointsflow_core::approval::{ApprovalDecision, ApprovalError};
use pointsflow_core::ports::{
    Clock, PipelineMessage, Publish, PublishError, RequestGet, RequestUpdate, StoreError,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::RequestId;

/// Why a decision was not recorded (or, recorded, not queued).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("no request with this id")]
    NotFound,
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("the decision could not be stored: {0}")]
    Store(StoreError),
    #[error("the approval is recorded but could not be queued: {0}")]
    NotQueued(PublishError),
    #[error("the request kept changing while it was decided")]
    Busy,
}

impl DecideError {
    /// Whether the same decision, sent again, may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DecideError::Store(e) => e.is_transient(),
            DecideError::NotQueued(_) | DecideError::Busy => true,
            DecideError::NotFound | DecideError::Approval(_) => false,
        }
    }
}

/// The ports a decision uses.
#[derive(Clone, Copy)]
pub struct DecidePorts<'a> {
    pub get: &'a dyn RequestGet,
    pub update: &'a dyn RequestUpdate,
    pub eligibility: &'a dyn Publish,
    pub clock: &'a dyn Clock,
}

/// Records `decision` on request `id` and, for an approval, queues the
/// request for eligibility to reserve. The same decision again changes
/// nothing but queues the request again if it still waits (a retry after a
/// failed send); eligibility ignores duplicates. Returns the request as
/// stored and whether this call changed it.
pub async fn decide(
    ports: DecidePorts<'_>,
    id: &RequestId,
    decision: ApprovalDecision,
    by: &Principal,
    reason: Option<&str>,
) -> Result<(PointsRequest, bool), DecideError> {
    // A concurrent change (eligibility, another operator) moves the
    // version: read again and decide again, a few times.
    for _ in 0..3 {
        let mut stored = ports
            .get
            .get(id)
            .await
            .map_err(DecideError::Store)?
            .ok_or(DecideError::NotFound)?;
        let changed = stored.decide_approval(decision, by, reason, ports.clock.now())?;
        if changed {
            match ports.update.update(&stored).await {
                Ok(version) => stored.version = version,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(DecideError::Store(e)),
            }
            tracing::info!(%decision, operator = %by, "decided");
        }
        if stored.state() == StatusKind::AwaitingApproval && stored.is_approved() {
            let message = PipelineMessage {
                request_id: stored.id.clone(),
            };
            ports
                .eligibility
                .publish(&[message])
                .await
                .map_err(DecideError::NotQueued)?;
        }
        return Ok((stored, changed));
    }
    Err(DecideError::Busy)
}
