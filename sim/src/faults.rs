//! The fault layer: one seeded generator decides every fault, and wrappers
//! around the embedded adapters put a step boundary before and after each
//! store write, ledger transaction and window write (the queue and the
//! partner have theirs in [`crate::queue`] and [`crate::partner`]). At a
//! boundary the calling task gives way to the others, and may crash: it
//! stops there for good, as a Lambda killed mid-flight does.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::ledger::{AccountId, Applied, Balance, Entry, LedgerError};
use pointsflow_core::ports::{
    Created, LedgerRead, LedgerWrite, RequestCreate, RequestGet, RequestLines, RequestSearch,
    RequestUpdate, ScheduledRequests, StoreError, SweepMarks, UnsettledIndex, WaitingRequests,
    WindowStore,
};
use pointsflow_core::reconcile::{LinePage, Scope};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::search::SearchFilter;
use pointsflow_core::unsettled::{SweepMark, Unsettled};
use pointsflow_core::values::{PartnerReference, ProgramId, RecipientId, RequestId};
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, RunCounts, ScheduledCursor, ScheduledPage, WindowCredit,
    WindowId, WindowRun,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::exec::{current_task, yield_now};

/// How often each fault happens, per chance to happen. Drawn per seed.
#[derive(Debug, Clone)]
pub struct Rates {
    /// A crash at a step boundary.
    pub crash: f64,
    /// A store or ledger call throttled (`Unavailable`).
    pub store_error: f64,
    /// Another writer updates the request just before this update.
    pub conflict: f64,
    /// A queue send fails.
    pub send_error: f64,
    /// A message is delivered again while still in flight.
    pub duplicate: f64,
    /// Partner answers, per call: 5xx before doing anything, a timeout
    /// after crediting, 429, a pending credit, a slow answer.
    pub partner_5xx: f64,
    pub partner_timeout_after: f64,
    pub partner_429: f64,
    pub partner_pending: f64,
    pub partner_slow: f64,
    pub partner_reject: f64,
}

impl Rates {
    /// Rates drawn from the seed: some runs calm, some very hostile.
    pub fn draw(rng: &mut StdRng) -> Self {
        let mut r = |max: f64| {
            if rng.random_bool(0.2) {
                0.0
            } else {
                rng.random_range(0.0..max)
            }
        };
        Self {
            crash: r(0.04),
            store_error: r(0.05),
            conflict: r(0.05),
            send_error: r(0.08),
            duplicate: r(0.15),
            partner_5xx: r(0.15),
            partner_timeout_after: r(0.15),
            partner_429: r(0.1),
            partner_pending: r(0.2),
            partner_slow: r(0.2),
            partner_reject: r(0.05),
        }
    }
}

/// The seeded decisions and what they came to.
pub struct Faults {
    rng: Mutex<StdRng>,
    pub rates: Rates,
    enabled: AtomicBool,
    crashed: Mutex<HashSet<u64>>,
    trace: Mutex<VecDeque<String>>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// The whole trace, kept only when asked (`--trace`).
    pub verbose: bool,
    /// In about one seed in four, an API source gives up on a send that
    /// got no answer or a 5xx instead of sending it again, so a request
    /// stored before the failure is moved on by the pipeline alone (the
    /// resolver's reading of its hour). Drawn apart from the seed's other
    /// choices, so the other seeds run as before.
    pub sources_give_up: bool,
}

/// How many trace lines a failure prints.
const TRACE_LINES: usize = 400;

