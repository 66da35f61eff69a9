//! A window's credits at the partner and where each stands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::id::{CreditId, WindowId};
use crate::delivery::{DeliveryState, Outcome};
use crate::reason::{PersonName, Reason};
use crate::values::{MemberNumber, PartnerId, PartnerReference, Points, RequestId};

/// A member's requests in one credit, at most: far above what a window
/// holds for one person, and well inside a DynamoDB item.
pub const MAX_REQUESTS_PER_CREDIT: usize = 2_000;

/// Where a window credit is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CreditState {
    /// Being planned: `requests` are the ones planning means to move into
    /// it. A planner that resumes finishes the move from this list.
    Planning,
    /// Planned, with the requests that moved into it; no partner call yet.
    Planned,
    /// Planned with no request (every one was taken by another credit):
    /// nothing to send.
    Empty,
    /// At least one partner call made or about to be.
    Dispatching,
    /// The partner accepted it and settles it later.
    PartnerPending,
    /// A call whose outcome is not known: looked up, retried under the same reference.
    Unknown,
    Credited {
        transaction: String,
    },
    Failed {
        reason: Reason,
    },
}

impl CreditState {
    /// Where the credit stands at the partner (`None` while it is made,
    /// and when it carries nothing).
    pub fn delivery_state(&self) -> Option<DeliveryState> {
        Some(match self {
            CreditState::Planning | CreditState::Empty => return None,
            CreditState::Planned => DeliveryState::Ready,
            CreditState::Dispatching => DeliveryState::Sending,
            CreditState::Unknown => DeliveryState::Unknown,
            CreditState::PartnerPending => DeliveryState::PartnerPending,
            CreditState::Credited { .. } => DeliveryState::Credited,
            CreditState::Failed { .. } => DeliveryState::Failed,
        })
    }

    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            CreditState::Credited { .. } | CreditState::Failed { .. }
        )
    }
}

/// A partner credit planned from a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCredit {
    pub id: CreditId,
    pub window: WindowId,
    pub partner: PartnerId,
    pub partner_program: String,
    pub member: MemberNumber,
    /// The member's names (from its requests), for partners that validate
    /// before crediting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_name: Option<PersonName>,
    /// Fixed when the credit is made; every call and look-up uses it.
    pub reference: PartnerReference,
    /// The sum of the requests' points.
    pub points: Points,
    pub requests: Vec<RequestId>,
    #[serde(flatten)]
    pub state: CreditState,
    pub attempts: u32,
    /// When dispatch last started a partner call for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_at: Option<DateTime<Utc>>,
    /// The partner's id for the credit, once it gave one (pending or credited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_transaction: Option<String>,
    pub planned_at: DateTime<Utc>,
    /// When its outcome first stopped being known (`unknown` or
    /// `partner_pending`), until it settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsettled_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub version: u64,
}

/// The state a delivery's outcome leaves a credit in, or `None` when the
/// outcome changes nothing.
pub fn credit_state_after(outcome: &Outcome) -> Option<CreditState> {
    Some(match outcome {
        Outcome::Credited { transaction } => CreditState::Credited {
            transaction: transaction.clone(),
        },
        Outcome::Failed { reason } => CreditState::Failed {
            reason: reason.clone(),
        },
        Outcome::Pending { .. } => CreditState::PartnerPending,
        Outcome::Unknown { .. } => CreditState::Unknown,
        Outcome::StillPending { .. } | Outcome::NotAttempted { .. } => return None,
    })
}
