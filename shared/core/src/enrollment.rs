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
    /// Whether `other` links the same member under the same names.
    pub fn same_member(&self, other: &MemberLink) -> bool {
        self.member == other.member
            && self.first_name == other.first_name
            && self.last_name == other.last_name
    }
}
