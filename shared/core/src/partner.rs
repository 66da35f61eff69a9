//! What dispatch asks of a partner and what it can hear back.

use serde::{Deserialize, Serialize};

use crate::request::Reason;
use crate::values::{MemberNumber, PartnerReference, Points};

/// One credit to one member, under our reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditInstruction {
    pub reference: PartnerReference,
    pub member: MemberNumber,
    pub points: Points,
    /// The program's code at the partner.
    pub partner_program: String,
    /// How long the call may take, at most (bounded by the invocation's remaining time).
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
}

/// Every answer a partner call can have. Only `Credited` and `Rejected` are
/// final; the ambiguous ones keep the reservation pending and the reference fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutcome {
    /// The partner credited the points.
    Credited { transaction: String },
    /// The partner accepted the credit and will settle it later.
    Pending { transaction: Option<String> },
    /// The partner refused for good: nothing was credited.
    Rejected(Reason),
    /// The partner has no record of the reference (status look-ups only).
    NotFound,
    /// Timeout, 5xx, connection failure: the credit may or may not have happened.
    Unknown { detail: String },
}
