//! What a kind of stack provides: its adapters, one per port family. The
//! deployed functions provide AWS's (`pointsflow-lambda`), the local stack
//! the embedded ones or AWS's, the simulator its own behind a fault layer.
//! The assembly asks for what a handler uses and nothing more, so a
//! deployed function needs only the environment its handler's ports need.

use pointsflow_outbound::Reach;
use std::collections::HashMap;
use std::sync::Arc;

use pointsflow_core::ports::{
    AuditLog, CircuitStore, Clock, DeadLetters, Enrollments, EventBus, IdSource, Ledger,
    LinkHistory, PartnerConnector, ProgramStore, ProposalStore, Queue, QueueName, RateLimiter,
    ReportStore, RequestStore, WindowSchedules, WindowStore,
};
use pointsflow_core::values::PartnerId;

/// Why a handler could not be assembled: each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The stack has no such resource (a queue, a schedule target); the
    /// sentence says how to provide it.
    #[error("{0}")]
    NotProvided(String),
    #[error("partner {partner}: {problem}")]
    Partner { partner: PartnerId, problem: String },
    #[error("cannot read the applied programs: {0}")]
    Programs(pointsflow_core::ports::StoreError),
    #[error("the callbacks' HTTP client: {0}")]
    HttpClient(String),
    #[error("funding the budget of {program}: {source}")]
    Funding {
        program: String,
        source: pointsflow_core::ledger::LedgerError,
    },
}

/// Where a sandbox partner listens, for partners of kind `sandbox` (the
/// local stack's; a deployed stack has none).
#[derive(Debug, Clone)]
pub struct SandboxAccess {
    pub base_url: String,
    pub api_key: String,
}

/// The adapters of one stack.
pub trait Platform: Send + Sync {
    fn requests(&self) -> Arc<dyn RequestStore>;
    fn ledger(&self) -> Arc<dyn Ledger>;
    fn windows(&self) -> Arc<dyn WindowStore>;
    fn program_store(&self) -> Arc<dyn ProgramStore>;
    /// Member links stored since the configuration's (which the assembly
    /// layers under them).
    fn links(&self) -> Arc<dyn Enrollments>;
    /// Every change of a member link.
    fn link_history(&self) -> Arc<dyn LinkHistory>;
    /// The changes a second operator confirms.
    fn proposals(&self) -> Arc<dyn ProposalStore>;
    fn rate_limiter(&self) -> Arc<dyn RateLimiter>;
    fn circuits(&self) -> Arc<dyn CircuitStore>;
    fn audit(&self) -> Arc<dyn AuditLog>;
    fn reports(&self) -> Arc<dyn ReportStore>;
    fn queue(&self, queue: QueueName) -> Result<Arc<dyn Queue>, AssemblyError>;
    fn dead_letters(&self, queue: QueueName) -> Result<Arc<dyn DeadLetters>, AssemblyError>;
    fn schedules(&self) -> Result<Arc<dyn WindowSchedules>, AssemblyError>;
    fn clock(&self) -> Arc<dyn Clock>;
    fn ids(&self) -> Arc<dyn IdSource>;

    /// The stack's event bus (the events function's).
    fn event_bus(&self) -> Result<Arc<dyn EventBus>, AssemblyError> {
        Err(AssemblyError::NotProvided(
            "this stack has no event bus".into(),
        ))
    }

    /// The sandbox partner, when this stack runs one.
    fn sandbox(&self) -> Option<SandboxAccess> {
        None
    }

    /// Connectors that stand in for the configured partners' (the
    /// simulator's partner); the assembly governs them all the same.
    fn connectors(&self) -> Option<HashMap<PartnerId, Arc<dyn PartnerConnector>>> {
        None
    }

    /// The stack's name, for the metrics its functions report (deployed).
    fn metric_stack(&self) -> Option<String> {
        None
    }

    /// Where the stack runs, which decides what outbound URLs it may call
    /// (`pointsflow-outbound`): deployed unless a platform says otherwise.
    fn reach(&self) -> Reach {
        Reach::Deployed
    }
}

