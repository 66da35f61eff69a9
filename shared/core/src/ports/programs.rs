//! Programs: the snapshot handlers read, and where operators' revisions are kept.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use crate::access::Principal;
use crate::program::Program;
use crate::values::ProgramId;

/// Programs as currently configured. Reads are cheap and synchronous: the
/// catalog is a snapshot, which each handler refreshes (when it is older than
/// the refresh interval) at the start of an invocation.
#[async_trait]
pub trait ProgramCatalog: Send + Sync {
    fn program(&self, id: &ProgramId) -> Option<Arc<Program>>;

    /// Every program in the snapshot.
    fn programs(&self) -> Vec<Arc<Program>>;

    /// Reloads the snapshot if it is stale. On an error the last snapshot stays.
    async fn refresh(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Reloads the snapshot now, whatever its age (a release that says the
    /// program changed).
    async fn reload(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A program as an operator applied it, over the configuration's: its
/// revision (1, 2, ...) and who applied it when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProgram {
    pub program: Program,
    pub revision: u64,
    pub applied_by: Principal,
    /// The second operator, who confirmed the revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<Principal>,
    pub applied_at: DateTime<Utc>,
}

/// Where applied programs are kept (`pointsflow programs apply`).
#[async_trait]
pub trait ProgramStore: Send + Sync {
    /// Every applied program, at its latest revision.
    async fn programs(&self) -> Result<Vec<StoredProgram>, StoreError>;

    /// Stores `program` if the stored revision is `program.revision - 1`
    /// (nothing stored, for revision 1); otherwise `Conflict`.
    async fn put_program(&self, program: &StoredProgram) -> Result<(), StoreError>;
}
