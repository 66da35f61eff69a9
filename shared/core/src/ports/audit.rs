//! The audit log of operators' commands.

use async_trait::async_trait;
use chrono::NaiveDate;

use super::error::StoreError;
use crate::audit::AuditEntry;

/// Every command an operator runs, written when it starts and again when it ends.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes `entry`, replacing the one with its id (its start, when it ends).
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The entries of commands started on `day` (UTC), oldest first.
    async fn entries(&self, day: NaiveDate) -> Result<Vec<AuditEntry>, StoreError>;
}
