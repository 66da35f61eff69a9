//! Scheduled windows in dispatch: a window's schedule fires
//! ([`Dispatch::window_closed`]), its run is claimed once and planned a page
//! at a time through the dispatch queue ([`Dispatch::plan`]), and each
//! planned credit is sent and settled on its own message
//! ([`Dispatch::process_credit`]). No invocation holds a whole window.
//!
//! A request moves into a credit by its own conditional write (`scheduled`
//! -> `dispatching`, carrying the credit's id and reference), so it is in
//! at most one credit whatever races: a planner that resumes, two planners
//! of one window, or the next window's. For each page, the ids of its
//! credits are saved on the run first; each credit is made as a draft
//! listing the requests planning means to move, then the moves, then the
//! credit is finished with those that moved; then the run's cursor and
//! counters move past the page. A planner that stops part way leaves the
//! page's credits on the run, and the next one finishes them (their
//! requests have left the scheduled index) before it reads the page again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use pointsflow_core::delivery::{DeliveryState, Outcome};
use pointsflow_core::ledger::Entry;
use pointsflow_core::partner::CreditInstruction;
use pointsflow_core::ports::{QueueError, StoreError};
use pointsflow_core::program::TransferMode;
use pointsflow_core::reason::PersonName;
use pointsflow_core::request::{PointsRequest, Status, StatusKind};
use pointsflow_core::values::{PartnerId, Points, ProgramId, RequestId};
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, CreditState, MAX_REQUESTS_PER_CREDIT, RunState, ScheduledEntry,
    WindowCredit, WindowId, WindowRun, WindowWork, credit_state_after,
};
use pointsflow_runtime::{RecordError, load_request};
use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::{Dispatch, Resolve, retry};

/// Scheduled requests read per page while planning.
pub const PLAN_PAGE: usize = 1_000;

/// Requests of one credit moved or settled at once.
const CONCURRENCY: usize = 16;

/// Time a planning page may take, at most: a planner stops and hands on
/// (a `plan` message to itself) when less than this is left.
const PAGE_BUDGET: Duration = Duration::from_secs(10);

/// What a window's schedule sends dispatch (EventBridge Scheduler's input,
/// `scheduled_time` filled in by the scheduler; the local stack's scheduler
/// sends the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowClosed {
    pub program: ProgramId,
    pub scheduled_time: DateTime<Utc>,
}

/// A scheduled event for dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduledEvent {
    WindowClosed(WindowClosed),
    /// Look up again every credit unsettled for too long (see [`crate::resolve`]).
    ResolveUnsettled {},
}

/// Why a window could not be started: the scheduler retries the invocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("program {0} is not configured")]
    UnknownProgram(ProgramId),
    #[error("window store: {0}")]
    Store(#[from] StoreError),
    #[error("the dispatch queue: {0}")]
    Queue(#[from] QueueError),
}

fn store_retry(e: StoreError) -> RecordError {
    match e {
        StoreError::Conflict { .. } => {
            RecordError::Retry("changed by another invocation; looking again".into())
        }
        StoreError::Malformed(_) => RecordError::Poison(format!("window store: {e}")),
        other => RecordError::Retry(format!("window store: {other}")),
    }
}

fn queue_retry(e: QueueError) -> RecordError {
    RecordError::Retry(format!("the dispatch queue: {e}"))
}

/// The credits one member's scheduled requests go in: those of this window
/// or an earlier one (later ones wait for their own window), one credit per
/// destination with consolidation (split past [`MAX_REQUESTS_PER_CREDIT`]),
/// one per request without.
fn credits_of<'a>(
    run: &WindowRun,
    entries: &'a [ScheduledEntry],
) -> Vec<(CreditId, Vec<&'a ScheduledEntry>)> {
    let due = entries
        .iter()
        .filter(|e| e.window.closes_at() <= run.window.closes_at());
    if !run.consolidate {
        return due
            .map(|e| (CreditId::single(&run.window, &e.id), vec![e]))
            .collect();
    }
    let mut by_destination: BTreeMap<(&PartnerId, &str), Vec<&ScheduledEntry>> = BTreeMap::new();
    for e in due {
        by_destination
            .entry((&e.partner, e.partner_program.as_str()))
            .or_default()
            .push(e);
    }
    let mut credits = Vec::new();
    for ((partner, _), entries) in by_destination {
        for (i, chunk) in entries.chunks(MAX_REQUESTS_PER_CREDIT).enumerate() {
            let part = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let id = CreditId::consolidated(&run.window, partner, &chunk[0].member, part);
            credits.push((id, chunk.to_vec()));
        }
    }
    credits
}

