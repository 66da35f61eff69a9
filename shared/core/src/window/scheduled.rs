//! The scheduled index: a program's requests held for a window, in member order.

use serde::{Deserialize, Serialize};

use super::id::WindowId;
use crate::request::{PointsRequest, Status};
use crate::values::{MemberNumber, PartnerId, Points, RequestId};

/// A scheduled request as the window planner sees it (the index entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledEntry {
    pub id: RequestId,
    pub member: MemberNumber,
    pub partner: PartnerId,
    pub partner_program: String,
    pub points: Points,
    pub window: WindowId,
}

impl ScheduledEntry {
    pub fn cursor(&self) -> ScheduledCursor {
        ScheduledCursor {
            member: self.member.clone(),
            request: self.id.clone(),
        }
    }
}

/// A request's entry in the scheduled index, when it is `scheduled` with
/// everything a credit needs (points, member, destination: all fixed at
/// reservation).
pub fn scheduled_entry(request: &PointsRequest) -> Option<ScheduledEntry> {
    let Status::Scheduled { window } = &request.status else {
        return None;
    };
    let destination = request.destination.as_ref()?;
    Some(ScheduledEntry {
        id: request.id.clone(),
        member: request.member.clone()?,
        partner: destination.partner.clone(),
        partner_program: destination.partner_program.clone(),
        points: request.points?,
        window: WindowId::parse(window).ok()?,
    })
}

/// A position in a program's scheduled requests, which are ordered by member
/// and then request id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScheduledCursor {
    pub member: MemberNumber,
    pub request: RequestId,
}

/// One page of scheduled requests; `more` when the next page may hold more.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScheduledPage {
    pub entries: Vec<ScheduledEntry>,
    pub more: bool,
}
