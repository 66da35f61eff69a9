//! Notify: an operator sends a request's final status (credited, failed,
//! rejected, reversed) to its source's callback again, under the same
//! event id as the first time (a receiver that lost it). The first time,
//! the events function queues it from the store's record of the write
//! that made the status final (`pointsflow_events`), so no handler can
//! forget it and no crash after the write can lose it.

use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{PublishCallback, QueueError, RequestGet, StoreError};
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::{RequestId, SourceId};

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
    let message = CallbackMessage::latest(&request).unwrap_or(CallbackMessage {
        request_id: id.clone(),
        state,
        at: request.entered(state).unwrap_or(request.received_at),
        event_id: None,
    });
    queue
        .publish_callback(&message)
        .await
        .map_err(NotifyError::NotQueued)?;
    Ok(message)
}
