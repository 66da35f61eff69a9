//! Scheduled transfer windows: a run per window, planned once into partner
//! credits (one per member with consolidation, one per request without),
//! which dispatch sends and settles.
//!
//! A window is named by its program and closing time (`payroll@2026-11-27T18:00Z`).
//! Its run is created with a conditional write, so however often the
//! schedule fires for it, it is planned once. Planning walks the program's
//! scheduled requests in member order, a page at a time, and saves its
//! cursor with its counters in one conditional write after each page: a run
//! that stops part way is resumed from the last saved page, and two planners
//! racing cannot both save the same page. A credit's id is derived from the
//! window and the member, and it is created conditionally, so a resumed page
//! finds the credits it made before instead of making them again.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::partner::CreditOutcome;
use crate::ports::StoreError;
use crate::request::Reason;
use crate::values::{MemberNumber, PartnerId, PartnerReference, Points, ProgramId, RequestId};

const WINDOW_TIME: &str = "%Y-%m-%dT%H:%MZ";

/// A window: `{program}@{closing time in UTC, to the minute}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WindowId {
    program: ProgramId,
    closes_at: DateTime<Utc>,
}

impl WindowId {
    /// The window of `program` closing at `at` (seconds are dropped).
    pub fn new(program: &ProgramId, at: DateTime<Utc>) -> Self {
        let minute = at.format(WINDOW_TIME).to_string();
        Self {
            program: program.clone(),
            closes_at: NaiveDateTime::parse_from_str(&minute, WINDOW_TIME)
                .map(|t| t.and_utc())
                .unwrap_or(at),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let (program, time) = raw
            .split_once('@')
            .ok_or_else(|| format!("window '{raw}' is not program@YYYY-MM-DDTHH:MMZ"))?;
        let program = ProgramId::parse(program).map_err(|e| format!("window '{raw}': {e}"))?;
        let closes_at = NaiveDateTime::parse_from_str(time, WINDOW_TIME)
            .map_err(|_| format!("window '{raw}': the time must be YYYY-MM-DDTHH:MMZ"))?
            .and_utc();
        Ok(Self { program, closes_at })
    }

    pub fn program(&self) -> &ProgramId {
        &self.program
    }

    pub fn closes_at(&self) -> DateTime<Utc> {
        self.closes_at
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.program, self.closes_at.format(WINDOW_TIME))
    }
}

