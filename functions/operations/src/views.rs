//! How the operator commands show programs, windows and links.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pointsflow_core::access::Principal;
use pointsflow_core::enrollment::{LinkChange, MemberLink, MemberValidation};
use pointsflow_core::ports::StoredProgram;
use pointsflow_core::program::Program;
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};
use pointsflow_core::window::{RunState, WindowRun};
use serde::Serialize;

/// A program as operators read it: revision 0 is the configuration's own.
#[derive(Debug, Serialize)]
pub struct ProgramView<'a> {
    pub program: &'a Program,
    pub revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<&'a Principal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<&'a Principal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
}

impl<'a> ProgramView<'a> {
    pub fn configured(program: &'a Program) -> Self {
        Self {
            program,
            revision: 0,
            applied_by: None,
            confirmed_by: None,
            applied_at: None,
        }
    }

    pub fn applied(stored: &'a StoredProgram) -> Self {
        Self {
            program: &stored.program,
            revision: stored.revision,
            applied_by: Some(&stored.applied_by),
            confirmed_by: stored.confirmed_by.as_ref(),
            applied_at: Some(stored.applied_at),
        }
    }
}

/// Every program: the configuration's, overlaid by the applied ones.
pub fn in_force<'a>(
    configured: &'a [Program],
    applied: &'a [StoredProgram],
) -> BTreeMap<&'a ProgramId, ProgramView<'a>> {
    let mut all: BTreeMap<&ProgramId, ProgramView> = configured
        .iter()
        .map(|p| (&p.id, ProgramView::configured(p)))
        .collect();
    for stored in applied {
        all.insert(&stored.program.id, ProgramView::applied(stored));
    }
    all
}

/// A member link as operators read it.
#[derive(Debug, Serialize)]
pub struct LinkView<'a> {
    pub program: &'a ProgramId,
    pub recipient: &'a RecipientId,
    pub member_number: &'a MemberNumber,
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// The partner's answer, once asked (before the first reservation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<&'a MemberValidation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_at: Option<DateTime<Utc>>,
    /// The member number it replaced, when it was changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<&'a LinkChange>,
}

impl<'a> LinkView<'a> {
    pub fn of(link: &'a MemberLink) -> Self {
        Self {
            program: &link.program,
            recipient: &link.recipient,
            member_number: &link.member,
            first_name: &link.first_name,
            last_name: &link.last_name,
            validation: link.validation.as_ref(),
            linked_by: link.linked_by.as_deref(),
            linked_at: link.linked_at,
            changed: link.changed.as_ref(),
        }
    }
}

/// A scheduled window's run and progress.
#[derive(Debug, Serialize)]
pub struct WindowView {
    pub window: String,
    pub program: String,
    pub closes_at: DateTime<Utc>,
    pub state: RunState,
    pub consolidate: bool,
    pub requests: u64,
    pub members: u64,
    pub credits: u64,
    pub points: u64,
    pub credited: u64,
    pub credited_requests: u64,
    pub credited_points: u64,
    pub failed: u64,
    pub failed_requests: u64,
    /// Credits neither confirmed nor refused yet.
    pub pending: u64,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<DateTime<Utc>>,
    pub planning_runs: u32,
}

impl WindowView {
    pub fn of(run: &WindowRun) -> Self {
        let c = &run.counts;
        Self {
            window: run.window.to_string(),
            program: run.window.program().to_string(),
            closes_at: run.window.closes_at(),
            state: run.state,
            consolidate: run.consolidate,
            requests: c.requests,
            members: c.members,
            credits: c.credits,
            points: c.points,
            credited: c.credited,
            credited_requests: c.credited_requests,
            credited_points: c.credited_points,
            failed: c.failed,
            failed_requests: c.failed_requests,
            pending: c.pending(),
            started_at: run.started_at,
            planned_at: run.planned_at,
            planning_runs: run.planning_runs,
        }
    }
}
