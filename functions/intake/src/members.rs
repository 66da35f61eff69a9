//! `PUT /v1/programs/{program}/members/{recipient}`: a source links a
//! recipient who has no link to a member number at the program's partner,
//! with the names the partner checks (the number in the program's format).
//! What a source sees back is what it sent: it never reads another link.

use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};
use serde::{Deserialize, Serialize};

/// The body of a `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    pub member_number: String,
    pub first_name: String,
    pub last_name: String,
}

/// A link as the answer shows it.
#[derive(Debug, Serialize)]
pub struct LinkView<'a> {
    pub program: &'a ProgramId,
    pub recipient: &'a RecipientId,
    pub member_number: &'a MemberNumber,
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// Requests that were waiting for this link and are now decided again.
    pub released: usize,
}

impl<'a> LinkView<'a> {
    pub fn of(link: &'a MemberLink, released: usize) -> Self {
        Self {
            program: &link.program,
            recipient: &link.recipient,
            member_number: &link.member,
            first_name: &link.first_name,
            last_name: &link.last_name,
            released,
        }
    }
}
