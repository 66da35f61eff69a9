//! Ports: the small role traits handlers depend on, one file per family.
//! Each has an embedded adapter (`pointsflow-memory`) and an AWS adapter
//! (`pointsflow-aws`) with the same semantics, held to one conformance
//! suite (`pointsflow-conformance`). A handler takes only the roles it
//! uses; the aggregates ([`RequestStore`], [`Ledger`], [`Queue`]) are what
//! an adapter implements and a stack hands out role by role.

mod audit;
mod enrollment;
mod error;
mod events;
mod governance;
mod ledger;
mod partners;
mod programs;
mod proposals;
mod queues;
mod reconcile;
mod requests;
mod time;
mod unsettled;
mod windows;

pub use audit::AuditLog;
pub use enrollment::{Enrollments, LinkHistory};
pub use error::{QueueError, StoreError};
pub use events::{BusError, EventBus};
pub use governance::{CircuitStore, RateLimiter};
pub use ledger::{Ledger, LedgerRead, LedgerWrite};
pub use partners::{PartnerConnector, StatementError};
pub use programs::{ProgramCatalog, ProgramStore, StoredProgram};
pub use proposals::ProposalStore;
pub use queues::{
    DeadLetters, PipelineMessage, Publish, PublishCallback, PublishError, PublishWork, Queue,
    QueueName, Redelivery, RedriveReport,
};
pub use reconcile::{ReportStore, RequestLines};
pub use requests::{
    Created, RequestCreate, RequestGet, RequestSearch, RequestStore, RequestUpdate, WaitingRequests,
};
pub use time::{Clock, IdSource};
pub use unsettled::{SweepMarks, UnsettledIndex};
pub use windows::{ScheduledRequests, WindowSchedules, WindowStore};
