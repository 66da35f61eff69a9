//! Where credits whose outcome is not settled are found again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::StoreError;
use crate::unsettled::{SweepMark, Unsettled};

/// Where unsettled items are found.
#[async_trait]
pub trait UnsettledIndex: Send + Sync {
    /// Items unsettled since before `before`, oldest first, at most `limit`.
    async fn unsettled(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError>;
}

/// Where the resolver keeps how far it has read the requests (one mark
/// per stack).
#[async_trait]
pub trait SweepMarks: Send + Sync {
    /// The mark last kept, if any.
    async fn sweep_mark(&self) -> Result<Option<SweepMark>, StoreError>;
    /// Keeps `mark` for the next run.
    async fn keep_sweep_mark(&self, mark: &SweepMark) -> Result<(), StoreError>;
}
