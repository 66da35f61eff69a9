//! Resolve: an operator asks for an unsettled request's outcome to be
//! looked up at the partner now, under its own reference (dispatch does
//! the look-up; a window credit's request is looked up through its credit).

use pointsflow_core::ports::{PipelineMessage, Publish, PublishError, RequestGet, StoreError};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::RequestId;

/// What a resolve uses.
#[derive(Clone, Copy)]
pub struct ResolvePorts<'a> {
    pub get: &'a dyn RequestGet,
    pub dispatch: &'a dyn Publish,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no request {0}")]
    NotFound(RequestId),
    #[error(
        "the request is {0}; only a dispatching, unknown or partner_pending request has an outcome to look up"
    )]
    NotUnsettled(StatusKind),
    #[error("the store: {0}; run it again")]
    Store(StoreError),
    #[error("the dispatch queue: {0}; run it again")]
    NotQueued(PublishError),
}

impl ResolveError {
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::NotFound(_) => "not_found",
            ResolveError::NotUnsettled(_) => "not_unsettled",
            ResolveError::Store(_) | ResolveError::NotQueued(_) => "unavailable",
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            ResolveError::Store(e) => e.is_transient(),
            ResolveError::NotQueued(_) => true,
            ResolveError::NotFound(_) | ResolveError::NotUnsettled(_) => false,
        }
    }
}

/// Queues request `id` for dispatch to look its outcome up; returns it as
/// it stands.
pub async fn resolve(
    ports: ResolvePorts<'_>,
    id: &RequestId,
) -> Result<PointsRequest, ResolveError> {
    let request = ports
        .get
        .get(id)
        .await
        .map_err(ResolveError::Store)?
        .ok_or_else(|| ResolveError::NotFound(id.clone()))?;
    let state = request.state();
    if !matches!(
        state,
        StatusKind::Dispatching | StatusKind::Unknown | StatusKind::PartnerPending
    ) {
        return Err(ResolveError::NotUnsettled(state));
    }
    ports
        .dispatch
        .publish(&[PipelineMessage {
            request_id: id.clone(),
        }])
        .await
        .map_err(ResolveError::NotQueued)?;
    Ok(request)
}
