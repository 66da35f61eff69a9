//! Embedded adapters for every pointsflow port, with the semantics of their
//! AWS counterparts: conditional writes that fail on conflict, all-or-nothing
//! ledger transactions, and queues with SQS behaviour (batches of up to 10,
//! visibility timeout, receive count, dead-letter queue) driven by an
//! event-source mapping that invokes handlers the way Lambda does.

mod config;
mod governance;
mod ledger;
mod mapping;
mod operations;
mod queue;
mod replay;
mod schedules;
mod store;
mod windows;

pub use config::{LayeredEnrollments, MemoryEnrollments, MemoryProgramStore, StaticCatalog};
pub use governance::MemoryPartnerState;
pub use ledger::{LedgerSnapshot, MemoryLedger};
pub use mapping::{EventSourceMapping, MappingConfig};
pub use operations::{MemoryAuditLog, MemoryDeadLetters, MemoryReportStore};
pub use queue::{MemoryQueue, QueueConfig, QueueError, ReceivedMessage};
pub use replay::{ManualClock, SeededIds};
pub use schedules::MemorySchedules;
pub use store::MemoryRequestStore;
pub use windows::MemoryWindowStore;
