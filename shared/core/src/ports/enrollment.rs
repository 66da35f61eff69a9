//! Where member links are kept.

use async_trait::async_trait;

use super::error::StoreError;
use crate::enrollment::{LinkEvent, MemberLink};
use crate::values::{ProgramId, RecipientId};

#[async_trait]
pub trait Enrollments: Send + Sync {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError>;

    /// Stores the link, replacing the recipient's previous one in the program.
    async fn put_link(&self, link: &MemberLink) -> Result<(), StoreError>;

    /// Stores `link` only if the recipient has no link in force (none, or
    /// a removed one); otherwise returns the link in force, unchanged.
    async fn create_link(&self, link: &MemberLink) -> Result<Option<MemberLink>, StoreError>;

    /// Stores `link` with its validation only if the link stored now (if
    /// any) is still to the same member with the same names; `false` when
    /// the recipient was linked anew meanwhile.
    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError>;
}

/// Every change of a recipient's link, kept for good.
#[async_trait]
pub trait LinkHistory: Send + Sync {
    /// Adds `event` (a repeat of the same event is harmless).
    async fn record(&self, event: &LinkEvent) -> Result<(), StoreError>;

    /// The recipient's link changes in `program`, oldest first.
    async fn history(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Vec<LinkEvent>, StoreError>;
}