impl Faults {
    pub fn new(seed: u64, verbose: bool) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let rates = Rates::draw(&mut rng);
        let sources_give_up = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15).random_bool(0.25);
        Self {
            rng: Mutex::new(rng),
            rates,
            sources_give_up,
            enabled: AtomicBool::new(true),
            crashed: Mutex::new(HashSet::new()),
            trace: Mutex::new(VecDeque::new()),
            counts: Mutex::new(BTreeMap::new()),
            verbose,
        }
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut rng)
    }

    /// True with probability `p` (a scheduling choice: always drawn).
    pub fn chance(&self, p: f64) -> bool {
        let p = p.clamp(0.0, 1.0);
        self.with_rng(|r| r.random_bool(p))
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&self, n: u64) -> u64 {
        self.with_rng(|r| r.random_range(0..n.max(1)))
    }

    /// Picks one of `items`.
    pub fn pick<'a, T>(&self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let i = self.below(items.len() as u64) as usize;
        items.get(i)
    }

    /// Whether a fault of rate `p` happens now (never once faults are off).
    pub fn fault(&self, what: &'static str, p: f64) -> bool {
        if !self.enabled.load(Ordering::SeqCst) || p <= 0.0 {
            return false;
        }
        let hit = self.chance(p);
        if hit {
            self.count(what);
            self.note(|| format!("fault: {what}"));
        }
        hit
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Faults off: the run settles (quiescence).
    pub fn calm(&self) {
        self.enabled.store(false, Ordering::SeqCst);
    }

    pub fn count(&self, what: &'static str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(what).or_default() += 1;
        }
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Adds a line to the trace (kept: the last lines, or all when verbose).
    pub fn note(&self, line: impl FnOnce() -> String) {
        if let Ok(mut t) = self.trace.lock() {
            let task = current_task();
            let line = line();
            if self.verbose {
                eprintln!("[task {task}] {line}");
            }
            t.push_back(format!("[task {task}] {line}"));
            while t.len() > TRACE_LINES {
                t.pop_front();
            }
        }
    }

    pub fn trace(&self) -> Vec<String> {
        self.trace
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A step boundary: give way, and maybe crash here.
    pub async fn boundary(&self, site: &'static str) {
        yield_now().await;
        let task = current_task();
        if task != 0 && self.fault("crash", self.rates.crash) {
            self.note(|| format!("crash at {site}"));
            if let Ok(mut c) = self.crashed.lock() {
                c.insert(task);
            }
            std::future::pending::<()>().await;
        }
    }

    pub fn is_crashed(&self, task: u64) -> bool {
        self.crashed.lock().is_ok_and(|c| c.contains(&task))
    }

    fn throttled(&self, what: &'static str) -> bool {
        self.fault(what, self.rates.store_error)
    }
}

fn throttle() -> StoreError {
    StoreError::Unavailable("ProvisionedThroughputExceeded (simulated)".into())
}

/// The request store with faults.
pub struct FaultyStore<S> {
    pub inner: std::sync::Arc<S>,
    pub faults: std::sync::Arc<Faults>,
}

#[async_trait]
impl<S: RequestCreate + Send + Sync> RequestCreate for FaultyStore<S> {
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError> {
        self.faults.boundary("before store create").await;
        if self.faults.throttled("store create throttled") {
            return Err(throttle());
        }
        let created = self.inner.create(request).await;
        self.faults.boundary("after store create").await;
        created
    }
}

#[async_trait]
impl<S: RequestGet + Send + Sync> RequestGet for FaultyStore<S> {
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError> {
        yield_now().await;
        if self.faults.throttled("store get throttled") {
            return Err(throttle());
        }
        self.inner.get(id).await
    }
}

#[async_trait]
impl<S: RequestGet + RequestUpdate + Send + Sync> RequestUpdate for FaultyStore<S> {
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        self.faults.boundary("before store update").await;
        if self.faults.throttled("store update throttled") {
            return Err(throttle());
        }
        if self
            .faults
            .fault("conflicting writer", self.faults.rates.conflict)
        {
            // Another writer got there first: the same item, written again.
            if let Ok(Some(current)) = self.inner.get(&request.id).await {
                let _ = self.inner.update(&current).await;
            }
        }
        let updated = self.inner.update(request).await;
        self.faults.boundary("after store update").await;
        updated
    }
}

