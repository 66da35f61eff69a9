//! Retry: an operator sends a failed or rejected request through again once
//! its cause is fixed: a new round, decided by eligibility from the start,
//! reserved anew and credited under a new partner reference (see
//! `PointsRequest::retry`).

use pointsflow_core::access::Principal;
use pointsflow_core::ports::{
    Clock, PipelineMessage, Publish, PublishError, RequestGet, RequestUpdate, StoreError,
};
use pointsflow_core::request::{PointsRequest, RetryError, StatusKind};
use pointsflow_core::values::RequestId;

/// What a retry uses.
#[derive(Clone, Copy)]
pub struct RetryPorts<'a> {
    pub get: &'a dyn RequestGet,
    pub update: &'a dyn RequestUpdate,
    pub eligibility: &'a dyn Publish,
    pub clock: &'a dyn Clock,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryRequestError {
    #[error("no request {0}")]
    NotFound(RequestId),
    #[error(transparent)]
    Refused(#[from] RetryError),
    #[error("the store: {0}; run it again")]
    Store(StoreError),
    #[error("the request is retried but could not be queued ({0}); run it again")]
    NotQueued(PublishError),
    #[error("the request kept changing; run the command again")]
    Busy,
}

impl RetryRequestError {
    /// The stable code the edges answer with.
    pub fn code(&self) -> &'static str {
        match self {
            RetryRequestError::NotFound(_) => "not_found",
            RetryRequestError::Refused(e) => e.code(),
            RetryRequestError::Store(_)
            | RetryRequestError::NotQueued(_)
            | RetryRequestError::Busy => "unavailable",
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            RetryRequestError::Store(e) => e.is_transient(),
            RetryRequestError::NotQueued(_) | RetryRequestError::Busy => true,
            RetryRequestError::NotFound(_) | RetryRequestError::Refused(_) => false,
        }
    }
}

/// What a retry did.
#[derive(Debug, Clone)]
pub struct Retried {
    pub request: PointsRequest,
    /// False when an earlier run had retried it already (this one only
    /// queued it again).
    pub changed: bool,
}

/// Retries request `id`. Run again, it changes nothing more (the request
/// is no longer failed); if the first run could not queue it, this one does.
pub async fn retry(
    ports: RetryPorts<'_>,
    id: &RequestId,
    by: &Principal,
    reason: &str,
) -> Result<Retried, RetryRequestError> {
    for _ in 0..5 {
        let mut request = ports
            .get
            .get(id)
            .await
            .map_err(RetryRequestError::Store)?
            .ok_or_else(|| RetryRequestError::NotFound(id.clone()))?;
        let changed = match request.retry(by, reason, ports.clock.now()) {
            Ok(()) => true,
            Err(RetryError::NotRetryable { .. })
                if request.state() == StatusKind::Received && request.round > 0 =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        if changed {
            match ports.update.update(&request).await {
                Ok(version) => request.version = version,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(RetryRequestError::Store(e)),
            }
        }
        ports
            .eligibility
            .publish(&[PipelineMessage {
                request_id: id.clone(),
            }])
            .await
            .map_err(RetryRequestError::NotQueued)?;
        return Ok(Retried { request, changed });
    }
    Err(RetryRequestError::Busy)
}
