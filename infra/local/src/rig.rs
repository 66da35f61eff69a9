//! One scheduled program's window on the embedded adapters, without the
//! HTTP API: scheduled requests seeded straight into the request store with
//! their reservations in the ledger, and the dispatch function over an
//! embedded queue and a partner connector. The window benchmark and the
//! window crash tests run on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_assembly::{Adapters, Assembly, AssemblyError};
use pointsflow_config::{Config, PartnerEntry, PartnerKind, PartnerProtocol};
use pointsflow_core::ledger::{AccountId, Entry};
use pointsflow_core::ports::{
    Clock, DeadLetters, LedgerWrite, PartnerConnector, Queue, QueueName, RequestCreate, WindowStore,
};
use pointsflow_core::program::Program;
use pointsflow_core::request::{NewRequest, Recipient, SourceEvent, Status};
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_core::values::{
    EventType, IdempotencyKey, MemberNumber, Points, RecipientId, SourceId,
};
use pointsflow_core::window::{WindowId, WindowRun};
use pointsflow_dispatch::Dispatch;
use pointsflow_dispatch::window::WindowClosed;
use pointsflow_harness::mapping::{EventSourceMapping, MappingConfig, spawn_embedded};
use pointsflow_memory::{
    MemoryAuditLog, MemoryDeadLetters, MemoryEnrollments, MemoryLedger, MemoryLinkHistory,
    MemoryPartnerState, MemoryProgramStore, MemoryProposals, MemoryQueue, MemoryReportStore,
    MemoryRequestStore, MemorySchedules, QueueConfig,
};
use pointsflow_operations::Operations;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The member number of the `i`th seeded member.
pub fn member_number(i: usize) -> String {
    format!("SKY4{i:06}")
}

/// The points of member `i`'s `k`th request: 100 to 590.
pub fn points_of(i: usize, k: usize) -> u64 {
    100 + ((i * 7 + k * 13) % 50) as u64 * 10
}

pub struct WindowRig {
    pub store: Arc<MemoryRequestStore>,
    pub ledger: Arc<MemoryLedger>,
    pub windows: Arc<dyn WindowStore>,
    pub queue: Arc<MemoryQueue>,
    pub dead_letters: Arc<MemoryQueue>,
    pub dispatch: Dispatch,
    pub program: Program,
    /// The window every seeded request is held for.
    pub window: WindowId,
    assembly: Assembly<Adapters>,
}

/// A configuration with `program` alone, crediting a partner whose circuit
/// never opens (the rig's tests make the partner fail on purpose).
fn rig_config(program: &Program) -> Config {
    Config {
        program_refresh_ms: 30_000,
        waiting_sweep_ms: 60_000,
        resolve_after_ms: 300_000,
        stalled_after_ms: 900_000,
        resolve_every_ms: 60_000,
        queues: Default::default(),
        callbacks: Default::default(),
        sandbox: Default::default(),
        sources: Vec::new(),
        partners: vec![PartnerEntry {
            id: program.destination.partner.clone(),
            kind: PartnerKind::Rest,
            protocol: PartnerProtocol::default(),
            base_url: None,
            api_key: None,
            timeout_ms: 60_000,
            rate_limit_per_second: None,
            circuit_failures: u32::MAX,
            circuit_open_ms: 1_000,
            circuit_open_max_ms: 1_000,
            commit_within_ms: 0,
        }],
        programs: vec![program.clone()],
        members: Vec::new(),
        operators: Vec::new(),
    }
}