impl Dispatch {
    /// A window's schedule fired: claims the window's run and queues its
    /// planning. A window whose run is still planning gets its planning
    /// queued again, whatever the reason it fired again (the schedule
    /// delivers at least once, and a retry after an invocation that
    /// stopped between its claim and its message must not find it
    /// claimed and done): planning the same window twice is harmless.
    /// A planned window is left alone.
    pub async fn window_closed(&self, event: &WindowClosed) -> Result<WindowRun, WindowError> {
        pointsflow_usecases::catalog::refresh(self.ports.programs.as_ref()).await;
        let program = self
            .ports
            .programs
            .program(&event.program)
            .ok_or_else(|| WindowError::UnknownProgram(event.program.clone()))?;
        // A program switched to real time still sends what it scheduled.
        let consolidate = match &program.transfer {
            TransferMode::Scheduled { consolidate, .. } => *consolidate,
            TransferMode::Realtime => false,
        };
        let window = WindowId::new(&program.id, event.scheduled_time);
        let now = self.ports.clock.now();
        let run = WindowRun::new(window.clone(), consolidate, now);
        match self.ports.windows.claim(&run).await? {
            Claim::Started(run) => {
                tracing::info!(%window, "window closed; planning it");
                self.queue_planning(&window).await?;
                Ok(run)
            }
            Claim::Existing(run) if run.state == RunState::Planning => {
                tracing::info!(%window, "window fired again while planning; its planning is queued again");
                self.queue_planning(&window).await?;
                Ok(run)
            }
            Claim::Existing(run) => {
                tracing::info!(%window, state = ?run.state, "window already planned; nothing to do");
                Ok(run)
            }
        }
    }

    async fn queue_planning(&self, window: &WindowId) -> Result<(), QueueError> {
        self.ports
            .work
            .publish_work(&[WindowWork::Plan {
                window: window.clone(),
            }])
            .await
    }

    /// Plans a window, from where its run stopped, until done or until the
    /// invocation runs short; then queues its own continuation.
    #[tracing::instrument(name = "plan", skip_all, fields(window = %window))]
    pub async fn plan(
        &self,
        window: &WindowId,
        deadline: Option<Instant>,
    ) -> Result<(), RecordError> {
        let Some(mut run) = self.ports.windows.run(window).await.map_err(store_retry)? else {
            return Err(RecordError::Poison(format!("window {window} has no run")));
        };
        if run.state == RunState::Planned {
            return Ok(());
        }
        // Taking the turn: a planner racing this one conflicts on its next save.
        run.planning_runs += 1;
        run.progress_at = self.ports.clock.now();
        run.version = self
            .ports
            .windows
            .save_run(&run)
            .await
            .map_err(store_retry)?;
        // A planner that stopped part way through a page: its credits first.
        let finished = self.finish_in_progress(&mut run).await?;
        let mut after = run.cursor.clone();
        let mut carry: Vec<ScheduledEntry> = Vec::new();
        loop {
            let page = self
                .ports
                .scheduled
                .scheduled(window.program(), after.as_ref(), PLAN_PAGE)
                .await
                .map_err(store_retry)?;
            if let Some(last) = page.entries.last() {
                after = Some(last.cursor());
            }
            // Whole members only: the last one may go on in the next page.
            let mut members: Vec<Vec<ScheduledEntry>> = Vec::new();
            for entry in page.entries {
                if carry.first().is_some_and(|c| c.member != entry.member) {
                    members.push(std::mem::take(&mut carry));
                }
                carry.push(entry);
            }
            if !page.more && !carry.is_empty() {
                members.push(std::mem::take(&mut carry));
            }
            if members.is_empty() && page.more {
                continue;
            }
            let credits: Vec<(CreditId, Vec<&ScheduledEntry>)> = members
                .iter()
                .flat_map(|m| credits_of(&run, m))
                .filter(|(id, _)| !finished.contains(id))
                .collect();
            // The page's credits are on the run before any request moves.
            run.in_progress = credits.iter().map(|(id, _)| id.clone()).collect();
            if !run.in_progress.is_empty() {
                run.version = self
                    .ports
                    .windows
                    .save_run(&run)
                    .await
                    .map_err(store_retry)?;
            }
            let mut planned = Vec::new();
            for (id, entries) in credits {
                planned.push(self.plan_credit(&run, id, &entries).await?);
            }
            self.count_and_queue(&mut run, &planned).await?;
            run.in_progress.clear();
            if let Some(last) = members.last().and_then(|m| m.last()) {
                run.cursor = Some(last.cursor());
            }
            let now = self.ports.clock.now();
            run.progress_at = now;
            if !page.more {
                run.state = RunState::Planned;
                run.planned_at = Some(now);
            }
            run.version = self
                .ports
                .windows
                .save_run(&run)
                .await
                .map_err(store_retry)?;
            if !page.more {
                tracing::info!(
                    requests = run.counts.requests,
                    credits = run.counts.credits,
                    "window planned"
                );
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() + PAGE_BUDGET > d) {
                self.queue_planning(window).await.map_err(queue_retry)?;
                tracing::info!(
                    planned = run.counts.requests,
                    "planning goes on in a new invocation"
                );
                return Ok(());
            }
        }
    }

