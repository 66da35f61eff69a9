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

mod credit;
mod id;
mod run;
mod scheduled;
mod work;

pub use credit::{CreditState, MAX_REQUESTS_PER_CREDIT, WindowCredit, credit_state_after};
pub use id::{CreditId, WindowId};
pub use run::{Claim, CreditCreated, RunCounts, RunState, WindowRun, settled_counts};
pub use scheduled::{ScheduledCursor, ScheduledEntry, ScheduledPage, scheduled_entry};
pub use work::WindowWork;
