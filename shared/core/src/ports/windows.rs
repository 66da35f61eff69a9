//! Scheduled windows: the requests they hold, their runs and credits, and
//! their schedules.

use async_trait::async_trait;

use super::error::StoreError;
use super::unsettled::UnsettledIndex;
use crate::values::ProgramId;
use crate::window::{
    Claim, CreditCreated, CreditId, RunCounts, ScheduledCursor, ScheduledPage, WindowCredit,
    WindowId, WindowRun,
};

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

/// Window runs and their credits (and the credits not settled at the
/// partner, as an [`UnsettledIndex`]).
#[async_trait]
pub trait WindowStore: UnsettledIndex + Send + Sync {
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
