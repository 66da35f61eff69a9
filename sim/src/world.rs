//! One simulated run: the real intake, eligibility, dispatch and
//! operations handlers wired over the embedded store, ledger and window
//! store (behind the fault layer), the simulated queues, partner and
//! clock; sources, queue consumers, the scheduler, the resolver and
//! operators as tasks the seed interleaves; the invariants checked after
//! every step and once everything has settled.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_assembly::{Adapters, Assembly};
use pointsflow_core::access::{OperatorIdentity, Principal, Role, Verified};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::events::{Change, Event, Write};
use pointsflow_core::ledger::{AccountId, invariants};
use pointsflow_core::ports::{Clock, DeadLetters, PartnerConnector, Queue, QueueName};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{IdempotencyKey, PartnerId, RequestId, SourceId};
use pointsflow_core::window::WindowId;
use pointsflow_dispatch::Dispatch;
use pointsflow_dispatch::window::WindowClosed;
use pointsflow_eligibility::Eligibility;
use pointsflow_events::Events;
use pointsflow_intake::Intake;
use pointsflow_memory::{
    ManualClock, MemoryAuditLog, MemoryBus, MemoryEnrollments, MemoryLedger, MemoryLinkHistory,
    MemoryPartnerState, MemoryProgramStore, MemoryProposals, MemoryReportStore, MemoryRequestStore,
    MemoryStream, MemoryWindowStore, SeededIds,
};
use pointsflow_operations::{Invocation, Operations};

use crate::bus::SimBus;
use crate::exec::{Executor, Polled, TaskKind};
use crate::faults::{Faults, FaultyLedger, FaultyStore, FaultyWindows, SimSchedules};
use crate::partner::SimPartner;
use crate::queue::{SimDeadLetters, SimQueue};
use crate::workload::{self, Planned, Submission};

/// What a run came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub steps: u64,
    pub requests: usize,
    pub by_state: BTreeMap<String, usize>,
    pub faults: BTreeMap<&'static str, u64>,
    /// A digest of the final state and the steps taken: a replay of the
    /// seed gives the same.
    pub digest: u64,
}

/// An invariant that did not hold, and how the run got there.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub violation: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} failed at step {}: {}",
            self.seed, self.step, self.violation
        )?;
        writeln!(f, "last steps:")?;
        for line in self.trace.iter().skip(self.trace.len().saturating_sub(60)) {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "replay: cargo run --release -p pointsflow-sim -- --seed {} --trace",
            self.seed
        )
    }
}

const PARTNER: &str = "sandbox-air";
/// Invocations in flight per queue (the event-source mapping's concurrency).
const CONCURRENCY: usize = 4;
/// The longest a run may take to settle once faults stop.
const SETTLE_WITHIN: TimeDelta = TimeDelta::days(3);
/// How many steps a run may take at most.
const MAX_STEPS: u64 = 400_000;

/// What the sources saw of their sends.
#[derive(Default)]
struct Sources {
    /// Sends due, by time (and a counter, to keep equal times apart).
    due: BTreeMap<(DateTime<Utc>, u64), Submission>,
    counter: u64,
    /// Requests accepted under each canonical key, with the payload hash
    /// of the first acceptance.
    accepted: BTreeMap<String, (RequestId, String, String)>,
    violations: Vec<String>,
}

struct World {
    seed: u64,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    store: Arc<MemoryRequestStore>,
    /// The store's record of its writes, and how far the events function
    /// has published it (Lambda's checkpoint in the stream).
    stream: Arc<MemoryStream>,
    published: Rc<Cell<u64>>,
    bus: Arc<MemoryBus>,
    events: Events,
    ledger: Arc<MemoryLedger>,
    windows: Arc<MemoryWindowStore>,
    partner: Arc<SimPartner>,
    schedules: Arc<SimSchedules>,
    eligibility_queue: Arc<SimQueue>,
    dispatch_queue: Arc<SimQueue>,
    /// Where the events function queues status callbacks (never consumed:
    /// what is checked is that each final status was queued).
    callbacks_queue: Arc<SimQueue>,
    intake: Intake,
    eligibility: Eligibility,
    dispatch: Dispatch,
    operations: Operations,
    exec: Executor,
    sources: Rc<RefCell<Sources>>,
    /// Windows fired successfully, and when each is next fired.
    fired: Rc<RefCell<BTreeSet<WindowId>>>,
    firing: BTreeMap<WindowId, DateTime<Utc>>,
    /// Windows whose invocation is running.
    firing_now: Rc<RefCell<BTreeSet<WindowId>>>,
    next_resolver: DateTime<Utc>,
    next_operator: DateTime<Utc>,
    active_until: DateTime<Utc>,
    in_flight: Rc<RefCell<BTreeMap<&'static str, usize>>>,
    /// Commands an operator runs again: they crashed, or answered an
    /// error that says to retry.
    op_retries: Rc<RefCell<Vec<serde_json::Value>>>,
    /// The ledger's entries and the partner's changes at the last check.
    checked: (usize, u64),
    step: u64,
}

type Check = Result<(), String>;

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0)
        .single()
        .unwrap_or_default()
}

