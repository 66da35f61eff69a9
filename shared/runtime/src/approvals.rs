//! An operator's decision on a request waiting for approval, the one way
//! both the HTTP API and the operations function record it.

use pointsflow_core::approval::{ApprovalDecision, ApprovalError};
use pointsflow_core::ports::{
    Clock, PipelineMessage, Publish, RequestGet, RequestUpdate, StoreError,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{OperatorId, RequestId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("no request with this id")]
    NotFound,
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("the decision could not be stored: {0}")]
    Unavailable(String),
    #[error("the approval is recorded but could not be queued: {0}")]
    NotQueued(String),
    #[error("the request kept changing while it was decided")]
    Busy,
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
    by: &OperatorId,
    reason: Option<&str>,
) -> Result<(PointsRequest, bool), DecideError> {
    // A concurrent change (eligibility, another operator) moves the
    // version: read again and decide again, a few times.
    for _ in 0..3 {
        let mut stored = ports
            .get
            .get(id)
            .await
            .map_err(|e| DecideError::Unavailable(e.to_string()))?
            .ok_or(DecideError::NotFound)?;
        let changed = stored.decide_approval(decision, by, reason, ports.clock.now())?;
        if changed {
            match ports.update.update(&stored).await {
                Ok(version) => stored.version = version,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(DecideError::Unavailable(e.to_string())),
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
                .map_err(|e| DecideError::NotQueued(e.to_string()))?;
        }
        return Ok((stored, changed));
    }
    Err(DecideError::Busy)
}