impl WindowRig {
    /// A rig for `program` (scheduled, crediting `partner`'s connector).
    pub async fn new(
        program: Program,
        windows: Arc<dyn WindowStore>,
        partner: Arc<dyn PartnerConnector>,
        window: WindowId,
    ) -> Result<Self, AssemblyError> {
        let dead_letters = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: "dispatch-dlq".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 0,
                retention: pointsflow_memory::MAX_RETENTION,
            },
            None,
        ));
        let queue = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: "dispatch".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 100,
                retention: pointsflow_memory::DEFAULT_RETENTION,
            },
            Some(dead_letters.clone()),
        ));
        let store = Arc::new(MemoryRequestStore::new());
        let ledger = Arc::new(MemoryLedger::new());
        // One queue, the dispatch queue, for every queue a handler asks for.
        let dlq: Arc<dyn DeadLetters> = Arc::new(MemoryDeadLetters {
            dead_letter: dead_letters.clone(),
            source: queue.clone(),
        });
        let state = Arc::new(MemoryPartnerState::new());
        let adapters = Adapters {
            requests: store.clone(),
            ledger: ledger.clone(),
            windows: windows.clone(),
            program_store: Arc::new(MemoryProgramStore::new()),
            links: Arc::new(MemoryEnrollments::default()),
            link_history: Arc::new(MemoryLinkHistory::new()),
            proposals: Arc::new(MemoryProposals::new()),
            rate_limiter: state.clone(),
            circuits: state,
            audit: Arc::new(MemoryAuditLog::new()),
            reports: Arc::new(MemoryReportStore::new()),
            queues: QueueName::ALL
                .into_iter()
                .map(|q| (q, queue.clone() as Arc<dyn Queue>))
                .collect(),
            dead_letters: QueueName::ALL
                .into_iter()
                .map(|q| (q, dlq.clone()))
                .collect(),
            schedules: Arc::new(MemorySchedules::new()),
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
            sandbox: None,
            connectors: Some(HashMap::from([(
                program.destination.partner.clone(),
                partner,
            )])),
            event_bus: None,
        };
        let assembly = Assembly::new(rig_config(&program), adapters);
        let dispatch = assembly.dispatch().await?;
        Ok(Self {
            store,
            ledger,
            windows,
            queue,
            dead_letters,
            dispatch,
            program,
            window,
            assembly,
        })
    }

    /// The operations function over the rig's store, ledger and partner.
    pub async fn operations(&self) -> Result<Operations, AssemblyError> {
        self.assembly.operations().await
    }

    /// Seeds `per_member` scheduled requests for each of `members` members,
    /// reserved in the ledger ([`points_of`] each); returns the points each
    /// member is owed.
    pub async fn seed(
        &self,
        members: usize,
        per_member: usize,
    ) -> Result<BTreeMap<String, u64>, String> {
        let now = SystemClock.now();
        let source = SourceId::parse("seed").map_err(|e| e.to_string())?;
        let budget = AccountId::budget(&self.program.id);
        let total: u64 = (0..members)
            .flat_map(|i| (0..per_member).map(move |k| points_of(i, k)))
            .sum();
        self.ledger
            .apply(&[Entry::fund(
                &self.program.id,
                "seed",
                Points::new(total).map_err(|e| e.to_string())?,
                now,
            )])
            .await
            .map_err(|e| e.to_string())?;
        let mut owed = BTreeMap::new();
        for i in 0..members {
            let member = MemberNumber::parse(&member_number(i)).map_err(|e| e.to_string())?;
            let recipient = RecipientId::parse(&format!("R{i:07}")).map_err(|e| e.to_string())?;
            for k in 0..per_member {
                let points = Points::new(points_of(i, k)).map_err(|e| e.to_string())?;
                let mut request = NewRequest {
                    source: source.clone(),
                    idempotency_key: IdempotencyKey::parse(&format!("{i}-{k}"))
                        .map_err(|e| e.to_string())?,
                    program: self.program.id.clone(),
                    recipient: Recipient {
                        id: recipient.clone(),
                        email: None,
                    },
                    award: None,
                    event: SourceEvent {
                        kind: EventType::parse("seeded").map_err(|e| e.to_string())?,
                        id: None,
                        occurred_at: now,
                        occurred_at_is_receipt: false,
                        attributes: Default::default(),
                    },
                }
                .into_request(now);
                request.points = Some(points);
                request.member = Some(member.clone());
                request.destination = Some(self.program.destination.clone());
                request
                    .transition(Status::Reserved, now, "reserved")
                    .map_err(|e| e.to_string())?;
                request
                    .transition(
                        Status::Scheduled {
                            window: self.window.to_string(),
                        },
                        now,
                        "held",
                    )
                    .map_err(|e| e.to_string())?;
                self.ledger
                    .apply(&[Entry::reserve(
                        &request.id,
                        budget.clone(),
                        AccountId::member(&self.program.destination.partner, &member),
                        points,
                        Vec::new(),
                        now,
                    )])
                    .await
                    .map_err(|e| e.to_string())?;
                self.store
                    .create(&request)
                    .await
                    .map_err(|e| e.to_string())?;
                *owed.entry(member.to_string()).or_default() += points.get();
            }
        }
        Ok(owed)
    }

    /// The window's schedule fires.
    pub async fn fire(&self) -> Result<WindowRun, String> {
        self.dispatch
            .window_closed(&WindowClosed {
                program: self.window.program().clone(),
                scheduled_time: self.window.closes_at(),
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs dispatch over the queue as Lambda's event-source mapping does,
    /// until `shutdown`.
    pub fn mapping(&self, concurrency: usize, shutdown: CancellationToken) -> JoinHandle<()> {
        let mapping = EventSourceMapping::new(
            self.queue.clone(),
            MappingConfig {
                batch_size: 10,
                concurrency,
                function_timeout: Duration::from_secs(60),
                function_name: "dispatch".into(),
            },
        );
        spawn_embedded(mapping, self.dispatch.clone(), shutdown)
    }

    /// Delivers the queue's messages one batch at a time until it is empty
    /// (at most `rounds` batches); a message a batch reports as failed is
    /// delivered again at once. Returns the failures seen.
    pub async fn pump(&self, rounds: usize) -> usize {
        let mut failures = 0;
        for _ in 0..rounds {
            let Ok(received) = self.queue.receive(10, Duration::ZERO).await else {
                break;
            };
            if received.is_empty() {
                break;
            }
            let records = received
                .iter()
                .map(|m| {
                    let mut record = SqsMessage::default();
                    record.message_id = Some(m.message_id.clone());
                    record.body = Some(m.body.clone());
                    record
                })
                .collect();
            let mut event = SqsEvent::default();
            event.records = records;
            let response = self
                .dispatch
                .handle(LambdaEvent::new(event, Context::default()))
                .await;
            let failed: Vec<String> = match response {
                Ok(r) => r
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect(),
                Err(_) => received.iter().map(|m| m.message_id.clone()).collect(),
            };
            for m in &received {
                if failed.contains(&m.message_id) {
                    failures += 1;
                    let _ = self
                        .queue
                        .change_visibility(&m.receipt_handle, Duration::ZERO);
                } else {
                    let _ = self.queue.delete(&m.receipt_handle);
                }
            }
        }
        failures
    }
}
