use async_trait::async_trait;

use crate::events::Event;

/// Why a bus took none of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event bus is unavailable: {0}")]
pub struct BusError(pub String);

/// Where events go: the stack's event bus. Delivery is at least once; a
/// re-sent event carries the same id and detail.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// The largest batch one call takes.
    fn batch_limit(&self) -> usize {
        10
    }

    /// Puts `events` (at most [`EventBus::batch_limit`]) on the bus; the
    /// positions in `events` of those it did not take, to be sent again.
    async fn put(&self, events: &[Event]) -> Result<Vec<usize>, BusError>;
}