/// A platform of adapters built up front: what an in-process stack (the
/// embedded local stack, a test rig, the simulator) hands the assembly.
/// Every queue a handler may ask for is in `queues` (and its dead-letter
/// queue in `dead_letters`); a missing one is an error naming it.
pub struct Adapters {
    pub requests: Arc<dyn RequestStore>,
    pub ledger: Arc<dyn Ledger>,
    pub windows: Arc<dyn WindowStore>,
    pub program_store: Arc<dyn ProgramStore>,
    pub links: Arc<dyn Enrollments>,
    pub link_history: Arc<dyn LinkHistory>,
    pub proposals: Arc<dyn ProposalStore>,
    pub rate_limiter: Arc<dyn RateLimiter>,
    pub circuits: Arc<dyn CircuitStore>,
    pub audit: Arc<dyn AuditLog>,
    pub reports: Arc<dyn ReportStore>,
    pub queues: HashMap<QueueName, Arc<dyn Queue>>,
    pub dead_letters: HashMap<QueueName, Arc<dyn DeadLetters>>,
    pub schedules: Arc<dyn WindowSchedules>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub sandbox: Option<SandboxAccess>,
    pub connectors: Option<HashMap<PartnerId, Arc<dyn PartnerConnector>>>,
    /// The stack's event bus, if it has one.
    pub event_bus: Option<Arc<dyn EventBus>>,
}

impl Platform for Adapters {
    fn event_bus(&self) -> Result<Arc<dyn EventBus>, AssemblyError> {
        self.event_bus
            .clone()
            .ok_or_else(|| AssemblyError::NotProvided("this stack has no event bus".into()))
    }

    fn requests(&self) -> Arc<dyn RequestStore> {
        self.requests.clone()
    }

    fn ledger(&self) -> Arc<dyn Ledger> {
        self.ledger.clone()
    }

    fn windows(&self) -> Arc<dyn WindowStore> {
        self.windows.clone()
    }

    fn program_store(&self) -> Arc<dyn ProgramStore> {
        self.program_store.clone()
    }

    fn links(&self) -> Arc<dyn Enrollments> {
        self.links.clone()
    }

    fn link_history(&self) -> Arc<dyn LinkHistory> {
        self.link_history.clone()
    }

    fn proposals(&self) -> Arc<dyn ProposalStore> {
        self.proposals.clone()
    }

    fn rate_limiter(&self) -> Arc<dyn RateLimiter> {
        self.rate_limiter.clone()
    }

    fn circuits(&self) -> Arc<dyn CircuitStore> {
        self.circuits.clone()
    }

    fn audit(&self) -> Arc<dyn AuditLog> {
        self.audit.clone()
    }

    fn reports(&self) -> Arc<dyn ReportStore> {
        self.reports.clone()
    }

    fn queue(&self, queue: QueueName) -> Result<Arc<dyn Queue>, AssemblyError> {
        self.queues
            .get(&queue)
            .cloned()
            .ok_or_else(|| AssemblyError::NotProvided(format!("this stack has no {queue} queue")))
    }

    fn dead_letters(&self, queue: QueueName) -> Result<Arc<dyn DeadLetters>, AssemblyError> {
        self.dead_letters.get(&queue).cloned().ok_or_else(|| {
            AssemblyError::NotProvided(format!("this stack has no {queue} dead-letter queue"))
        })
    }

    fn schedules(&self) -> Result<Arc<dyn WindowSchedules>, AssemblyError> {
        Ok(self.schedules.clone())
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn ids(&self) -> Arc<dyn IdSource> {
        self.ids.clone()
    }

    fn sandbox(&self) -> Option<SandboxAccess> {
        self.sandbox.clone()
    }

    fn connectors(&self) -> Option<HashMap<PartnerId, Arc<dyn PartnerConnector>>> {
        self.connectors.clone()
    }

    /// Adapters built up front run on one machine.
    fn reach(&self) -> Reach {
        Reach::Local
    }
}
