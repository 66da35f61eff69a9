//! A partner's rate limit and circuit, shared by every invocation.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::StoreError;
use crate::governance::{Circuit, Slot};
use crate::values::PartnerId;

/// A partner's rate limit, shared by every invocation.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Reserves the next call slot of `partner` (calls `spacing` apart)
    /// unless it is more than `max_wait` away.
    async fn reserve(
        &self,
        partner: &PartnerId,
        spacing: Duration,
        max_wait: Duration,
        now: DateTime<Utc>,
    ) -> Result<Slot, StoreError>;
}

/// Partners' circuits, shared by every invocation.
#[async_trait]
pub trait CircuitStore: Send + Sync {
    /// The partner's circuit (closed, version 0, when never stored).
    async fn circuit(&self, partner: &PartnerId) -> Result<Circuit, StoreError>;

    /// Saves `circuit` if the stored version is still `circuit.version`.
    async fn save_circuit(&self, partner: &PartnerId, circuit: &Circuit)
    -> Result<u64, StoreError>;
}
