//! Embedded adapters for every pointsflow port, with the semantics of their
//! AWS counterparts: conditional writes that fail on conflict, all-or-nothing
//! ledger transactions, and queues with SQS behaviour (batches of up to 10,
//! visibility timeout, receive count, dead-letter queue). They depend on
//! the domain alone; what drives a queue's handler the way Lambda does is
//! the harness's (`pointsflow-harness`).

mod bus;
mod config;
mod governance;
mod ledger;
mod operations;
mod queue;
mod replay;
mod schedules;
mod store;
mod stream;
mod windows;

pub use bus::MemoryBus;
pub use config::{MemoryEnrollments, MemoryLinkHistory, MemoryProgramStore, StaticCatalog};
pub use governance::MemoryPartnerState;
pub use ledger::{LedgerSnapshot, MemoryLedger};
pub use operations::{MemoryAuditLog, MemoryDeadLetters, MemoryProposals, MemoryReportStore};
pub use queue::{
    DEFAULT_RETENTION, MAX_RETENTION, MemoryQueue, MemoryQueueError, QueueConfig, ReceivedMessage,
};
pub use replay::{ManualClock, SeededIds};
pub use schedules::MemorySchedules;
pub use store::MemoryRequestStore;
pub use stream::MemoryStream;
pub use windows::MemoryWindowStore;
