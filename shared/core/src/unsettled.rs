//! Work the pipeline itself must move on, found again if it stops:
//!
//! - credits sent to a partner whose outcome is not settled: requests and
//!   window credits in `unknown` (an answer lost) or `partner_pending` (the
//!   partner settles later), since they became so;
//! - requests in progress (`received`, `reserved` for a real-time program,
//!   `dispatching`) that are not moving straight on from their receipt: a
//!   round an operator began, a request that waited (for approval,
//!   enrollment, a resumed program) before it went on, or one the resolver
//!   found stalled; each since its round began. The key stays the same
//!   through the three states, so moving on writes no index entry.
//!
//! A request moving straight on from its receipt, which is nearly every
//! request, is not indexed while in progress (which would cost it an
//! index entry written and removed): the store keeps every request under
//! the hour of its [`crate::reconcile::period_time`], and the resolver reads
//! each hour's requests once, `stalled_after` after the hour is over, and
//! marks any still in progress [`PointsRequest::stalled`], which puts it
//! here ([`left_to_the_sweep`]). Its period time only moves later (when it
//! is sent), and the hours are read in order, so every request is looked at
//! in the hour it is in at the time.
//!
//! Dispatch looks each one up again on its queue; on a schedule it also
//! finds those that have waited too long (a message given up on, a queue
//! send that failed) and queues them again, so every one is looked up or
//! decided until it settles, and reports the oldest of each kind. States
//! that wait by design (`awaiting_approval`, `awaiting_enrollment`,
//! `held`, `scheduled`) are not here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::request::{PointsRequest, StatusKind};
use crate::values::RequestId;
use crate::window::{CreditId, CreditState, WindowCredit};

/// What is unsettled.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnsettledItem {
    Request(RequestId),
    Credit(CreditId),
}

/// An unsettled credit and since when.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unsettled {
    pub since: DateTime<Utc>,
    pub item: UnsettledItem,
}

/// The index is spread over this many partitions (keyed by a hash of the
/// id), so many unsettled credits at once never crowd one partition.
pub const SHARDS: u32 = 8;

/// The shard of an item id (stable across builds).
pub fn shard(id: &str) -> u32 {
    u32::from(crate::ledger::shards::bucket(id, SHARDS as u16))
}

/// An unknown or pending outcome at the partner. A window credit is
/// indexed from the start (below): its planner may stop between making it
/// and queueing it.
fn is_unsettled(state: StatusKind) -> bool {
    matches!(state, StatusKind::Unknown | StatusKind::PartnerPending)
}

/// A state the pipeline moves a request on from by itself. A request in a
/// window's credit is the credit's to move.
pub fn is_in_progress(request: &PointsRequest) -> bool {
    request.credit.is_none() && request.state().is_moving_on()
}

/// Whether a request in progress is left to the resolver's reading of its
/// hour rather than indexed: in its first round, moving straight on from
/// its receipt (every state so far `received`, `reserved` or
/// `dispatching`), and not found stalled.
pub fn left_to_the_sweep(request: &PointsRequest) -> bool {
    request.round == 0
        && !request.stalled
        && request.timeline.iter().all(|e| e.state.is_moving_on())
}

/// Since when a request has been unsettled (`unknown` or `partner_pending`,
/// through any repeated look-ups), or in progress (since its round began)
/// and not [`left_to_the_sweep`], or `None` when it is neither.
pub fn request_unsettled_since(request: &PointsRequest) -> Option<DateTime<Utc>> {
    if is_in_progress(request) {
        if left_to_the_sweep(request) {
            return None;
        }
        return request
            .timeline
            .iter()
            .rev()
            .find(|e| e.state == StatusKind::Received)
            .map_or(Some(request.received_at), |e| Some(e.at));
    }
    if !is_unsettled(request.state()) {
        return None;
    }
    request
        .timeline
        .iter()
        .rev()
        .take_while(|e| is_unsettled(e.state))
        .last()
        .map(|e| e.at)
}

/// Since when a window credit has been unsettled, or `None`.
pub fn credit_unsettled_since(credit: &WindowCredit) -> Option<DateTime<Utc>> {
    match credit.state {
        // Being made, planned or being sent: found again if its planner
        // stopped or its message was lost.
        CreditState::Planning
        | CreditState::Planned
        | CreditState::Dispatching
        | CreditState::Unknown
        | CreditState::PartnerPending => Some(credit.unsettled_since.unwrap_or(credit.planned_at)),
        _ => None,
    }
}

/// How far the resolver has read the requests, hour by hour: the range it
/// is reading (`[from, to)`, whole hours) and where in it, kept between
/// runs. `from == to` with no cursor: read up to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepMark {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The store's cursor within the range (as [`crate::reconcile::LinePage`] gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_in_progress_that_did_not_move_straight_on_is_indexed() {
        use crate::reason::{Reason, ReasonCode};
        use crate::request::Status;
        let t = |s: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::seconds(s);
        let mut plain = crate::request::tests::sample();
        plain
            .transition(Status::Reserved, t(1), "reserved")
            .unwrap();
        plain.transition(Status::Dispatching, t(2), "sent").unwrap();
        assert!(left_to_the_sweep(&plain));
        assert_eq!(request_unsettled_since(&plain), None, "left to the sweep");

        let mut found = plain.clone();
        found.stalled = true;
        assert_eq!(request_unsettled_since(&found), Some(found.received_at));

        let mut waited = crate::request::tests::sample();
        waited
            .transition(
                Status::AwaitingApproval {
                    reason: Reason::new(ReasonCode::ClawbackReview, "check"),
                },
                t(1),
                "waits",
            )
            .unwrap();
        waited
            .transition(Status::Reserved, t(5), "approved")
            .unwrap();
        assert!(!left_to_the_sweep(&waited));
        assert!(
            request_unsettled_since(&waited).is_some(),
            "it waited first"
        );

        let mut retried = plain.clone();
        retried.round = 1;
        assert!(
            request_unsettled_since(&retried).is_some(),
            "an operator's round"
        );

        let mut settled = found;
        settled
            .transition(Status::Credited, t(3), "credited")
            .unwrap();
        assert_eq!(request_unsettled_since(&settled), None, "settled");
    }

    #[test]
    fn shards_spread_ids() {
        let mut seen = [0u32; SHARDS as usize];
        for i in 0..800 {
            seen[shard(&format!("pr_{i:032x}")) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(shard("x"), shard("x"));
    }
}