impl World {
    async fn new(seed: u64, verbose: bool) -> Result<Self, String> {
        let faults = Arc::new(Faults::new(seed, verbose));
        let mut config = workload::config(&faults)?;
        let start = start_time();
        let clock = Arc::new(ManualClock::new(start));
        let active = TimeDelta::minutes(30 + faults.below(60) as i64);
        let outages = (0..faults.below(3))
            .map(|_| {
                let from =
                    start + TimeDelta::seconds(faults.below(active.num_seconds() as u64) as i64);
                (
                    from,
                    from + TimeDelta::seconds(30 + faults.below(300) as i64),
                )
            })
            .collect();
        // Minutes when the event bus, or the callbacks queue, takes nothing.
        let down_for_minutes = || -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
            (0..faults.below(3))
                .map(|_| {
                    let from = start
                        + TimeDelta::seconds(faults.below(active.num_seconds() as u64) as i64);
                    (
                        from,
                        from + TimeDelta::seconds(30 + faults.below(600) as i64),
                    )
                })
                .collect()
        };
        let bus_outages = down_for_minutes();
        let callback_outages = down_for_minutes();
        let idempotent = faults.chance(0.7);
        // Half the partners that do not recognise a repeated reference
        // commit an order up to ten minutes after the call, as configured.
        let commit_within = (!idempotent && faults.chance(0.5))
            .then(|| Duration::from_secs(60 + faults.below(540)));
        if let Some(within) = commit_within {
            for p in &mut config.partners {
                p.commit_within_ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
            }
        }
        let partner = Arc::new(SimPartner::new(
            faults.clone(),
            clock.clone(),
            idempotent,
            commit_within,
            outages,
        ));
        let stream = Arc::new(MemoryStream::new());
        let store = Arc::new(MemoryRequestStore::with_stream(stream.clone()));
        let bus = Arc::new(MemoryBus::new());
        let ledger = Arc::new(MemoryLedger::new());
        let windows = Arc::new(MemoryWindowStore::with_stream(stream.clone()));
        let queue = |name| {
            Arc::new(SimQueue::new(
                name,
                faults.clone(),
                clock.clone(),
                Duration::from_secs(30),
                config.queues.max_receive_count,
            ))
        };
        let eligibility_queue = queue("eligibility");
        let dispatch_queue = queue("dispatch");
        let callbacks_queue = Arc::new(
            SimQueue::new(
                "callbacks",
                faults.clone(),
                clock.clone(),
                Duration::from_secs(30),
                config.queues.max_receive_count,
            )
            .with_outages(callback_outages),
        );
        let schedules = Arc::new(SimSchedules::default());
        let partner_state = Arc::new(MemoryPartnerState::new());
        let queues = [
            (QueueName::Eligibility, eligibility_queue.clone()),
            (QueueName::Dispatch, dispatch_queue.clone()),
            (QueueName::Callbacks, callbacks_queue.clone()),
        ];
        let platform = Adapters {
            requests: Arc::new(FaultyStore {
                inner: store.clone(),
                faults: faults.clone(),
            }),
            ledger: Arc::new(FaultyLedger {
                inner: ledger.clone(),
                faults: faults.clone(),
            }),
            windows: Arc::new(FaultyWindows {
                inner: windows.clone(),
                faults: faults.clone(),
            }),
            program_store: Arc::new(MemoryProgramStore::new()),
            links: Arc::new(MemoryEnrollments::default().with_stream(stream.clone())),
            link_history: Arc::new(MemoryLinkHistory::new()),
            proposals: Arc::new(MemoryProposals::new()),
            rate_limiter: partner_state.clone(),
            circuits: partner_state,
            audit: Arc::new(MemoryAuditLog::new()),
            reports: Arc::new(MemoryReportStore::new()),
            queues: queues
                .iter()
                .map(|(name, q)| (*name, q.clone() as Arc<dyn Queue>))
                .collect(),
            dead_letters: queues
                .iter()
                .map(|(name, q)| {
                    (
                        *name,
                        Arc::new(SimDeadLetters(q.clone())) as Arc<dyn DeadLetters>,
                    )
                })
                .collect(),
            schedules: schedules.clone(),
            clock: clock.clone(),
            ids: Arc::new(SeededIds::new(seed)),
            sandbox: None,
            connectors: Some(HashMap::from([(
                PartnerId::parse(PARTNER).map_err(|e| e.to_string())?,
                partner.clone() as Arc<dyn PartnerConnector>,
            )])),
            event_bus: Some(Arc::new(SimBus {
                inner: bus.clone(),
                faults: faults.clone(),
                clock: clock.clone(),
                outages: bus_outages,
            })),
        };
        // Funded before the run, past the fault layer.
        pointsflow_assembly::fund(&config, ledger.as_ref(), start)
            .await
            .map_err(|e| e.to_string())?;
        let assembly = Assembly::new(config, platform);
        let intake = assembly.intake().await.map_err(|e| e.to_string())?;
        let eligibility = assembly.eligibility().await.map_err(|e| e.to_string())?;
        let dispatch = assembly.dispatch().await.map_err(|e| e.to_string())?;
        let operations = assembly.operations().await.map_err(|e| e.to_string())?;
        let events = assembly.events().await.map_err(|e| e.to_string())?;

