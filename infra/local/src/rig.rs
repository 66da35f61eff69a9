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
use pointsflow_core::ledger::{AccountId, Entry};
use pointsflow_core::operations::DeadLetters;
use pointsflow_core::ports::{Clock, LedgerWrite, PartnerConnector, RequestCreate};
use pointsflow_core::program::Program;
use pointsflow_core::request::{NewRequest, Recipient, SourceEvent, Status};
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_core::values::{
    EventType, IdempotencyKey, MemberNumber, Points, RecipientId, SourceId,
};
use pointsflow_core::window::{WindowId, WindowRun, WindowStore};
use pointsflow_dispatch::window::WindowClosed;
use pointsflow_dispatch::{Dispatch, DispatchPorts};
use pointsflow_memory::{
    EventSourceMapping, MappingConfig, MemoryAuditLog, MemoryDeadLetters, MemoryLedger,
    MemoryQueue, MemoryReportStore, MemoryRequestStore, QueueConfig, StaticCatalog,
};
use pointsflow_operations::{Operations, OperationsPorts, QueueName};
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
    partner: Arc<dyn PartnerConnector>,
}

impl WindowRig {
    /// A rig for `program` (scheduled, crediting `partner`'s connector).
    pub fn new(
        program: Program,
        windows: Arc<dyn WindowStore>,
        partner: Arc<dyn PartnerConnector>,
        window: WindowId,
    ) -> Self {
        let dead_letters = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: "dispatch-dlq".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 0,
            },
            None,
        ));
        let queue = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: "dispatch".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 100,
            },
            Some(dead_letters.clone()),
        ));
        let store = Arc::new(MemoryRequestStore::new());
        let ledger = Arc::new(MemoryLedger::new());
        let dispatch = Dispatch::new(DispatchPorts {
            get: store.clone(),
            update: store.clone(),
            ledger_read: ledger.clone(),
            ledger_write: ledger.clone(),
            programs: Arc::new(StaticCatalog::new([program.clone()])),
            partners: HashMap::from([(program.destination.partner.clone(), partner.clone())]),
            ids: Arc::new(RandomIds),
            clock: Arc::new(SystemClock),
            scheduled: store.clone(),
            windows: windows.clone(),
            work: queue.clone(),
            redelivery: queue.clone(),
            unsettled_requests: store.clone(),
            requeue: queue.clone(),
        });
        Self {
            store,
            ledger,
            windows,
            queue,
            dead_letters,
            dispatch,
            program,
            window,
            partner,
        }
    }

    /// The operations function over the rig's store, ledger and partner
    /// (an audit log and report store of its own).
    pub fn operations(&self) -> Operations {
        let dead_letters: Arc<dyn DeadLetters> = Arc::new(MemoryDeadLetters {
            dead_letter: self.dead_letters.clone(),
            source: self.queue.clone(),
        });
        Operations::new(OperationsPorts {
            get: self.store.clone(),
            update: self.store.clone(),
            search: self.store.clone(),
            ledger_read: self.ledger.clone(),
            ledger_write: self.ledger.clone(),
            programs: Arc::new(StaticCatalog::new([self.program.clone()])),
            partners: HashMap::from([(
                self.program.destination.partner.clone(),
                self.partner.clone(),
            )]),
            clock: Arc::new(SystemClock),
            eligibility: self.queue.clone(),
            dispatch: self.queue.clone(),
            audit: Arc::new(MemoryAuditLog::new()),
            dead_letters: HashMap::from([(QueueName::Dispatch, dead_letters)]),
            lines: self.store.clone(),
            reports: Arc::new(MemoryReportStore::new()),
            callbacks: None,
        })
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
        crate::stack::spawn_mapping(mapping, self.dispatch.clone(), shutdown)
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
