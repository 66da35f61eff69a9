//! Status callbacks ("hand-back"): when a request reaches a final status
//! (credited, failed, rejected, reversed), a message goes to the callbacks
//! queue, and the callbacks function posts the status, signed, to the
//! source's callback URL, retrying with backoff until the receiver takes
//! it (or 72 hours have passed: then it waits in the dead-letter queue for a
//! replay).
//!
//! The message is queued by [`Notifying`], around the request store's
//! update: every handler that moves a request to a final status does so
//! through it, so none can forget.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
pub use pointsflow_core::callback::{CallbackMessage, PublishCallback};
use pointsflow_core::ports::{RequestUpdate, StoreError};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::values::SourceId;

/// Header carrying the Unix time (seconds) the call was signed at.
pub const TIMESTAMP_HEADER: &str = "x-pointsflow-timestamp";
/// Header carrying `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`.
pub const SIGNATURE_HEADER: &str = "x-pointsflow-signature";
/// Header carrying the event's id (`{request}:{status}`): receivers dedupe on it.
pub const EVENT_ID_HEADER: &str = "x-pointsflow-event-id";

/// HMAC-SHA256 of `{timestamp}.{body}` under `secret`, as hex.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this cannot happen.
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

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
        let mut last = String::new();
        for attempt in 0..3u32 {
            match self.queue.publish_callback(&message).await {
                Ok(()) => return Ok(version),
                Err(e) => last = e,
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
        tracing::error!(request_id = %message.request_id, state = %message.state, error = %last, "could not queue the status callback");
        crate::metrics::put(
            ("Source", request.source.as_str()),
            &[("CallbacksNotQueued", 1.0, crate::metrics::Unit::Count)],
        );
        Ok(version)
    }
}