        let mut sources = Sources::default();
        for Planned { at, send } in workload::plan(&faults, start, active) {
            sources.counter += 1;
            sources.due.insert((at, sources.counter), send);
        }
        Ok(Self {
            seed,
            faults,
            clock,
            store,
            stream,
            published: Rc::default(),
            bus,
            events,
            ledger,
            windows,
            partner,
            schedules,
            eligibility_queue,
            dispatch_queue,
            callbacks_queue,
            intake,
            eligibility,
            dispatch,
            operations,
            exec: Executor::default(),
            sources: Rc::new(RefCell::new(sources)),
            fired: Rc::default(),
            firing: BTreeMap::new(),
            firing_now: Rc::default(),
            next_resolver: start + TimeDelta::seconds(60),
            next_operator: start + TimeDelta::seconds(90),
            active_until: start + active,
            in_flight: Rc::default(),
            op_retries: Rc::default(),
            checked: (usize::MAX, u64::MAX),
            step: 0,
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn advance(&self, by: TimeDelta) {
        if by > TimeDelta::zero() {
            self.clock.advance(by);
        }
    }

    fn fail(&self, violation: String) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            violation,
            trace: self.faults.trace(),
        }
    }

    /// Runs until everything settles; checks the invariants on the way.
    async fn run(mut self) -> Result<Outcome, Failure> {
        if self.faults.sources_give_up {
            self.faults
                .note(|| "API sources give up on a send that failed".into());
        }
        loop {
            self.step += 1;
            if self.step > MAX_STEPS {
                return Err(self.fail(format!(
                    "no quiescence after {MAX_STEPS} steps (at {}, faults {}): {}",
                    self.now(),
                    if self.faults.enabled() { "on" } else { "off" },
                    self.unsettled_summary()
                )));
            }
            if self.faults.enabled()
                && self.now() >= self.active_until
                && self.sources.borrow().due.is_empty()
            {
                self.faults.note(|| "faults off: settling".into());
                self.faults.calm();
            }
            self.check_step().map_err(|v| self.fail(v))?;
            if !self.act().await {
                // Nothing can happen now: move the clock to the next thing
                // due, or stop when nothing is.
                match self.next_due() {
                    Some(at) => {
                        let now = self.now();
                        self.advance((at - now).max(TimeDelta::milliseconds(1)));
                    }
                    None => break,
                }
            }
            if self.now() > self.active_until + SETTLE_WITHIN {
                return Err(self.fail(format!(
                    "not settled {} days after the faults stopped: {}",
                    SETTLE_WITHIN.num_days(),
                    self.unsettled_summary()
                )));
            }
        }
        self.check_final().map_err(|v| self.fail(v))?;
        Ok(self.outcome())
    }

    /// Does one thing the seed picks among those possible now; false when
    /// nothing is possible until the clock moves.
    async fn act(&mut self) -> bool {
        let now = self.now();
        let mut choices: Vec<u8> = Vec::new();
        let ready = self.exec.ready();
        if !ready.is_empty() {
            choices.extend([0; 6]);
        }
        let flight = |w: &Self, name: &str| w.in_flight.borrow().get(name).copied().unwrap_or(0);
        if flight(self, "eligibility") < CONCURRENCY
            && self
                .eligibility_queue
                .next_visible()
                .is_some_and(|t| t <= now)
        {
            choices.extend([1, 1]);
        }
        if flight(self, "dispatch") < CONCURRENCY
            && self.dispatch_queue.next_visible().is_some_and(|t| t <= now)
        {
            choices.extend([2, 2]);
        }
        if self
            .sources
            .borrow()
            .due
            .keys()
            .next()
            .is_some_and(|(t, _)| *t <= now)
        {
            choices.push(3);
        }
        if self.next_operator <= now {
            choices.push(4);
        }
        if self.next_resolver <= now {
            choices.push(5);
        }
        if flight(self, "events") == 0 && !self.stream.is_empty() {
            choices.push(7);
        }
        self.arm_windows();
        if self.firing.values().any(|t| *t <= now) {
            choices.push(6);
        }
        if choices.is_empty() {
            if !self.exec.is_empty() {
                // Tasks wait on a timer (a rate-limit slot, a back-off):
                // let the runtime's paused clock move to it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.advance(TimeDelta::milliseconds(50));
                return true;
            }
            return false;
        }
        let choice = self.faults.pick(&choices).copied().unwrap_or(0);
        match choice {
            0 => {
                let id = self.faults.pick(&ready).copied().unwrap_or(0);
                let faults = self.faults.clone();
                let polled = self.exec.poll(id, &|t| faults.is_crashed(t));
                if polled == Polled::Crashed {
                    self.faults.note(|| format!("task {id} crashed"));
                }
                // Time passes while work is done.
                self.advance(TimeDelta::milliseconds(self.faults.below(40) as i64));
            }
            1 => self.invoke_queue(true),
            2 => self.invoke_queue(false),
            3 => self.send_from_source(),
            4 => self.operator(),
            5 => self.resolver(),
            7 => self.publish_events(),
            _ => self.fire_window(),
        }
        true
    }

    fn next_due(&self) -> Option<DateTime<Utc>> {
        let settled = !self.faults.enabled() && self.is_settled();
        let mut due: Vec<DateTime<Utc>> = Vec::new();
        due.extend(self.eligibility_queue.next_visible());
        due.extend(self.dispatch_queue.next_visible());
        due.extend(self.sources.borrow().due.keys().next().map(|(t, _)| *t));
        due.extend(self.firing.values().copied());
        if let Ok(armed) = self.schedules.armed.lock() {
            // Windows to come (those closed are planned in `firing`).
            due.extend(
                armed
                    .iter()
                    .filter(|w| {
                        !self.fired.borrow().contains(*w)
                            && !self.firing.contains_key(*w)
                            && !self.firing_now.borrow().contains(*w)
                    })
                    .map(WindowId::closes_at),
            );
        }
        if !settled {
            due.push(self.next_resolver);
            due.push(self.next_operator);
        }
        due.into_iter().min()
    }

