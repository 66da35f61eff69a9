//! Where proposals (the changes a second operator confirms) are kept.

use async_trait::async_trait;

use super::error::StoreError;
use crate::proposal::{Proposal, ProposalId};

#[async_trait]
pub trait ProposalStore: Send + Sync {
    /// Stores a new proposal (`Conflict` if its id exists).
    async fn create(&self, proposal: &Proposal) -> Result<(), StoreError>;

    async fn proposal(&self, id: &ProposalId) -> Result<Option<Proposal>, StoreError>;

    /// Saves `proposal` if the stored version is still `proposal.version`;
    /// returns the new version.
    async fn save(&self, proposal: &Proposal) -> Result<u64, StoreError>;

    /// The proposals still open, oldest first, at most `limit`.
    async fn open(&self, limit: usize) -> Result<Vec<Proposal>, StoreError>;
}
