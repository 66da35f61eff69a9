//! Work the pipeline itself must move on, found again if it stops:
//!
//! - credits sent to a partner whose outcome is not settled: requests and
//!   window credits in `unknown` (an answer lost) or `partner_pending` (the
//!   partner settles later), since they became so;
//! - requests in progress: `received`, `reserved` (real time) and
//!   `dispatching`, since the round began (their receipt, or an operator's
//!   retry). The key stays the same through the three states, so moving
//!   on writes no index entry.
//!
//! Dispatch looks each one up again on its queue; on a schedule it also
//! finds those that have waited too long (a message given up on, a queue
//! send that failed) and queues them again, so every one is looked up or
//! decided until it settles, and reports the oldest of each kind. States
//! that wait by design (`awaiting_approval`, `awaiting_enrollment`,
//! `held`, `scheduled`) are not here.

use chrono::{DateTime, Utc};

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
    request.credit.is_none()
        && matches!(
            request.state(),
            StatusKind::Received | StatusKind::Reserved | StatusKind::Dispatching
        )
}

/// Since when a request has been unsettled (`unknown` or `partner_pending`,
/// through any repeated look-ups), or in progress (since its round began),
/// or `None` when it is neither.
pub fn request_unsettled_since(request: &PointsRequest) -> Option<DateTime<Utc>> {
    if is_in_progress(request) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