    /// Whether nothing is left to do: every request final, no message,
    /// no task, no pending credit at the partner.
    fn is_settled(&self) -> bool {
        self.exec.is_empty()
            && self.stream.is_empty()
            && self.eligibility_queue.depth() == 0
            && self.dispatch_queue.depth() == 0
            && self.eligibility_queue.dead_letters().is_empty()
            && self.dispatch_queue.dead_letters().is_empty()
            && self.sources.borrow().due.is_empty()
            && self.op_retries.borrow().is_empty()
            && self
                .partner
                .last_settlement()
                .is_none_or(|t| t <= self.now())
            && self
                .store
                .all()
                .is_ok_and(|all| all.iter().all(|r| r.state().is_terminal()))
    }

    fn unsettled_summary(&self) -> String {
        let stuck: Vec<String> = self
            .store
            .all()
            .unwrap_or_default()
            .iter()
            .filter(|r| !r.state().is_terminal())
            .map(|r| format!("{} {}", r.id, r.state()))
            .collect();
        let first = self
            .store
            .all()
            .unwrap_or_default()
            .into_iter()
            .find(|r| !r.state().is_terminal())
            .map(|r| {
                let credit = r.credit.as_ref().map(|c| {
                    self.fired
                        .borrow()
                        .iter()
                        .flat_map(|w| self.windows.credits_of(w))
                        .filter(|x| &x.id == c)
                        .map(|x| format!("{:?} requests {:?} attempts {}", x.state, x.requests, x.attempts))
                        .collect::<Vec<_>>()
                });
                format!(
                    " (first: source {} key {} event {:?} undoes {:?} round {}, credit {credit:?}, timeline {:?})",
                    r.source,
                    r.idempotency_key,
                    r.event.id,
                    r.undoes,
                    r.round,
                    r.timeline
                        .iter()
                        .map(|t| format!("{} {} {}", t.at.format("%H:%M:%S"), t.state, t.detail))
                        .collect::<Vec<_>>()
                )
            })
            .unwrap_or_default();
        format!(
            "{} requests not final {:?}{first}; {} tasks; queues {} / {} (DLQ {} / {}); {} sends due",
            stuck.len(),
            stuck.iter().take(10).collect::<Vec<_>>(),
            self.exec.len(),
            self.eligibility_queue.depth(),
            self.dispatch_queue.depth(),
            self.eligibility_queue.dead_letters().len(),
            self.dispatch_queue.dead_letters().len(),
            self.sources.borrow().due.len(),
        )
    }