    /// Finishes the credits a stopped planner left on the run, counts and
    /// queues them, and saves the run; returns the ids of those it found,
    /// which the page read again must not plan twice.
    async fn finish_in_progress(
        &self,
        run: &mut WindowRun,
    ) -> Result<std::collections::HashSet<CreditId>, RecordError> {
        let ids = std::mem::take(&mut run.in_progress);
        if ids.is_empty() {
            return Ok(Default::default());
        }
        tracing::warn!(
            credits = ids.len(),
            "resuming a page a stopped planner left"
        );
        let mut finished = Vec::new();
        for id in &ids {
            // A credit never made leaves its requests in the index: the page
            // read again plans them.
            if let Some(credit) = self.ports.windows.credit(id).await.map_err(store_retry)? {
                finished.push(self.finish_credit(credit).await?);
            }
        }
        self.count_and_queue(run, &finished).await?;
        run.version = self
            .ports
            .windows
            .save_run(run)
            .await
            .map_err(store_retry)?;
        Ok(finished.into_iter().map(|c| c.id).collect())
    }

    /// Adds planned credits to the run's counters (not yet saved) and queues
    /// them for sending.
    async fn count_and_queue(
        &self,
        run: &mut WindowRun,
        credits: &[WindowCredit],
    ) -> Result<(), RecordError> {
        let sent: Vec<&WindowCredit> = credits
            .iter()
            .filter(|c| c.state != CreditState::Empty)
            .collect();
        let members: std::collections::BTreeSet<&pointsflow_core::values::MemberNumber> =
            sent.iter().map(|c| &c.member).collect();
        run.counts.members += members.len() as u64;
        for credit in &sent {
            run.counts.credits += 1;
            run.counts.requests += credit.requests.len() as u64;
            run.counts.points += credit.points.get();
        }
        let work: Vec<WindowWork> = sent
            .iter()
            .map(|c| WindowWork::Credit {
                credit: c.id.clone(),
            })
            .collect();
        if !work.is_empty() {
            self.ports
                .work
                .publish_work(&work)
                .await
                .map_err(queue_retry)?;
        }
        Ok(())
    }

    /// Makes (or finishes) one credit: the draft listing the requests it
    /// means to carry, then [`Self::finish_credit`].
    async fn plan_credit(
        &self,
        run: &WindowRun,
        id: CreditId,
        entries: &[&ScheduledEntry],
    ) -> Result<WindowCredit, RecordError> {
        let first = entries[0];
        let points = entries
            .iter()
            .try_fold(Points::ZERO, |sum, e| sum.checked_add(e.points))
            .ok_or_else(|| RecordError::Poison(format!("credit {id}: points overflow")))?;
        let draft = WindowCredit {
            id: id.clone(),
            window: run.window.clone(),
            partner: first.partner.clone(),
            partner_program: first.partner_program.clone(),
            member: first.member.clone(),
            member_name: None,
            reference: self.ports.ids.partner_reference(),
            points,
            requests: entries.iter().map(|e| e.id.clone()).collect(),
            state: CreditState::Planning,
            attempts: 0,
            attempt_at: None,
            partner_transaction: None,
            planned_at: self.ports.clock.now(),
            unsettled_since: None,
            settled_at: None,
            version: 0,
        };
        let credit = match self
            .ports
            .windows
            .create_credit(&draft)
            .await
            .map_err(store_retry)?
        {
            CreditCreated::New => draft,
            CreditCreated::Existing(existing) => *existing,
        };
        self.finish_credit(credit).await
    }

