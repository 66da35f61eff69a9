//! Notify: a request's final status (credited, failed, rejected, reversed)
//! is queued for its source's callback. Every handler's store update does
//! so through [`Notifying`], so none can forget; an operator sends a status
//! again with [`notify`] (a callback that could not be queued, or a
//! receiver that lost it).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{PublishCallback, QueueError, RequestGet, RequestUpdate, StoreError};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{RequestId, SourceId};
use pointsflow_runtime::metrics::{self, Unit};

/// The request store's update, queueing a callback whenever a request of
/// a source with a callback reaches a final status.
pub struct Notifying {
    inner: Arc<dyn RequestUpdate>,
    queue: Arc<dyn PublishCallback>,
    sources: HashSet<SourceId>,
}

impl Notifying {
    /// `sources`: those with a callback URL; other requests queue nothing.
    pub fn new(
        inner: Arc<dyn RequestUpdate>,
        queue: Arc<dyn PublishCallback>,
        sources: impl IntoIterator<Item = SourceId>,
    ) -> Self {
        Self {
            inner,
            queue,
            sources: sources.into_iter().collect(),
        }
    }
}

#[async_trait]
impl RequestUpdate for Notifying {
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        let version = self.inner.update(request).await?;
        if !self.sources.contains(&request.source) {
            return Ok(version);
        }
        let Some(message) = CallbackMessage::for_final(request) else {
            return Ok(version);
        };
        // The status is stored: queue its callback, trying a few times. One
        // that still cannot be queued is reported (metric and alarm) and can
        // be sent with the operations command `notify`.
        let mut last = None;
        for attempt in 0..3u32 {
            match self.queue.publish_callback(&message).await {
                Ok(()) => return Ok(version),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        let error = last.map(|e| e.to_string()).unwrap_or_default();
        tracing::error!(request_id = %message.request_id, state = %message.state, %error, "could not queue the status callback");
        metrics::put(
            ("Source", request.source.as_str()),
            &[("CallbacksNotQueued", 1.0, Unit::Count)],
        );
        Ok(version)
    }
}

/// What an operator's `notify` uses.
#[derive(Clone, Copy)]
pub struct NotifyPorts<'a> {
    pub get: &'a dyn RequestGet,
    /// The callbacks queue, when a source here has a callback.
    pub callbacks: Option<&'a dyn PublishCallback>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("no request {0}")]
    NotFound(RequestId),
    #[error(
        "the request is {0}: only a final status (credited, failed, rejected, reversed) is sent"
    )]
    NotFinal(StatusKind),
    #[error("no source here has a callback (the request's source is {0})")]
    NoCallback(SourceId),
    #[error("the store: {0}; run it again")]
    Store(StoreError),
    #[error("the callbacks queue: {0}; run it again")]
    NotQueued(QueueError),
}

impl NotifyError {
    pub fn code(&self) -> &'static str {
        match self {
            NotifyError::NotFound(_) => "not_found",
            NotifyError::NotFinal(_) => "not_final",
            NotifyError::NoCallback(_) => "no_callback",
            NotifyError::Store(_) | NotifyError::NotQueued(_) => "unavailable",
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Store(e) => e.is_transient(),
            NotifyError::NotQueued(_) => true,
            NotifyError::NotFound(_) | NotifyError::NotFinal(_) | NotifyError::NoCallback(_) => {
                false
            }
        }
    }
}

/// Queues request `id`'s final status for its source's callback again.
pub async fn notify(
    ports: NotifyPorts<'_>,
    id: &RequestId,
) -> Result<CallbackMessage, NotifyError> {
    let request = ports
        .get
        .get(id)
        .await
        .map_err(NotifyError::Store)?
        .ok_or_else(|| NotifyError::NotFound(id.clone()))?;
    let state = request.state();
    if !state.is_terminal() {
        return Err(NotifyError::NotFinal(state));
    }
    let queue = ports
        .callbacks
        .ok_or_else(|| NotifyError::NoCallback(request.source.clone()))?;
    let message = CallbackMessage {
        request_id: id.clone(),
        state,
        at: request.entered(state).unwrap_or(request.received_at),
    };
    queue
        .publish_callback(&message)
        .await
        .map_err(NotifyError::NotQueued)?;
    Ok(message)
}
