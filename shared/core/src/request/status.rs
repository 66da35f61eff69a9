//! A request's states and the table of allowed moves between them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reason::{Reason, ReasonCode};

/// The states of DESIGN.md, with the data each one carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Received,
    Rejected {
        reason: Reason,
    },
    /// Waiting for an operator; the reason says which rule asked for approval.
    AwaitingApproval {
        reason: Reason,
    },
    /// The recipient has no member account linked yet; linking one releases it.
    AwaitingEnrollment {
        reason: Reason,
    },
    /// The program is paused and holds its requests; resuming releases them.
    Held {
        reason: Reason,
    },
    Reserved,
    Scheduled {
        window: String,
    },
    Dispatching,
    Credited,
    PartnerPending,
    Unknown,
    Failed {
        reason: Reason,
    },
    Reversed,
}

/// A state without its data: what the transition table and the timeline speak of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Received,
    Rejected,
    AwaitingApproval,
    AwaitingEnrollment,
    Held,
    Reserved,
    Scheduled,
    Dispatching,
    Credited,
    PartnerPending,
    Unknown,
    Failed,
    Reversed,
}

impl StatusKind {
    pub const ALL: [StatusKind; 13] = [
        StatusKind::Received,
        StatusKind::Rejected,
        StatusKind::AwaitingApproval,
        StatusKind::AwaitingEnrollment,
        StatusKind::Held,
        StatusKind::Reserved,
        StatusKind::Scheduled,
        StatusKind::Dispatching,
        StatusKind::Credited,
        StatusKind::PartnerPending,
        StatusKind::Unknown,
        StatusKind::Failed,
        StatusKind::Reversed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Received => "received",
            StatusKind::Rejected => "rejected",
            StatusKind::AwaitingApproval => "awaiting_approval",
            StatusKind::AwaitingEnrollment => "awaiting_enrollment",
            StatusKind::Held => "held",
            StatusKind::Reserved => "reserved",
            StatusKind::Scheduled => "scheduled",
            StatusKind::Dispatching => "dispatching",
            StatusKind::Credited => "credited",
            StatusKind::PartnerPending => "partner_pending",
            StatusKind::Unknown => "unknown",
            StatusKind::Failed => "failed",
            StatusKind::Reversed => "reversed",
        }
    }

    /// The transition table of DESIGN.md. `unknown -> unknown` and
    /// `partner_pending -> partner_pending` record another attempt or look-up
    /// that still did not settle; `unknown -> partner_pending` is a retry under
    /// the same reference that the partner accepted for later settlement.
    pub fn can_become(self, to: StatusKind) -> bool {
        use StatusKind::*;
        matches!(
            (self, to),
            (
                Received,
                Rejected | AwaitingApproval | AwaitingEnrollment | Held | Reserved
            ) | (
                AwaitingEnrollment,
                Rejected | AwaitingApproval | Held | Reserved
            ) | (
                Held,
                Rejected | AwaitingApproval | AwaitingEnrollment | Reserved
            ) | (AwaitingApproval, Reserved | Rejected)
                | (Reserved, Scheduled | Dispatching)
                | (Scheduled, Dispatching)
                | (Dispatching, Credited | PartnerPending | Unknown | Failed)
                | (PartnerPending, Credited | Failed | PartnerPending)
                | (Unknown, Credited | Failed | PartnerPending | Unknown)
                | (Credited, Reversed)
        )
    }

    /// The states a request waits in until something outside eligibility
    /// releases it (a link, the program resuming); stores index them.
    pub fn is_waiting(self) -> bool {
        matches!(self, StatusKind::AwaitingEnrollment | StatusKind::Held)
    }

    /// The states the pipeline moves a request on from by itself, from its
    /// receipt to its partner's answer: `received`, `reserved`,
    /// `dispatching`. A request left in one of them has stalled.
    pub fn is_moving_on(self) -> bool {
        matches!(
            self,
            StatusKind::Received | StatusKind::Reserved | StatusKind::Dispatching
        )
    }

    /// No transition leaves a terminal state except `credited -> reversed`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StatusKind::Rejected | StatusKind::Failed | StatusKind::Credited | StatusKind::Reversed
        )
    }
}

impl std::fmt::Display for StatusKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Received => StatusKind::Received,
            Status::Rejected { .. } => StatusKind::Rejected,
            Status::AwaitingApproval { .. } => StatusKind::AwaitingApproval,
            Status::AwaitingEnrollment { .. } => StatusKind::AwaitingEnrollment,
            Status::Held { .. } => StatusKind::Held,
            Status::Reserved => StatusKind::Reserved,
            Status::Scheduled { .. } => StatusKind::Scheduled,
            Status::Dispatching => StatusKind::Dispatching,
            Status::Credited => StatusKind::Credited,
            Status::PartnerPending => StatusKind::PartnerPending,
            Status::Unknown => StatusKind::Unknown,
            Status::Failed { .. } => StatusKind::Failed,
            Status::Reversed => StatusKind::Reversed,
        }
    }

    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Status::Rejected { reason }
            | Status::Failed { reason }
            | Status::AwaitingApproval { reason }
            | Status::AwaitingEnrollment { reason }
            | Status::Held { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One line of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub state: StatusKind,
    pub at: DateTime<Utc>,
    pub detail: String,
    /// The step of a reversal this line records, if it records one (a
    /// line written before reversals were named here has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal: Option<ReversalStep>,
    /// The code of the reason the line's state has (rejected, failed,
    /// waiting, held), so the line's event says why however the request
    /// changes later (a line written before codes were kept here has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
}

impl TimelineEntry {
    pub fn new(state: StatusKind, at: DateTime<Utc>, detail: impl Into<String>) -> Self {
        Self {
            state,
            at,
            detail: detail.into(),
            reversal: None,
            reason: None,
        }
    }
}

/// A reversal's step, as a timeline line records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalStep {
    /// The reversal's id on the request.
    pub id: String,
    pub step: ReversalStepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalStepKind {
    Asked,
    Done,
    Refused,
}
