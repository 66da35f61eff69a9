//! Approvals: a request whose points are above its program's approval
//! threshold waits in `awaiting_approval` until an operator approves it (it
//! goes on to the reservation) or declines it (it is rejected). The decision,
//! who made it, when and why, stays on the request and in its timeline.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::Principal;
use crate::request::status::StatusKind;

/// The longest reason an operator may give.
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    Approve,
    Decline,
}

impl ApprovalDecision {
    pub fn past(self) -> &'static str {
        match self {
            ApprovalDecision::Approve => "approved",
            ApprovalDecision::Decline => "declined",
        }
    }
}

impl std::fmt::Display for ApprovalDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.past())
    }
}

/// An operator's decision, kept on the request: the audit of who approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub decision: ApprovalDecision,
    pub by: Principal,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("the request is {state}, not awaiting approval")]
    NotAwaiting { state: StatusKind },
    #[error("the request was already {decision} by {by}")]
    AlreadyDecided {
        decision: ApprovalDecision,
        by: Principal,
    },
    /// The request needs two approvers, and this one gave the first.
    #[error("{by} gave the first approval; a different approver must give the second")]
    SameApprover { by: Principal },
    #[error("{0}")]
    BadReason(&'static str),
}

impl ApprovalError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::NotAwaiting { .. } => "not_awaiting_approval",
            ApprovalError::AlreadyDecided { .. } => "already_decided",
            ApprovalError::SameApprover { .. } => "four_eyes",
            ApprovalError::BadReason(_) => "invalid_field",
        }
    }
}