#[async_trait]
impl<S: WaitingRequests + Send + Sync> WaitingRequests for FaultyStore<S> {
    async fn waiting(
        &self,
        program: &ProgramId,
        state: StatusKind,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError> {
        yield_now().await;
        self.inner.waiting(program, state, recipient).await
    }
}

#[async_trait]
impl<S: ScheduledRequests + Send + Sync> ScheduledRequests for FaultyStore<S> {
    async fn scheduled(
        &self,
        program: &ProgramId,
        after: Option<&ScheduledCursor>,
        limit: usize,
    ) -> Result<ScheduledPage, StoreError> {
        yield_now().await;
        if self.faults.throttled("store query throttled") {
            return Err(throttle());
        }
        self.inner.scheduled(program, after, limit).await
    }
}

#[async_trait]
impl<S: RequestSearch + Send + Sync> RequestSearch for FaultyStore<S> {
    async fn search(
        &self,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<PointsRequest>, StoreError> {
        yield_now().await;
        self.inner.search(filter, limit).await
    }
}

#[async_trait]
impl<S: RequestLines + Send + Sync> RequestLines for FaultyStore<S> {
    async fn lines(
        &self,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LinePage, StoreError> {
        yield_now().await;
        self.inner.lines(scope, after, limit).await
    }

    async fn known_references(
        &self,
        references: &HashSet<PartnerReference>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashSet<PartnerReference>, StoreError> {
        self.inner.known_references(references, from, to).await
    }
}

#[async_trait]
impl<S: UnsettledIndex + Send + Sync> UnsettledIndex for FaultyStore<S> {
    async fn unsettled(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        yield_now().await;
        if self.faults.throttled("store query throttled") {
            return Err(throttle());
        }
        self.inner.unsettled(before, limit).await
    }
}

#[async_trait]
impl<S: SweepMarks + Send + Sync> SweepMarks for FaultyStore<S> {
    async fn sweep_mark(&self) -> Result<Option<SweepMark>, StoreError> {
        yield_now().await;
        if self.faults.throttled("sweep mark read throttled") {
            return Err(throttle());
        }
        self.inner.sweep_mark().await
    }

    async fn keep_sweep_mark(&self, mark: &SweepMark) -> Result<(), StoreError> {
        yield_now().await;
        if self.faults.throttled("sweep mark write throttled") {
            return Err(throttle());
        }
        self.inner.keep_sweep_mark(mark).await
    }
}

/// The ledger with faults.
pub struct FaultyLedger<L> {
    pub inner: std::sync::Arc<L>,
    pub faults: std::sync::Arc<Faults>,
}

#[async_trait]
impl<L: LedgerWrite + Send + Sync> LedgerWrite for FaultyLedger<L> {
    async fn apply(&self, entries: &[Entry]) -> Result<Applied, LedgerError> {
        self.faults.boundary("before ledger transaction").await;
        if self.faults.throttled("ledger transaction throttled") {
            return Err(LedgerError::Unavailable(
                "TransactionConflict (simulated)".into(),
            ));
        }
        let applied = self.inner.apply(entries).await;
        self.faults.boundary("after ledger transaction").await;
        applied
    }
}

#[async_trait]
impl<L: LedgerRead + Send + Sync> LedgerRead for FaultyLedger<L> {
    async fn entries_for(&self, request: &RequestId) -> Result<Vec<Entry>, LedgerError> {
        yield_now().await;
        if self.faults.throttled("ledger read throttled") {
            return Err(LedgerError::Unavailable("throttled (simulated)".into()));
        }
        self.inner.entries_for(request).await
    }

    async fn balance(&self, account: &AccountId) -> Result<Balance, LedgerError> {
        yield_now().await;
        self.inner.balance(account).await
    }

    async fn shards(&self, account: &AccountId) -> Result<Vec<Balance>, LedgerError> {
        yield_now().await;
        self.inner.shards(account).await
    }
}

/// Window runs and credits with faults.
pub struct FaultyWindows<W> {
    pub inner: std::sync::Arc<W>,
    pub faults: std::sync::Arc<Faults>,
}

impl<W> FaultyWindows<W> {
    async fn write<T>(
        &self,
        site: (&'static str, &'static str),
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.faults.boundary(site.0).await;
        if self.faults.throttled("window write throttled") {
            return Err(throttle());
        }
        let written = write.await;
        self.faults.boundary(site.1).await;
        written
    }
}

#[async_trait]
impl<W: WindowStore> WindowStore for FaultyWindows<W> {
    async fn claim(&self, run: &WindowRun) -> Result<Claim, StoreError> {
        self.write(
            ("before window claim", "after window claim"),
            self.inner.claim(run),
        )
        .await
    }

    async fn run(&self, window: &WindowId) -> Result<Option<WindowRun>, StoreError> {
        yield_now().await;
        self.inner.run(window).await
    }

    async fn save_run(&self, run: &WindowRun) -> Result<u64, StoreError> {
        self.write(
            ("before window run save", "after window run save"),
            self.inner.save_run(run),
        )
        .await
    }

    async fn create_credit(&self, credit: &WindowCredit) -> Result<CreditCreated, StoreError> {
        self.write(
            ("before window credit create", "after window credit create"),
            self.inner.create_credit(credit),
        )
        .await
    }

    async fn credit(&self, id: &CreditId) -> Result<Option<WindowCredit>, StoreError> {
        yield_now().await;
        if self.faults.throttled("window read throttled") {
            return Err(throttle());
        }
        self.inner.credit(id).await
    }

    async fn save_credit(&self, credit: &WindowCredit) -> Result<u64, StoreError> {
        self.write(
            ("before window credit save", "after window credit save"),
            self.inner.save_credit(credit),
        )
        .await
    }

    async fn settled(&self, window: &WindowId) -> Result<RunCounts, StoreError> {
        yield_now().await;
        self.inner.settled(window).await
    }
}

#[async_trait]
impl<W: UnsettledIndex> UnsettledIndex for FaultyWindows<W> {
    async fn unsettled(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        yield_now().await;
        self.inner.unsettled(before, limit).await
    }
}

/// Windows armed by the handlers, which the simulator fires.
#[derive(Default)]
pub struct SimSchedules {
    pub armed: Mutex<BTreeSet<WindowId>>,
}

#[async_trait]
impl pointsflow_core::ports::WindowSchedules for SimSchedules {
    async fn arm(&self, window: &WindowId) -> Result<(), StoreError> {
        yield_now().await;
        if let Ok(mut a) = self.armed.lock() {
            a.insert(window.clone());
        }
        Ok(())
    }
}
