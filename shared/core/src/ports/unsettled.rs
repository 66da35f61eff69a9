//! Where credits whose outcome is not settled are found again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::StoreError;
use crate::unsettled::Unsettled;

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