    /// Moves a draft's requests into it and finishes it with those that
    /// moved (a credit finished already is returned as it is).
    async fn finish_credit(&self, mut credit: WindowCredit) -> Result<WindowCredit, RecordError> {
        if credit.state != CreditState::Planning {
            return Ok(credit);
        }
        let moved: Vec<Option<(RequestId, Points, Option<PersonName>)>> =
            futures::stream::iter(credit.requests.clone())
                .map(|request| {
                    let credit = &credit;
                    async move { self.move_into(credit, &request).await }
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
        let moved: Vec<(RequestId, Points, Option<PersonName>)> =
            moved.into_iter().flatten().collect();
        credit.member_name = moved.iter().find_map(|(_, _, n)| n.clone());
        credit.points = moved
            .iter()
            .try_fold(Points::ZERO, |sum, (_, p, _)| sum.checked_add(*p))
            .ok_or_else(|| RecordError::Poison(format!("credit {}: points overflow", credit.id)))?;
        credit.requests = moved.into_iter().map(|(id, _, _)| id).collect();
        credit.state = if credit.requests.is_empty() {
            CreditState::Empty
        } else {
            CreditState::Planned
        };
        credit.version = self
            .ports
            .windows
            .save_credit(&credit)
            .await
            .map_err(store_retry)?;
        Ok(credit)
    }

    /// Moves a scheduled request into `credit`; `None` when it is in another
    /// credit or no longer scheduled.
    async fn move_into(
        &self,
        credit: &WindowCredit,
        id: &RequestId,
    ) -> Result<Option<(RequestId, Points, Option<PersonName>)>, RecordError> {
        for _ in 0..3 {
            let mut request = load_request(self.ports.get.as_ref(), id).await?;
            let points = request.points.unwrap_or_default();
            if request.credit.as_ref() == Some(&credit.id) {
                return Ok(Some((request.id, points, request.member_name)));
            }
            if request.state() != StatusKind::Scheduled || request.credit.is_some() {
                return Ok(None);
            }
            request.partner_reference = Some(credit.reference.clone());
            request.credit = Some(credit.id.clone());
            request
                .transition(
                    Status::Dispatching,
                    self.ports.clock.now(),
                    format!(
                        "window {} closed: sent in credit {} (reference {})",
                        credit.window, credit.id, credit.reference
                    ),
                )
                .map_err(retry)?;
            match self.ports.update.update(&request).await {
                Ok(_) => return Ok(Some((request.id, points, request.member_name))),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RecordError::Retry(format!(
            "request {id} kept changing while planned"
        )))
    }

    /// Sends one window credit, or settles its requests once the partner
    /// has answered for good.
    #[tracing::instrument(name = "credit", skip_all, fields(credit = %id))]
    pub async fn process_credit(
        &self,
        id: &CreditId,
        deadline: Option<Instant>,
    ) -> Result<(), RecordError> {
        let Some(mut credit) = self.ports.windows.credit(id).await.map_err(store_retry)? else {
            return Err(RecordError::Retry("credit not found".into()));
        };
        if credit.state == CreditState::Planning {
            // Found unsettled by the resolver (or reached through one of its
            // requests): its planner stopped part way minutes ago, so it is
            // finished here.
            credit = self.finish_credit(credit).await?;
        }
        let Some(state) = credit.state.delivery_state() else {
            // Empty: every request it was made for went in another credit.
            return Ok(());
        };
        self.deliver(CreditDelivery { credit, state }, deadline)
            .await
    }

    /// Gives every request of a settled credit its final state and resolves
    /// its reservation; requests already settled are checked against the ledger.
    async fn settle_requests(&self, credit: &WindowCredit) -> Result<(), RecordError> {
        futures::stream::iter(credit.requests.clone())
            .map(|id| async move { self.settle_request(credit, &id).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn settle_request(
        &self,
        credit: &WindowCredit,
        id: &RequestId,
    ) -> Result<(), RecordError> {
        let mut request: PointsRequest = load_request(self.ports.get.as_ref(), id).await?;
        if request.credit.as_ref() != Some(&credit.id) {
            if matches!(credit.state, CreditState::Failed { .. }) && request.round > 0 {
                // An operator retried it after this credit failed: it has
                // gone on in a new round, and this credit has nothing left
                // to settle for it.
                tracing::debug!(request = %id, credit = %credit.id, "retried since this credit failed; nothing to settle");
                return Ok(());
            }
            return Err(RecordError::Poison(format!(
                "request {id} is listed in credit {} but not in it",
                credit.id
            )));
        }
        let (resolve, to, detail): (Resolve, Status, String) = match &credit.state {
            CreditState::Credited { transaction } => {
                request.partner_transaction = Some(transaction.clone());
                (
                    Entry::post,
                    Status::Credited,
                    format!(
                        "partner credited {} points to member {} in credit {} of {} request(s) (transaction {transaction})",
                        credit.points,
                        credit.member,
                        credit.id,
                        credit.requests.len()
                    ),
                )
            }
            CreditState::Failed { reason } => (
                Entry::void,
                Status::Failed {
                    reason: reason.clone(),
                },
                format!(
                    "{}; credit {} refused, reservation voided, budget released",
                    reason.message, credit.id
                ),
            ),
            other => {
                return Err(RecordError::Poison(format!(
                    "credit {} is not settled ({other:?})",
                    credit.id
                )));
            }
        };
        match request.state() {
            // Settled already (a reversed one was credited first): a
            // duplicate delivery, or a crash before the ledger write.
            StatusKind::Credited | StatusKind::Failed | StatusKind::Reversed => {
                self.ensure_resolved(&request, resolve).await
            }
            StatusKind::Dispatching | StatusKind::Unknown | StatusKind::PartnerPending => {
                self.settle(request, resolve, to, detail).await
            }
            other => Err(RecordError::Poison(format!(
                "request {id} in credit {} is {other}",
                credit.id
            ))),
        }
    }
}

/// A window credit's delivery: the credit carries the state, and its
/// requests follow it once it settles.
struct CreditDelivery {
    credit: WindowCredit,
    state: DeliveryState,
}

#[async_trait]
impl Delivery for CreditDelivery {
    fn state(&self) -> DeliveryState {
        self.state.clone()
    }

    fn attempt_at(&self) -> Option<DateTime<Utc>> {
        self.credit.attempt_at
    }

    fn partner(&self) -> &PartnerId {
        &self.credit.partner
    }

    fn instruction(&self) -> Result<CreditInstruction, RecordError> {
        let credit = &self.credit;
        Ok(CreditInstruction {
            reference: credit.reference.clone(),
            member: credit.member.clone(),
            member_name: credit.member_name.clone(),
            points: credit.points,
            partner_program: credit.partner_program.clone(),
            timeout: None,
        })
    }

    fn reference_fixed(&self) -> bool {
        true
    }

    async fn count_attempt(&mut self, dispatch: &Dispatch, claim: bool) -> Result<(), RecordError> {
        let credit = &mut self.credit;
        credit.attempts = credit.attempts.saturating_add(1);
        credit.attempt_at = Some(dispatch.ports.clock.now());
        if self.state == DeliveryState::Ready {
            credit.state = CreditState::Dispatching;
        }
        if !claim {
            return Ok(());
        }
        credit.version = dispatch
            .ports
            .windows
            .save_credit(credit)
            .await
            .map_err(store_retry)?;
        Ok(())
    }

    async fn record(self, dispatch: &Dispatch, outcome: Outcome) -> Result<(), RecordError> {
        let mut credit = self.credit;
        let now = dispatch.ports.clock.now();
        // The call is over: whatever is saved next says how it ended.
        credit.attempt_at = dispatch.attempt_after(&credit.partner, &outcome, now);
        let Some(next) = credit_state_after(&outcome) else {
            return Ok(());
        };
        match &outcome {
            Outcome::Credited { transaction } => {
                credit.partner_transaction = Some(transaction.clone());
            }
            Outcome::Pending {
                transaction: Some(t),
            } => credit.partner_transaction = Some(t.clone()),
            Outcome::Unknown { detail } => {
                tracing::warn!(reference = %credit.reference, %detail, "partner outcome unknown");
            }
            _ => {}
        }
        let settled = next.is_settled();
        credit.state = next;
        if settled {
            credit.unsettled_since = None;
            credit.settled_at = Some(now);
        } else {
            credit.unsettled_since.get_or_insert(now);
        }
        credit.version = dispatch
            .ports
            .windows
            .save_credit(&credit)
            .await
            .map_err(store_retry)?;
        if settled {
            dispatch.settle_requests(&credit).await?;
        }
        Ok(())
    }

    async fn settled(self, dispatch: &Dispatch) -> Result<(), RecordError> {
        dispatch.settle_requests(&self.credit).await
    }
}
