//! What a port can answer besides its result.

/// A storage failure. `Conflict` and `NotFound` are answers (a condition
/// failed, nothing there); `Unavailable` is transient and the caller
/// retries; `Malformed` is an item that cannot be read back (corruption, or
/// a writer of another shape): retrying reads it again, so it is never
/// retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the item changed since it was read (expected version {expected})")]
    Conflict { expected: u64 },
    #[error("no such item")]
    NotFound,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("malformed item: {0}")]
    Malformed(String),
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A queue that did not take (or give back) a message. Every case is
/// transient: the caller retries, or leaves its own message to come back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue service did not answer, or refused for now (throttling).
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue answered, but refused the message (too large, a bad
    /// receipt handle): sending the same again will not help.
    #[error("the queue refused the message: {0}")]
    Refused(String),
}