    /// An invocation of eligibility or dispatch with a batch from its queue.
    fn invoke_queue(&mut self, eligibility: bool) {
        let (queue, name) = if eligibility {
            (self.eligibility_queue.clone(), "eligibility")
        } else {
            (self.dispatch_queue.clone(), "dispatch")
        };
        let batch = queue.receive(1 + self.faults.below(10) as usize);
        if batch.is_empty() {
            return;
        }
        self.faults.note(|| {
            format!(
                "{name} invoked with {:?}",
                batch.iter().map(|m| m.id).collect::<Vec<_>>()
            )
        });
        let records = batch
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = Some(m.id.to_string());
                record.receipt_handle = Some(m.handle.clone());
                record.body = Some(m.body.clone());
                record
                    .attributes
                    .insert("ApproximateReceiveCount".into(), m.receives.to_string());
                record
            })
            .collect();
        let mut sqs = SqsEvent::default();
        sqs.records = records;
        let event = LambdaEvent::new(sqs, Context::default());
        let handles: Vec<(String, String)> = batch
            .iter()
            .map(|m| (m.id.to_string(), m.handle.clone()))
            .collect();
        let in_flight = self.in_flight.clone();
        *in_flight.borrow_mut().entry(name).or_default() += 1;
        let done = in_flight.clone();
        let on_crash: Box<dyn FnOnce()> = Box::new(move || {
            if let Some(n) = done.borrow_mut().get_mut(name) {
                *n -= 1;
            }
        });
        let faults = self.faults.clone();
        if eligibility {
            let handler = self.eligibility.clone();
            self.exec.spawn(
                TaskKind::Eligibility,
                async move {
                    let response = handler.handle(event).await;
                    settle_batch(&queue, &faults, name, &handles, response.ok());
                    if let Some(n) = in_flight.borrow_mut().get_mut(name) {
                        *n -= 1;
                    }
                },
                Some(on_crash),
            );
        } else {
            let handler = self.dispatch.clone();
            self.exec.spawn(
                TaskKind::Dispatch,
                async move {
                    let response = handler.handle(event).await;
                    settle_batch(&queue, &faults, name, &handles, response.ok());
                    if let Some(n) = in_flight.borrow_mut().get_mut(name) {
                        *n -= 1;
                    }
                },
                Some(on_crash),
            );
        }
    }

    /// A source sends the next due thing; it sends again later if it got
    /// no answer, a 5xx, or (Salesforce) no acknowledgement.
    fn send_from_source(&mut self) {
        let Some(((_, _), send)) = self.sources.borrow_mut().due.pop_first() else {
            return;
        };
        let request = match build_request(&send) {
            Ok(r) => r,
            Err(e) => {
                self.sources.borrow_mut().violations.push(e);
                return;
            }
        };
        let intake = self.intake.clone();
        let sources = self.sources.clone();
        let store = self.store.clone();
        let clock = self.clock.clone();
        let retry_in = TimeDelta::seconds(5 + self.faults.below(120) as i64);
        let gives_up = self.faults.sources_give_up && matches!(send, Submission::Api { .. });
        let again = send.clone();
        let crashed_sources = sources.clone();
        let crash_clock = clock.clone();
        let on_crash: Box<dyn FnOnce()> = Box::new(move || {
            if gives_up {
                return;
            }
            let mut s = crashed_sources.borrow_mut();
            s.counter += 1;
            let n = s.counter;
            s.due.insert((crash_clock.now() + retry_in, n), again);
        });
        self.faults
            .note(|| format!("source sends {}", describe(&send)));
        self.exec.spawn(
            TaskKind::Intake,
            async move {
                let response = intake.handle(request).await;
                let status = response.status().as_u16();
                let body = match response.body() {
                    lambda_http::Body::Text(t) => t.clone(),
                    lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                let mut s = sources.borrow_mut();
                let retry = match &send {
                    Submission::Api {
                        key,
                        body: sent,
                        bad: true,
                        ..
                    } => {
                        let _ = (key, sent);
                        if (400..=499).contains(&status) {
                            false
                        } else {
                            s.violations
                                .push(format!("a malformed request got {status}, not 4xx: {body}"));
                            false
                        }
                    }
                    Submission::Api {
                        key, body: sent, ..
                    } => match status {
                        500..=599 => true,
                        200..=299 => {
                            match s.accepted.get(key) {
                                Some((_, _, first)) if first != sent => s.violations.push(format!(
                                    "key {key} was accepted with two payloads ({status}): {body}"
                                )),
                                Some(_) => {}
                                None => record_acceptance(&mut s, &store, key, sent),
                            }
                            false
                        }
                        409 => {
                            if s.accepted
                                .get(key)
                                .is_some_and(|(_, _, first)| first == sent)
                            {
                                s.violations.push(format!(
                                    "key {key} sent again with the same payload was refused: {body}"
                                ));
                            }
                            false
                        }
                        _ => {
                            s.violations
                                .push(format!("request {key} answered {status}: {body}"));
                            false
                        }
                    },
                    Submission::Salesforce { .. } => {
                        if status == 200 && body.contains("<Ack>true</Ack>") {
                            false
                        } else if status >= 500 {
                            true
                        } else {
                            s.violations
                                .push(format!("an Outbound Message answered {status}: {body}"));
                            false
                        }
                    }
                };
                if retry && !gives_up {
                    s.counter += 1;
                    let n = s.counter;
                    s.due.insert((clock.now() + retry_in, n), send);
                }
            },
            Some(on_crash),
        );
    }

    /// An operator does something the console allows, at a random moment;
    /// once faults stop, they decide every request waiting for them and
    /// redrive the dead-letter queues.
    fn operator(&mut self) {
        self.next_operator = self.now() + TimeDelta::seconds(30 + self.faults.below(240) as i64);
        let all = self.store.all().unwrap_or_default();
        let pick = |state: StatusKind| -> Vec<RequestId> {
            all.iter()
                .filter(|r| r.state() == state)
                .map(|r| r.id.clone())
                .collect()
        };
        let calm = !self.faults.enabled();
        let mut commands: Vec<serde_json::Value> = self.op_retries.borrow_mut().drain(..).collect();
        let waiting = pick(StatusKind::AwaitingApproval);
        if let Some(id) = self.faults.pick(&waiting) {
            let command = if self.faults.chance(0.7) {
                "approve"
            } else {
                "decline"
            };
            commands.push(serde_json::json!({"command": command, "request_id": id.as_str(), "reason": "checked"}));
        }
        for queue in ["eligibility", "dispatch"] {
            if calm || self.faults.chance(0.2) {
                commands
                    .push(serde_json::json!({"command": "redrive", "queue": queue, "max": 100}));
            }
        }
        if !calm {
            let credited = pick(StatusKind::Credited);
            if let Some(id) = self.faults.pick(&credited)
                && self.faults.chance(0.5)
            {
                let mut command = serde_json::json!({"command": "reverse", "request_id": id.as_str(), "reason": "deal reduced"});
                if self.faults.chance(0.6) {
                    command["points"] = (1 + self.faults.below(300)).into();
                }
                commands.push(command);
            }
            let failed = pick(StatusKind::Failed);
            if let Some(id) = self.faults.pick(&failed) {
                commands.push(serde_json::json!({"command": "retry", "request_id": id.as_str(), "reason": "fixed"}));
            }
            let unknown: Vec<RequestId> = [StatusKind::Unknown, StatusKind::PartnerPending]
                .into_iter()
                .flat_map(&pick)
                .collect();
            if let Some(id) = self.faults.pick(&unknown) {
                commands.push(serde_json::json!({"command": "resolve", "request_id": id.as_str()}));
            }
        }
        for command in commands {
            // Operators act under roles, as the admin API runs them: two
            // approvers (a request above the second approval threshold
            // needs both), and an operator for the rest.
            let name = command["command"].as_str().unwrap_or_default().to_owned();
            let (who, role) = match name.as_str() {
                "approve" | "decline" if self.faults.chance(0.5) => {
                    ("sim-approver-1", Role::Approver)
                }
                "approve" | "decline" => ("sim-approver-2", Role::Approver),
                _ => ("sim-operator", Role::Operator),
            };
            let operator = OperatorIdentity {
                principal: Principal::parse(who).unwrap_or_else(|_| unreachable!()),
                roles: BTreeSet::from([role]),
                verified: Verified::Key,
            };
            let mut arguments = command.clone();
            if let Some(fields) = arguments.as_object_mut() {
                fields.remove("command");
            }
            let operations = self.operations.clone();
            self.faults.note(|| format!("operator {who}: {command}"));
            let faults = self.faults.clone();
            let (retries, again) = (self.op_retries.clone(), command.clone());
            let on_crash: Box<dyn FnOnce()> = Box::new(move || retries.borrow_mut().push(again));
            let retries = self.op_retries.clone();
            self.exec.spawn(
                TaskKind::Operator,
                async move {
                    let answer = operations
                        .run(Invocation::authenticated(operator, &name, arguments))
                        .await;
                    faults.note(|| {
                        format!(
                            "operator answer: {} {:?}",
                            answer.ok,
                            answer.error.as_ref().map(|e| &e.code)
                        )
                    });
                    if answer.error.as_ref().is_some_and(|e| e.retryable) {
                        retries.borrow_mut().push(command);
                    }
                },
                Some(on_crash),
            );
        }
    }

    /// Lambda invokes the events function with the stream's next records
    /// (one invocation at a time, as for one shard); the checkpoint moves
    /// past what it published, or to the first record it could not. A
    /// crash leaves the checkpoint: the records are read again.
    fn publish_events(&mut self) {
        let after = self.published.get();
        let batch = self.stream.read(after, 1 + self.faults.below(100) as usize);
        let Some(last) = batch.last().map(MemoryStream::position_of) else {
            return;
        };
        self.faults
            .note(|| format!("events invoked with records {} to {last}", after + 1));
        let in_flight = self.in_flight.clone();
        *in_flight.borrow_mut().entry("events").or_default() += 1;
        let done = in_flight.clone();
        let on_crash: Box<dyn FnOnce()> = Box::new(move || {
            if let Some(n) = done.borrow_mut().get_mut("events") {
                *n -= 1;
            }
        });
        let (events, stream, published, faults) = (
            self.events.clone(),
            self.stream.clone(),
            self.published.clone(),
            self.faults.clone(),
        );
        self.exec.spawn(
            TaskKind::Events,
            async move {
                let answer = events.publish(&batch).await;
                let through = match answer.failed_from {
                    None => last,
                    Some(from) => {
                        faults.note(|| format!("events: retry from record {from}"));
                        from.parse::<u64>().unwrap_or(1).saturating_sub(1)
                    }
                };
                published.set(through);
                stream.trim(through);
                if let Some(n) = in_flight.borrow_mut().get_mut("events") {
                    *n -= 1;
                }
            },
            Some(on_crash),
        );
    }

    /// Every line of every request that is an event, and every stage of
    /// every window credit, is on the bus, none else is, and each is
    /// identical however often it was put there and to the one rebuilt
    /// from its item (for a request no operator retried: a retry's new
    /// reference shows in its earlier rounds' rebuilt events). The
    /// simulator changes no member link.
    fn check_events(&self) -> Check {
        let mut sent: BTreeMap<String, Event> = BTreeMap::new();
        for event in self.bus.events() {
            match sent.get(event.id()) {
                Some(first) if first != &event => {
                    return Err(format!(
                        "event {} put on the bus twice, differently: {first:?} then {event:?}",
                        event.id()
                    ));
                }
                Some(_) => {}
                None => {
                    sent.insert(event.id().to_owned(), event);
                }
            }
        }
        let mut expected = 0;
        let requests = self.store.all().map_err(|e| e.to_string())?;
        let writes = requests
            .into_iter()
            .map(|request| Write::Request {
                before: None,
                after: request,
            })
            .chain(
                self.windows
                    .credits()
                    .into_iter()
                    .map(|credit| Write::Credit {
                        before: None,
                        after: credit,
                    }),
            );
        for write in writes {
            let retried = write.request().is_some_and(|(_, r)| r.round > 0);
            let rebuilt = self.events.events_of(&Change {
                position: String::new(),
                write,
            });
            for event in rebuilt {
                expected += 1;
                match sent.get(event.id()) {
                    None => {
                        return Err(format!(
                            "event {} ({}) never put on the bus",
                            event.id(),
                            event.detail_type
                        ));
                    }
                    Some(on_bus) if !retried && on_bus != &event => {
                        return Err(format!(
                            "event {} on the bus is not its item's history: {on_bus:?} against {event:?}",
                            event.id()
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if sent.len() != expected {
            return Err(format!(
                "{} events on the bus, {expected} of requests' lines and credits' stages",
                sent.len()
            ));
        }
        self.check_callbacks()
    }

    /// Every final status of every request (all sources have a callback)
    /// was queued for its callback under its line's event id, and nothing
    /// else was.
    fn check_callbacks(&self) -> Check {
        let queued: BTreeSet<String> = self
            .callbacks_queue
            .bodies()
            .iter()
            .map(|b| {
                serde_json::from_str::<CallbackMessage>(b)
                    .map(|m| m.event_id())
                    .map_err(|e| format!("a callback message that does not read: {e}: {b}"))
            })
            .collect::<Result<_, _>>()?;
        let mut expected = BTreeSet::new();
        for request in self.store.all().map_err(|e| e.to_string())? {
            for message in CallbackMessage::of_write(None, &request) {
                let id = message.event_id();
                if !queued.contains(&id) {
                    return Err(format!(
                        "request {} became {} ({id}) and its callback was never queued",
                        request.id, message.state
                    ));
                }
                expected.insert(id);
            }
        }
        if let Some(extra) = queued.difference(&expected).next() {
            return Err(format!("callback {extra} queued for no final status"));
        }
        Ok(())
    }

    /// The resolver of unsettled credits, on its schedule.
    fn resolver(&mut self) {
        self.next_resolver = self.now() + TimeDelta::seconds(60 + self.faults.below(120) as i64);
        let dispatch = self.dispatch.clone();
        self.exec.spawn(
            TaskKind::Resolver,
            async move {
                let _ = dispatch.resolve_unsettled().await;
            },
            None,
        );
    }

    /// Plans the firing of each armed window that has closed: late by up
    /// to ten minutes.
    fn arm_windows(&mut self) {
        let now = self.now();
        let armed: Vec<WindowId> = self
            .schedules
            .armed
            .lock()
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default();
        for window in armed {
            if window.closes_at() <= now
                && !self.firing.contains_key(&window)
                && !self.firing_now.borrow().contains(&window)
                && !self.fired.borrow().contains(&window)
            {
                let late = TimeDelta::seconds(self.faults.below(600) as i64);
                self.firing
                    .insert(window.clone(), window.closes_at() + late);
            }
        }
    }

    /// EventBridge Scheduler invokes dispatch for a window: again after a
    /// failure or a crash, and now and then twice.
    fn fire_window(&mut self) {
        let now = self.now();
        let Some(window) = self
            .firing
            .iter()
            .find(|(_, t)| **t <= now)
            .map(|(w, _)| w.clone())
        else {
            return;
        };
        self.firing.remove(&window);
        let retry_at = now + TimeDelta::seconds(30 + self.faults.below(120) as i64);
        // Fire again later anyway: a duplicate delivery of the schedule.
        let twice = self.faults.enabled() && self.faults.chance(0.3);
        if twice {
            self.firing.insert(window.clone(), retry_at);
        }
        let dispatch = self.dispatch.clone();
        let fired = self.fired.clone();
        let event = WindowClosed {
            program: window.program().clone(),
            scheduled_time: window.closes_at(),
        };
        self.faults.note(|| format!("scheduler fires {window}"));
        // Until it answers, the window is not planned again; a failed or
        // crashed invocation is retried (planned again, not being fired
        // and not fired).
        self.firing_now.borrow_mut().insert(window.clone());
        let (crashed_window, firing_now) = (window.clone(), self.firing_now.clone());
        let on_crash: Box<dyn FnOnce()> = Box::new(move || {
            firing_now.borrow_mut().remove(&crashed_window);
        });
        let firing_now = self.firing_now.clone();
        let faults = self.faults.clone();
        self.exec.spawn(
            TaskKind::Window,
            async move {
                match dispatch.window_closed(&event).await {
                    Ok(_) => {
                        fired.borrow_mut().insert(window.clone());
                    }
                    Err(e) => faults.note(|| format!("window failed: {e}; the scheduler retries")),
                }
                firing_now.borrow_mut().remove(&window);
            },
            Some(on_crash),
        );
    }

    /// The invariants that hold after every step (the ledger's and the
    /// partner's only when either changed since the last check).
    fn check_step(&mut self) -> Check {
        if let Some(v) = self.sources.borrow().violations.first() {
            return Err(v.clone());
        }
        let seen = (self.ledger.len(), self.partner.changes());
        if seen == self.checked {
            return Ok(());
        }
        self.checked = seen;
        self.check_books()
    }

    /// The ledger's invariants, and the partner against the ledger.
    fn check_books(&self) -> Check {
        let snapshot = self.ledger.snapshot().map_err(|e| e.to_string())?;
        snapshot
            .check()
            .map_err(|v| format!("ledger invariant: {}", v.0))?;
        let members = invariants::balances_from_entries(&snapshot.entries)
            .map_err(|v| format!("ledger invariant: {}", v.0))?;
        // The partner never holds more for a member than the ledger has
        // reserved or posted for them: nothing is credited twice.
        let partner = PartnerId::parse(PARTNER).map_err(|e| e.to_string())?;
        for (member, held) in self.partner.held_per_member() {
            let ledger = members
                .get(&AccountId::member(&partner, &member))
                .map(|b| (b.credits_pending + b.credits_posted).saturating_sub(b.debits_posted))
                .unwrap_or(0);
            if held > ledger {
                return Err(format!(
                    "the partner holds {held} points for {member} but the ledger only {ledger}: credited twice"
                ));
            }
        }
        Ok(())
    }

    /// The invariants once everything has settled.
    fn check_final(&self) -> Check {
        if let Some(v) = self.sources.borrow().violations.first() {
            return Err(v.clone());
        }
        self.check_books()?;
        self.check_events()?;
        let all = self.store.all().map_err(|e| e.to_string())?;
        if let Some(stuck) = all.iter().find(|r| !r.state().is_terminal()) {
            return Err(format!(
                "request {} settled in {}: not final",
                stuck.id,
                stuck.state()
            ));
        }
        let snapshot = self.ledger.snapshot().map_err(|e| e.to_string())?;
        let partner = PartnerId::parse(PARTNER).map_err(|e| e.to_string())?;
        invariants::check_partner_matches(
            &snapshot.entries,
            &partner,
            &self.partner.credited_per_member(),
        )
        .map_err(|v| format!("partner and ledger differ: {}", v.0))?;
        // Every credit the partner applied is one request's (or one window
        // credit's) reference, applied once: an ambiguous outcome was never
        // sent again under a new reference.
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        for r in &all {
            if let Some(reference) = &r.partner_reference
                && r.credit.is_none()
            {
                *owners.entry(reference.as_str().to_owned()).or_default() += 1;
            }
        }
        for window in self.fired.borrow().iter() {
            for credit in self.windows.credits_of(window) {
                *owners
                    .entry(credit.reference.as_str().to_owned())
                    .or_default() += 1;
            }
        }
        for (reference, applied) in self.partner.applied_references() {
            if applied > 1 {
                return Err(format!("reference {reference} credited {applied} times"));
            }
            match owners.get(&reference) {
                Some(1) => {}
                Some(n) => return Err(format!("reference {reference} is carried by {n} credits")),
                None => {
                    return Err(format!(
                        "the partner credited reference {reference}, which no request carries any more: re-sent under a new reference"
                    ));
                }
            }
        }
        // A key reused with another payload changed nothing.
        for (key, (id, hash, _)) in &self.sources.borrow().accepted {
            let Some(r) = all.iter().find(|r| &r.id == id) else {
                return Err(format!("request {id} accepted for {key} is gone"));
            };
            if r.payload_hash.to_hex() != *hash {
                return Err(format!("request {id} under key {key} changed its payload"));
            }
        }
        // A malformed request recorded nothing.
        let source = SourceId::parse("demo").map_err(|e| e.to_string())?;
        for r in &all {
            if r.source == source && r.idempotency_key.as_str().starts_with("bad-") {
                return Err(format!("a malformed request was recorded: {}", r.id));
            }
        }
        Ok(())
    }

    fn outcome(&self) -> Outcome {
        let all = self.store.all().unwrap_or_default();
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        let mut digest = Digest::default();
        digest.add(&self.step.to_string());
        for r in &all {
            *by_state.entry(r.state().to_string()).or_default() += 1;
            digest.add(r.id.as_str());
            digest.add(r.state().as_str());
            digest.add(&format!("{:?}{:?}", r.points, r.partner_reference));
        }
        for (member, points) in self.partner.credited_per_member() {
            digest.add(&format!("{member}={points}"));
        }
        Outcome {
            seed: self.seed,
            steps: self.step,
            requests: all.len(),
            by_state,
            faults: self.faults.counts(),
            digest: digest.0,
        }
    }
}

/// FNV-1a over the run's final state.
struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    fn add(&mut self, s: &str) {
        for b in s.bytes().chain([0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Deletes the messages the handler processed; the failed ones (or all,
/// when the invocation failed) stay and come back after their visibility
/// timeout.
fn settle_batch(
    queue: &SimQueue,
    faults: &Faults,
    name: &str,
    handles: &[(String, String)],
    response: Option<aws_lambda_events::event::sqs::SqsBatchResponse>,
) {
    let Some(response) = response else {
        faults.note(|| format!("{name} invocation failed"));
        return;
    };
    let failed: BTreeSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for (id, handle) in handles {
        if !failed.contains(id.as_str()) {
            queue.delete(handle);
        }
    }
    faults.note(|| format!("{name} done; failed {failed:?}"));
}

fn record_acceptance(sources: &mut Sources, store: &MemoryRequestStore, key: &str, body: &str) {
    if sources.accepted.contains_key(key) {
        return;
    }
    let (Ok(source), Ok(idempotency)) = (SourceId::parse("demo"), IdempotencyKey::parse(key))
    else {
        return;
    };
    let id = RequestId::derive(&source, &idempotency);
    let hash = store
        .all()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.id == id)
        .map(|r: PointsRequest| r.payload_hash.to_hex());
    match hash {
        Some(hash) => {
            sources
                .accepted
                .insert(key.to_owned(), (id, hash, body.to_owned()));
        }
        None => sources
            .violations
            .push(format!("request {key} was accepted but not stored")),
    }
}

fn describe(send: &Submission) -> String {
    match send {
        Submission::Api {
            key, reuse, bad, ..
        } => format!("API {key} (reuse {reuse}, bad {bad})"),
        Submission::Salesforce { xml } => format!("Outbound Message of {} bytes", xml.len()),
    }
}

fn build_request(send: &Submission) -> Result<lambda_http::Request, String> {
    let builder = http::Request::builder().method("POST");
    let request = match send {
        Submission::Api { key, body, .. } => builder
            .uri("/v1/points-requests")
            .header("authorization", format!("Bearer {}", workload::API_KEY))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(lambda_http::Body::Text(body.clone())),
        Submission::Salesforce { xml } => builder
            .uri(format!(
                "/v1/sources/salesforce/events?token={}",
                workload::SF_TOKEN
            ))
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(lambda_http::Body::Text(xml.clone())),
    };
    request.map_err(|e| e.to_string())
}

/// Runs seed `seed` on a fresh world; `verbose` prints every step.
pub fn run(seed: u64, verbose: bool) -> Result<Outcome, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| Failure {
            seed,
            step: 0,
            violation: format!("cannot start a runtime: {e}"),
            trace: Vec::new(),
        })?;
    runtime.block_on(async move {
        let world = World::new(seed, verbose).await.map_err(|e| Failure {
            seed,
            step: 0,
            violation: format!("cannot build the world: {e}"),
            trace: Vec::new(),
        })?;
        world.run().await
    })
}
