//! The embedded adapters of a local stack: every port in process, with
//! queues that behave like SQS (a dead-letter queue each) and schedules
//! fired in process.

use std::collections::HashMap;
use std::sync::Arc;

use pointsflow_assembly::{Adapters, AssemblyError};
use pointsflow_core::ports::{Clock, DeadLetters, IdSource, Queue, QueueName};
use pointsflow_memory::{
    MemoryAuditLog, MemoryBus, MemoryDeadLetters, MemoryEnrollments, MemoryLedger,
    MemoryLinkHistory, MemoryPartnerState, MemoryProgramStore, MemoryProposals, MemoryQueue,
    MemoryReportStore, MemoryRequestStore, MemorySchedules, MemoryStream, MemoryWindowStore,
    QueueConfig,
};

use crate::config::LocalConfig;

/// The callbacks queue's receive limit: a status is retried until it is
/// old enough to be given up on (then it goes to the dead-letter queue),
/// not a number of times.
pub const CALLBACK_MAX_RECEIVES: u32 = 1_000;

/// The callbacks queue keeps a message 4 days (the template's
/// `MessageRetentionPeriod`), a day longer than a callback is retried.
pub const CALLBACK_RETENTION: std::time::Duration = std::time::Duration::from_secs(96 * 3_600);

/// A queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub queue: Arc<MemoryQueue>,
    pub dead_letters: Arc<MemoryQueue>,
}

impl QueuePair {
    fn new(
        name: &str,
        config: &LocalConfig,
        max_receive_count: u32,
        retention: std::time::Duration,
    ) -> Self {
        let dead_letters = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: format!("{name}-dlq"),
                visibility_timeout: config.queues.visibility_timeout(),
                max_receive_count: 0,
                retention: pointsflow_memory::MAX_RETENTION,
            },
            None,
        ));
        let queue = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: name.to_owned(),
                visibility_timeout: config.queues.visibility_timeout(),
                max_receive_count,
                retention,
            },
            Some(dead_letters.clone()),
        ));
        Self {
            queue,
            dead_letters,
        }
    }

    /// The dead-letter queue, redriven into the queue.
    pub fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        Arc::new(MemoryDeadLetters {
            dead_letter: self.dead_letters.clone(),
            source: self.queue.clone(),
        })
    }
}

/// The embedded adapters of one stack, as the stack keeps them (its tests
/// and commands look into them); [`Embedded::adapters`] hands them to the
/// assembly.
pub struct Embedded {
    pub store: Arc<MemoryRequestStore>,
    pub ledger: Arc<MemoryLedger>,
    pub windows: Arc<MemoryWindowStore>,
    pub programs: Arc<MemoryProgramStore>,
    pub links: Arc<MemoryEnrollments>,
    pub link_history: Arc<MemoryLinkHistory>,
    pub proposals: Arc<MemoryProposals>,
    pub partner_state: Arc<MemoryPartnerState>,
    pub audit: Arc<MemoryAuditLog>,
    pub reports: Arc<MemoryReportStore>,
    pub schedules: Arc<MemorySchedules>,
    pub queues: HashMap<QueueName, QueuePair>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    /// The event bus (the events function's and `resend_events`'s).
    pub bus: Arc<MemoryBus>,
    /// The stores' record of their writes of requests, links and credits
    /// (the events function reads it).
    pub stream: Arc<MemoryStream>,
}

impl Embedded {
    pub fn new(config: &LocalConfig, clock: Arc<dyn Clock>, ids: Arc<dyn IdSource>) -> Self {
        let receives = config.queues.max_receive_count;
        let stream = Arc::new(MemoryStream::new());
        Self {
            store: Arc::new(MemoryRequestStore::with_stream(stream.clone())),
            ledger: Arc::new(MemoryLedger::new()),
            windows: Arc::new(MemoryWindowStore::with_stream(stream.clone())),
            programs: Arc::new(MemoryProgramStore::new()),
            links: Arc::new(MemoryEnrollments::default().with_stream(stream.clone())),
            link_history: Arc::new(MemoryLinkHistory::new()),
            proposals: Arc::new(MemoryProposals::new()),
            partner_state: Arc::new(MemoryPartnerState::new()),
            audit: Arc::new(MemoryAuditLog::new()),
            reports: Arc::new(MemoryReportStore::new()),
            schedules: Arc::new(MemorySchedules::new()),
            queues: HashMap::from([
                (
                    QueueName::Eligibility,
                    QueuePair::new(
                        "eligibility",
                        config,
                        receives,
                        pointsflow_memory::DEFAULT_RETENTION,
                    ),
                ),
                (
                    QueueName::Dispatch,
                    QueuePair::new(
                        "dispatch",
                        config,
                        receives,
                        pointsflow_memory::DEFAULT_RETENTION,
                    ),
                ),
                (
                    QueueName::Callbacks,
                    QueuePair::new(
                        "callbacks",
                        config,
                        CALLBACK_MAX_RECEIVES,
                        CALLBACK_RETENTION,
                    ),
                ),
            ]),
            clock,
            ids,
            bus: Arc::new(MemoryBus::keeping(crate::outbox::KEPT)),
            stream,
        }
    }

    /// A queue of this stack (every queue exists).
    pub fn pair(&self, queue: QueueName) -> Result<&QueuePair, AssemblyError> {
        self.queues
            .get(&queue)
            .ok_or_else(|| AssemblyError::NotProvided(format!("no {queue} queue")))
    }

    /// The adapters, for the assembly.
    pub fn adapters(&self) -> Adapters {
        Adapters {
            requests: self.store.clone(),
            ledger: self.ledger.clone(),
            windows: self.windows.clone(),
            program_store: self.programs.clone(),
            links: self.links.clone(),
            link_history: self.link_history.clone(),
            proposals: self.proposals.clone(),
            rate_limiter: self.partner_state.clone(),
            circuits: self.partner_state.clone(),
            audit: self.audit.clone(),
            reports: self.reports.clone(),
            queues: self
                .queues
                .iter()
                .map(|(name, pair)| (*name, pair.queue.clone() as Arc<dyn Queue>))
                .collect(),
            dead_letters: self
                .queues
                .iter()
                .map(|(name, pair)| (*name, pair.dead_letters()))
                .collect(),
            schedules: self.schedules.clone(),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            sandbox: None,
            connectors: None,
            event_bus: Some(self.bus.clone()),
        }
    }
}
