//! Where member links are kept.

use async_trait::async_trait;

use super::error::StoreError;
use crate::enrollment::{LinkEvent, MemberLink};
use crate::values::{MemberNumber, ProgramId, RecipientId};

#[async_trait]
pub trait Enrollments: Send + Sync {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError>;

    /// Replaces the link in force to `previous` with `link` (another
    /// member, or the same link marked removed); `false`, storing nothing,
    /// when the link stored now is not in force to `previous` (changed or
    /// removed meanwhile). Nothing stored at all counts as `previous` (a
    /// configured link, which is in force until one is stored).
    async fn replace_link(
        &self,
        link: &MemberLink,
        previous: &MemberNumber,
    ) -> Result<bool, StoreError>;

    /// Stores `link` only if the recipient has no link in force (none, or
    /// a removed one); otherwise returns the link in force, unchanged.
    async fn create_link(&self, link: &MemberLink) -> Result<Option<MemberLink>, StoreError>;

    /// Stores `link` with its validation only if the link stored now (if
    /// any) is still in force, to the same member with the same names,
    /// made at the same time (`linked_at`); `false` when the recipient was
    /// linked anew (even to the same member) or unlinked meanwhile.
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