impl TryFrom<String> for WindowId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<WindowId> for String {
    fn from(w: WindowId) -> String {
        w.to_string()
    }
}

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
pub fn scheduled_entry(request: &crate::request::PointsRequest) -> Option<ScheduledEntry> {
    let crate::request::Status::Scheduled { window } = &request.status else {
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

/// The requests held `scheduled`, per program, in member order.
#[async_trait]
pub trait ScheduledRequests: Send + Sync {
    /// At most `limit` of the program's scheduled requests after `after`.
    async fn scheduled(
        &self,
        program: &ProgramId,
        after: Option<&ScheduledCursor>,
        limit: usize,
    ) -> Result<ScheduledPage, StoreError>;
}

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

/// One partner credit of a window: all of a member's requests in the window
/// (with consolidation) or one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditId(String);

impl CreditId {
    /// The credit of `member`'s requests at `partner` in `window`; `part`
    /// counts from 1 and only a member with more than
    /// [`MAX_REQUESTS_PER_CREDIT`] requests in a window has a second.
    pub fn consolidated(
        window: &WindowId,
        partner: &PartnerId,
        member: &MemberNumber,
        part: u32,
    ) -> Self {
        match part {
            0 | 1 => Self(format!("{window}/{partner}/{member}")),
            n => Self(format!("{window}/{partner}/{member}/{n}")),
        }
    }

    /// The credit of one request in `window`.
    pub fn single(window: &WindowId, request: &RequestId) -> Self {
        Self(format!("{window}/{request}"))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let (window, rest) = raw
            .split_once('/')
            .ok_or_else(|| format!("credit '{raw}' is not window/..."))?;
        WindowId::parse(window)?;
        if rest.is_empty() || rest.len() > 200 || rest.chars().any(|c| c.is_control()) {
            return Err(format!("credit '{raw}' is malformed"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn window(&self) -> Option<WindowId> {
        self.0
            .split_once('/')
            .and_then(|(w, _)| WindowId::parse(w).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CreditId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<CreditId> for String {
    fn from(c: CreditId) -> String {
        c.0
    }
}

impl fmt::Display for CreditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
    pub member_name: Option<crate::request::PersonName>,
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

/// Window runs and their credits (and the credits not settled at the
/// partner, as an [`crate::unsettled::UnsettledIndex`]).
#[async_trait]
pub trait WindowStore: crate::unsettled::UnsettledIndex + Send + Sync {
    /// Creates `run` unless the window has one.
    async fn claim(&self, run: &WindowRun) -> Result<Claim, StoreError>;

    async fn run(&self, window: &WindowId) -> Result<Option<WindowRun>, StoreError>;

    /// Saves `run` if the stored version is still `run.version`; returns the new version.
    async fn save_run(&self, run: &WindowRun) -> Result<u64, StoreError>;

    /// Creates `credit` unless a credit with its id exists.
    async fn create_credit(&self, credit: &WindowCredit) -> Result<CreditCreated, StoreError>;

    async fn credit(&self, id: &CreditId) -> Result<Option<WindowCredit>, StoreError>;

    /// Saves `credit` if the stored version is still `credit.version`;
    /// returns the new version.
    async fn save_credit(&self, credit: &WindowCredit) -> Result<u64, StoreError>;

    /// What the window's settled credits add up to (the `credited*` and
    /// `failed*` counts; the others are zero). Counted from the credits
    /// themselves, so no single counter is written by every settlement.
    async fn settled(&self, window: &WindowId) -> Result<RunCounts, StoreError>;
}

/// When windows close: each window of a scheduled program has a one-time
/// schedule that invokes dispatch with the window's closing time. The
/// closing time comes from the program's own cron and time zone, so the
/// schedule fires at 18:00 London whatever the daylight-saving offset.
#[async_trait]
pub trait WindowSchedules: Send + Sync {
    /// Makes sure `window` has its schedule. Arming a window again is harmless.
    async fn arm(&self, window: &WindowId) -> Result<(), StoreError>;
}

/// Work on a window, sent through the dispatch queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowWork {
    /// Plan (or go on planning) the window.
    Plan { window: WindowId },
    /// Send (or settle) one credit.
    Credit { credit: CreditId },
}

/// Sends window work to the dispatch queue.
#[async_trait]
pub trait PublishWork: Send + Sync {
    /// Sends every message or fails (a retry sends them again; work is idempotent).
    async fn publish_work(&self, work: &[WindowWork]) -> Result<(), StoreError>;
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

/// The state a partner outcome leaves an unsettled credit in, or `None` when
/// the outcome changes nothing (a look-up that still does not know).
pub fn credit_state_after(outcome: &CreditOutcome) -> Option<CreditState> {
    match outcome {
        CreditOutcome::Credited { transaction } => Some(CreditState::Credited {
            transaction: transaction.clone(),
        }),
        CreditOutcome::Rejected(reason) => Some(CreditState::Failed {
            reason: reason.clone(),
        }),
        CreditOutcome::Pending { .. } => Some(CreditState::PartnerPending),
        CreditOutcome::Unknown { .. }
        | CreditOutcome::NotFound
        | CreditOutcome::NotAttempted { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_ids_round_trip_and_order_by_time() {
        let program = ProgramId::parse("payroll").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-27T18:00:42Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = WindowId::new(&program, at);
        assert_eq!(w.to_string(), "payroll@2026-11-27T18:00Z");
        assert_eq!(WindowId::parse(&w.to_string()).unwrap(), w);
        let later = WindowId::parse("payroll@2026-11-30T17:00Z").unwrap();
        assert!(w < later);
        assert!(WindowId::parse("payroll@2026-11-27 18:00").is_err());
        assert!(WindowId::parse("Payroll@2026-11-27T18:00Z").is_err());
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, "\"payroll@2026-11-27T18:00Z\"");
    }

    #[test]
    fn credit_ids_name_their_window() {
        let w = WindowId::parse("payroll@2026-11-27T18:00Z").unwrap();
        let partner = PartnerId::parse("skyways").unwrap();
        let member = MemberNumber::parse("sky1000001").unwrap();
        let id = CreditId::consolidated(&w, &partner, &member, 1);
        assert_eq!(id.as_str(), "payroll@2026-11-27T18:00Z/skyways/SKY1000001");
        assert_eq!(id.window(), Some(w.clone()));
        assert_eq!(CreditId::parse(id.as_str()).unwrap(), id);
        assert!(
            CreditId::consolidated(&w, &partner, &member, 2)
                .as_str()
                .ends_with("/2")
        );
        assert!(CreditId::parse("nowindow").is_err());
    }
}
