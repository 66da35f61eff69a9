//! A window's run: claimed once, planned a page at a time, counted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::credit::{CreditState, WindowCredit};
use super::id::{CreditId, WindowId};
use super::scheduled::ScheduledCursor;

/// Where a window's run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Its credits are being made from the scheduled requests.
    Planning,
    /// Every credit is made and queued; dispatch settles them.
    Planned,
}

/// What a run has planned and settled so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunCounts {
    /// Requests planned into credits.
    pub requests: u64,
    /// Partner credits planned.
    pub credits: u64,
    /// Distinct members (with consolidation, one credit each).
    pub members: u64,
    pub points: u64,
    /// Credits the partner confirmed, and the requests and points they cover.
    pub credited: u64,
    pub credited_requests: u64,
    pub credited_points: u64,
    /// Credits the partner refused for good, and the requests they cover.
    pub failed: u64,
    pub failed_requests: u64,
}

impl RunCounts {
    /// Credits neither confirmed nor refused yet.
    pub fn pending(&self) -> u64 {
        self.credits.saturating_sub(self.credited + self.failed)
    }
}

/// A window's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRun {
    pub window: WindowId,
    pub consolidate: bool,
    pub state: RunState,
    /// Planning resumes after this request; `None` before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<ScheduledCursor>,
    /// The credits of the page being planned, saved before any request
    /// moves into them: a planner that resumes finishes these first (their
    /// requests have left the scheduled index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_progress: Vec<CreditId>,
    pub counts: RunCounts,
    pub started_at: DateTime<Utc>,
    /// When planning last saved a page (or started).
    pub progress_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<DateTime<Utc>>,
    /// Planning invocations, including continuations and resumptions.
    pub planning_runs: u32,
    #[serde(skip)]
    pub version: u64,
}

impl WindowRun {
    pub fn new(window: WindowId, consolidate: bool, now: DateTime<Utc>) -> Self {
        Self {
            window,
            consolidate,
            state: RunState::Planning,
            cursor: None,
            in_progress: Vec::new(),
            counts: RunCounts::default(),
            started_at: now,
            progress_at: now,
            planned_at: None,
            planning_runs: 0,
            version: 0,
        }
    }
}

impl WindowRun {
    /// The run with what its settled credits add up to: its progress.
    pub fn with_settled(mut self, settled: &RunCounts) -> Self {
        self.counts.credited = settled.credited;
        self.counts.credited_requests = settled.credited_requests;
        self.counts.credited_points = settled.credited_points;
        self.counts.failed = settled.failed;
        self.counts.failed_requests = settled.failed_requests;
        self
    }
}

/// The outcome of making a credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCreated {
    New,
    /// A credit with this id was made before (a resumed page); as stored.
    Existing(Box<WindowCredit>),
}

/// The outcome of claiming a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This run was created now.
    Started(WindowRun),
    /// The window had a run already, as stored.
    Existing(WindowRun),
}

/// What a settled credit adds to its run's counters.
pub fn settled_counts(credit: &WindowCredit) -> RunCounts {
    let requests = credit.requests.len() as u64;
    match credit.state {
        CreditState::Credited { .. } => RunCounts {
            credited: 1,
            credited_requests: requests,
            credited_points: credit.points.get(),
            ..RunCounts::default()
        },
        CreditState::Failed { .. } => RunCounts {
            failed: 1,
            failed_requests: requests,
            ..RunCounts::default()
        },
        _ => RunCounts::default(),
    }
}

impl RunCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &RunCounts) {
        self.requests += other.requests;
        self.credits += other.credits;
        self.members += other.members;
        self.points += other.points;
        self.credited += other.credited;
        self.credited_requests += other.credited_requests;
        self.credited_points += other.credited_points;
        self.failed += other.failed;
        self.failed_requests += other.failed_requests;
    }
}
