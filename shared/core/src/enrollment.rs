//! Enrollment: a recipient linked to a member account at a program's partner.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reason::Reason;
use crate::values::{MemberNumber, ProgramId, RecipientId};

/// A recipient's link to a member account at a program's partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLink {
    pub program: ProgramId,
    pub recipient: RecipientId,
    pub member: MemberNumber,
    pub first_name: String,
    pub last_name: String,
    /// What the partner said of this member and these names, once asked
    /// (before the first reservation for the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<MemberValidation>,
    /// Who made this link and when (an operator's principal, or
    /// `source:{id}`); none for a link of the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_at: Option<DateTime<Utc>>,
    /// Set when this link replaced another member number: the first credit
    /// after it says so on its timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<LinkChange>,
    /// Set when the link was removed: the recipient has no link (a removed
    /// link also hides the configuration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<LinkEvent>,
}

/// A link that replaced another member number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkChange {
    pub from: MemberNumber,
    pub by: String,
    pub at: DateTime<Utc>,
    /// The second operator who confirmed the change (none on links
    /// changed before it was kept here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
}

/// One change of a recipient's link, as its history keeps it: who, when,
/// the member number before and after (none: no link).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEvent {
    pub program: ProgramId,
    pub recipient: RecipientId,
    pub at: DateTime<Utc>,
    /// An operator's principal, or `source:{id}`.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<MemberNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<MemberNumber>,
    /// The proposal a second operator confirmed, for a change or removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
}

/// The partner's answer to a member validation, kept on the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValidation {
    pub valid: bool,
    /// The partner's reason when not valid, e.g. `name_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    pub at: DateTime<Utc>,
}

impl MemberLink {
    /// A link with no history yet (the configuration's, or a new one).
    pub fn new(
        program: ProgramId,
        recipient: RecipientId,
        member: MemberNumber,
        first_name: String,
        last_name: String,
    ) -> Self {
        Self {
            program,
            recipient,
            member,
            first_name,
            last_name,
            validation: None,
            linked_by: None,
            linked_at: None,
            changed: None,
            removed: None,
        }
    }

    /// Whether the link is in force (not removed).
    pub fn is_active(&self) -> bool {
        self.removed.is_none()
    }

    /// Whether `other` links the same member under the same names.
    pub fn same_member(&self, other: &MemberLink) -> bool {
        self.member == other.member
            && self.first_name == other.first_name
            && self.last_name == other.last_name
    }
}
