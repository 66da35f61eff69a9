//! The eligibility function: decides whether a received request earns points,
//! and if so reserves them, budget and cap together in one ledger
//! transaction, before handing the request to dispatch.
//!
//! Checks run in this order, the first refusal deciding the reason:
//! program known, then the program's rules ([`Program::evaluate`]), recipient
//! enrolled, the approval threshold (above it the request waits in
//! `awaiting_approval` until an operator approves it, and comes back here),
//! then budget and the recipient's daily and monthly caps (atomically, in
//! the program's time zone).
//!
//! The reservation is written before the request's state, so a retry after
//! a crash between the two finds the reservation and finishes that decision
//! instead of deciding again; and a rejection that raced a duplicate
//! delivery's reservation releases it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use pointsflow_core::enrollment::{MemberLink, MemberValidation};
use pointsflow_core::ledger::{AccountId, Entry, EntryKind, LedgerError};
use pointsflow_core::partner::{MemberCheck, MemberCheckOutcome};
use pointsflow_core::ports::WindowSchedules;
use pointsflow_core::ports::{
    Clock, Enrollments, IdSource, LedgerRead, LedgerWrite, PartnerConnector, PipelineMessage,
    ProgramCatalog, Publish, RequestGet, RequestUpdate, WaitingRequests,
};
use pointsflow_core::program::{CapSpan, Evaluated, OnUndo, Program, ProgramState, WhenPaused};
use pointsflow_core::reason::{ClawbackFailure, ReasonCode};
use pointsflow_core::reason::{PersonName, Reason};
use pointsflow_core::request::{PointsRequest, Status, StatusKind};
use pointsflow_core::reversal::ReversalError;
use pointsflow_core::values::{MemberNumber, PartnerId, Points};
use pointsflow_core::window::WindowId;
use pointsflow_runtime::{
    RecordError, SqsHandler, load_request, masking, process_batch_forwarding,
};
use pointsflow_usecases::reversal::{ReverseError, ReversePorts, reverse};

#[derive(Clone)]
pub struct EligibilityPorts {
    pub get: Arc<dyn RequestGet>,
    /// The partners, to validate a member before the first reservation.
    pub partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    pub update: Arc<dyn RequestUpdate>,
    pub ledger: Arc<dyn LedgerWrite>,
    pub ledger_read: Arc<dyn LedgerRead>,
    pub programs: Arc<dyn ProgramCatalog>,
    pub enrollments: Arc<dyn Enrollments>,
    pub dispatch_queue: Arc<dyn Publish>,
    /// The requests waiting for enrollment, swept for expiry and links.
    pub waiting: Arc<dyn WaitingRequests>,
    /// Arms the schedule of each window a request is held for.
    pub schedules: Arc<dyn WindowSchedules>,
    pub clock: Arc<dyn Clock>,
    /// The partner reference a real-time reservation fixes.
    pub ids: Arc<dyn IdSource>,
}

/// How often an instance looks again at the requests waiting for enrollment.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Waiting requests decided at once, and queued together, by a sweep.
pub const SWEEP_CHUNK: usize = 10;
/// Time a sweep leaves unused at the end of an invocation (at most a
/// quarter of what is left): the sweep stops starting chunks then.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Eligibility {
    ports: EligibilityPorts,
    sweep_every: Duration,
    last_sweep: Arc<std::sync::Mutex<Option<Instant>>>,
    /// The windows this instance has armed (each is armed once per instance).
    armed: Arc<std::sync::Mutex<std::collections::HashSet<WindowId>>>,
}

impl std::fmt::Debug for Eligibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eligibility").finish_non_exhaustive()
    }
}

/// A request's reservation in the ledger.
enum Reservation {
    /// Pending: the points are held.
    Live(Box<Entry>),
    /// Posted or voided already.
    Resolved,
}

/// What the rules decided for one request.
enum Decision {
    Reserve(Box<PointsRequest>),
    /// Waits (for an operator, or for enrollment), nothing reserved.
    Wait(Box<PointsRequest>),
    /// Still waiting as it was: nothing to change.
    Unchanged,
    Reject(Reason),
}

/// The request as reserved: points, member and destination fixed; for a
/// scheduled program, held for its window (the transfer mode in force at
/// this decision is the request's for good); for a real-time one, its
/// partner reference fixed too, in the same write as the decision, so
/// dispatch calls a partner that recognises repeated references without
/// writing the request first (a window credit carries its own reference).
fn reserved(
    mut request: PointsRequest,
    points: Points,
    (member, member_name): (&MemberNumber, Option<PersonName>),
    program: &Program,
    (now, ids): (DateTime<Utc>, &dyn IdSource),
    note: &str,
) -> Result<Decision, RecordError> {
    let window = program
        .window_after(now)
        .map_err(|e| RecordError::Retry(format!("program {}: {e}", program.id)))?;
    request.points = Some(points);
    request.member = Some(member.clone());
    request.member_name = member_name;
    request.destination = Some(program.destination.clone());
    if window.is_none() {
        request
            .partner_reference
            .get_or_insert_with(|| ids.partner_reference());
    }
    request
        .transition(
            Status::Reserved,
            now,
            format!(
                "{points} points reserved from the {} budget for member {member}{note}",
                program.id
            ),
        )
        .map_err(|e| RecordError::Retry(e.to_string()))?;
    if let Some(window) = window {
        let closes = window
            .closes_at
            .with_timezone(&program.time_zone)
            .format("%Y-%m-%d %H:%M %Z");
        request
            .transition(
                Status::Scheduled {
                    window: window.id.clone(),
                },
                now,
                format!("held for transfer window {} (closes {closes})", window.id),
            )
            .map_err(|e| RecordError::Retry(e.to_string()))?;
    }
    Ok(Decision::Reserve(Box::new(request)))
}

impl SqsHandler for Eligibility {
    async fn handle_batch(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        self.handle(event).await
    }
}

impl Eligibility {
    pub fn new(ports: EligibilityPorts) -> Self {
        Self {
            ports,
            sweep_every: SWEEP_EVERY,
            last_sweep: Arc::new(std::sync::Mutex::new(None)),
            armed: Arc::default(),
        }
    }

    /// Another interval between sweeps of the waiting requests.
    pub fn with_sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    /// Decides again every request waiting for enrollment in a program that
    /// waits, and every request held by a program no longer paused: one
    /// whose release was missed goes on; one past its enrollment deadline
    /// is rejected (`enrollment_timed_out`). Returns how many were looked at.
    pub async fn sweep_waiting(&self) -> usize {
        self.sweep_waiting_until(None).await
    }

    /// [`Eligibility::sweep_waiting`], stopping at `deadline`: requests are
    /// decided [`SWEEP_CHUNK`] at a time, and each chunk's reserved
    /// requests are queued for dispatch before the next chunk starts, so a
    /// sweep cut short leaves every request it reserved queued (or, if the
    /// send failed, indexed as in progress, where the resolver finds it).
    /// What it did not reach still waits, indexed, for the next sweep.
    pub async fn sweep_waiting_until(&self, deadline: Option<std::time::Instant>) -> usize {
        let mut looked = 0;
        for program in self.ports.programs.programs() {
            // Waiting for enrollment: released or timed out. Held: released
            // once the program is no longer paused (a missed release).
            let mut states = Vec::new();
            if program.wait_for_enrollment_hours.is_some() {
                states.push(StatusKind::AwaitingEnrollment);
            }
            if program.state != ProgramState::Paused {
                states.push(StatusKind::Held);
            }
            let mut ids = Vec::new();
            for state in states {
                match self.ports.waiting.waiting(&program.id, state, None).await {
                    Ok(found) => ids.extend(found),
                    Err(e) => {
                        tracing::warn!(program = %program.id, %state, error = %e, "could not list the waiting requests");
                    }
                }
            }
            for chunk in ids.chunks(SWEEP_CHUNK) {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    tracing::info!(
                        looked,
                        "sweep stopped at the invocation's deadline; the next sweep goes on"
                    );
                    return looked;
                }
                looked += chunk.len();
                let decided = futures::future::join_all(chunk.iter().map(|request_id| {
                    self.process(PipelineMessage {
                        request_id: request_id.clone(),
                    })
                }))
                .await;
                let mut forward = Vec::new();
                for outcome in decided {
                    match outcome {
                        Ok(Some(next)) => forward.push(next),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = ?e, "a waiting request could not be decided again; the next sweep retries")
                        }
                    }
                }
                if !forward.is_empty()
                    && let Err(e) = self.ports.dispatch_queue.publish(&forward).await
                {
                    // Reserved but not queued: the resolver finds it (a
                    // reserved request is indexed until it moves on).
                    tracing::warn!(error = %e, "could not queue the released requests for dispatch");
                }
            }
        }
        looked
    }

    /// Whether this instance's sweep is due (and marks it done).
    fn sweep_due(&self) -> bool {
        let Ok(mut last) = self.last_sweep.lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < self.sweep_every) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// The Lambda handler for the eligibility queue.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        pointsflow_usecases::catalog::refresh(self.ports.programs.as_ref()).await;
        let deadline = pointsflow_runtime::deadline(&event.context, SWEEP_MARGIN);
        // The batch first: its messages never wait on the sweep.
        let response = process_batch_forwarding(
            "eligibility",
            event.payload,
            self.ports.dispatch_queue.as_ref(),
            |m| self.process(m),
        )
        .await;
        if self.sweep_due() {
            self.sweep_waiting_until(deadline).await;
        }
        Ok(response)
    }

    /// Decides one request; returns the message for dispatch when it is reserved.
    #[tracing::instrument(name = "eligibility", skip_all, fields(request_id = %message.request_id, program, state, source_record))]
    async fn process(
        &self,
        message: PipelineMessage,
    ) -> Result<Option<PipelineMessage>, RecordError> {
        let request = load_request(self.ports.get.as_ref(), &message.request_id).await?;
        if request.undoes.is_some() {
            return self.clawback(request).await.map(|()| None);
        }
        match request.state() {
            StatusKind::Received => {}
            // Released (a link, the program resuming), or swept: decide
            // again (it may still wait).
            StatusKind::AwaitingEnrollment | StatusKind::Held => {}
            // An operator approved it: reserve now.
            StatusKind::AwaitingApproval if request.is_approved() => {}
            // Reserved but not yet queued for dispatch (a crash, or a failed
            // send): queue it again; dispatch ignores duplicates.
            StatusKind::Reserved => return Ok(Some(to_dispatch(&request))),
            StatusKind::Rejected => return self.release_orphan(&request).await.map(|()| None),
            other => {
                tracing::debug!(state = %other, "already decided; duplicate delivery ignored");
                return Ok(None);
            }
        }
        let decision = match self.reservation(&request).await? {
            Some(Reservation::Live(entry)) => self.resume(request, &entry).await?,
            Some(Reservation::Resolved) => {
                return Err(RecordError::Poison(
                    "the request is received but its reservation is already resolved".into(),
                ));
            }
            None => self.decide(request).await?,
        };
        match decision {
            Decision::Reserve(reserved) => {
                // Its window is armed before it is held for it.
                if let Status::Scheduled { window } = &reserved.status {
                    self.arm(window).await?;
                }
                self.ports.update.update(&reserved).await?;
                tracing::info!(
                    points = reserved.points.map(|p| p.get()).unwrap_or(0),
                    member = reserved.member.as_ref().map(|m| m.as_str()).unwrap_or(""),
                    state = %reserved.state(),
                    "reserved"
                );
                // Held for a window: dispatched when the window closes.
                if reserved.state() == StatusKind::Scheduled {
                    return Ok(None);
                }
                Ok(Some(to_dispatch(&reserved)))
            }
            Decision::Wait(waiting) => {
                self.ports.update.update(&waiting).await?;
                tracing::info!(state = %waiting.state(), "waiting");
                Ok(None)
            }
            Decision::Unchanged => Ok(None),
            Decision::Reject(reason) => self.reject(message, reason).await.map(|()| None),
        }
    }

    /// Reports a budget that has fallen below the program's
    /// `budget_alert_below` (a warning and the metric `BudgetLow`). A
    /// failed read only loses the report: the reservation stands.
    async fn check_budget(&self, program: &Program) {
        let Some(below) = program.budget_alert_below else {
            return;
        };
        match self
            .ports
            .ledger_read
            .balance(&AccountId::budget(&program.id))
            .await
        {
            Ok(balance) if balance.available() < below.get() => {
                tracing::warn!(program = %program.id, available = balance.available(), alert_below = below.get(), "budget low");
                pointsflow_runtime::metrics::put(
                    ("Program", program.id.as_str()),
                    &[
                        ("BudgetLow", 1.0, pointsflow_runtime::metrics::Unit::Count),
                        (
                            "BudgetAvailable",
                            balance.available() as f64,
                            pointsflow_runtime::metrics::Unit::None,
                        ),
                    ],
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not read the budget to check it"),
        }
    }

    /// Makes sure `window`'s schedule exists (once per window per instance).
    async fn arm(&self, window: &str) -> Result<(), RecordError> {
        let window = WindowId::parse(window).map_err(RecordError::Poison)?;
        let known = |w: &WindowId| self.armed.lock().map(|a| a.contains(w)).unwrap_or(false);
        if known(&window) {
            return Ok(());
        }
        self.ports
            .schedules
            .arm(&window)
            .await
            .map_err(|e| RecordError::Retry(format!("arming window {window}: {e}")))?;
        if let Ok(mut armed) = self.armed.lock() {
            if armed.len() >= 1_024 {
                armed.clear();
            }
            armed.insert(window);
        }
        Ok(())
    }

    async fn decide(&self, request: PointsRequest) -> Result<Decision, RecordError> {
        let Some(program) = self.ports.programs.program(&request.program) else {
            return Ok(Decision::Reject(Reason::new(
                ReasonCode::ProgramUnknown,
                format!("program {} is not configured", request.program),
            )));
        };
        let now = self.ports.clock.now();
        let holds =
            |p: &Program| p.state == ProgramState::Paused && p.when_paused == WhenPaused::Hold;
        let program = if holds(&program) && request.state() == StatusKind::Held {
            // Released because the program resumed: this copy of the
            // programs may not know yet.
            if let Err(e) = self.ports.programs.reload().await {
                tracing::warn!(error = %e, "could not reload the programs");
            }
            self.ports
                .programs
                .program(&request.program)
                .unwrap_or(program)
        } else {
            program
        };
        if holds(&program) {
            return held(request, &program, now);
        }
        let Evaluated {
            points,
            note: rule_note,
        } = match program.evaluate(&request) {
            Ok(e) => e,
            Err(reason) => return Ok(Decision::Reject(reason)),
        };
        let link = self
            .ports
            .enrollments
            .member_link(&program.id, &request.recipient.id)
            .await?;
        let Some(link) = link else {
            return unenrolled(request, &program, now);
        };
        let (link, fresh) = self.validated(link, &program, now).await?;
        // The first request to reach a changed link (it is validated
        // afresh) carries the change on its timeline.
        let changed = match (&link.changed, fresh) {
            (Some(change), true) => format!(
                "; the first since the member link changed from {} to {} ({} at {})",
                masking::member_number(change.from.as_str()),
                masking::member_number(link.member.as_str()),
                change.by,
                change.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            _ => String::new(),
        };
        if let Some(MemberValidation {
            valid: false,
            reason,
            ..
        }) = &link.validation
        {
            let why = reason
                .as_ref()
                .map(|r| format!("{} ({})", r.message, r.code))
                .unwrap_or_else(|| "no reason given".into());
            return Ok(Decision::Reject(Reason::new(
                ReasonCode::MemberInvalid,
                format!(
                    "partner {} does not accept member {} linked to recipient {}: {why}; link the recipient again with the right number and names",
                    program.destination.partner,
                    masking::member_number(link.member.as_str()),
                    request.recipient.id
                ),
            )));
        }

        if !request.is_approved()
            && let Some(reason) = program.needs_approval(points)
        {
            let mut waiting = request;
            waiting.points = Some(points);
            waiting.member = Some(link.member.clone());
            waiting.approvals_needed = program.approvals_needed(points);
            let detail = if waiting.approvals_needed > 1 {
                format!(
                    "{}; two different approvers needed{changed}",
                    reason.message
                )
            } else {
                format!("{}{changed}", reason.message)
            };
            waiting
                .transition(Status::AwaitingApproval { reason }, now, detail)
                .map_err(|e| RecordError::Retry(e.to_string()))?;
            return Ok(Decision::Wait(Box::new(waiting)));
        }

        // The cap periods follow the acceptance time, so every retry of this
        // decision writes the very same reservation.
        let caps = program.cap_charges(&request.recipient.id, request.received_at);
        let mut reservation = Entry::reserve(
            &request.id,
            AccountId::budget(&program.id),
            AccountId::member(&program.destination.partner, &link.member),
            points,
            caps,
            now,
        );
        // An operator's retry reserves anew, under its round's id.
        reservation.id = request.reservation_id();
        match self
            .ports
            .ledger
            .apply(std::slice::from_ref(&reservation))
            .await
        {
            Ok(_) => self.check_budget(&program).await,
            Err(LedgerError::InsufficientBudget { available, .. }) => {
                return Ok(Decision::Reject(Reason::new(
                    ReasonCode::BudgetExhausted,
                    format!(
                        "program {} has {available} points of budget left, {points} needed",
                        program.id
                    ),
                )));
            }
            Err(LedgerError::CapExceeded {
                key, limit, used, ..
            }) => {
                let (code, span) = match CapSpan::of(&key) {
                    CapSpan::Day => (ReasonCode::DailyCapReached, "day"),
                    CapSpan::Month => (ReasonCode::MonthlyCapReached, "month"),
                };
                return Ok(Decision::Reject(Reason::new(
                    code,
                    format!(
                        "recipient {} has {used} of {limit} points this {span} ({}, {}); {points} more would exceed the cap",
                        request.recipient.id,
                        key.period,
                        program.time_zone.name(),
                    ),
                )));
            }
            Err(e) => return Err(RecordError::Retry(format!("ledger: {e}"))),
        }
        let note = rule_note.map(|n| format!(" ({n})")).unwrap_or_default() + &changed;
        let name = PersonName {
            first_name: link.first_name.clone(),
            last_name: link.last_name.clone(),
        };
        reserved(
            request,
            points,
            (&link.member, Some(name)),
            &program,
            (now, self.ports.ids.as_ref()),
            &note,
        )
    }

    /// The link, validated with the partner if it never was (before the
    /// first reservation for it); the answer is kept on the link. `true`
    /// when it was validated now.
    async fn validated(
        &self,
        mut link: MemberLink,
        program: &Program,
        now: DateTime<Utc>,
    ) -> Result<(MemberLink, bool), RecordError> {
        if link.validation.is_some() {
            return Ok((link, false));
        }
        let partner = &program.destination.partner;
        let connector = self
            .ports
            .partners
            .get(partner)
            .ok_or_else(|| RecordError::Retry(format!("no connector for partner {partner}")))?;
        let outcome = connector
            .validate_member(&MemberCheck {
                member: link.member.clone(),
                first_name: link.first_name.clone(),
                last_name: link.last_name.clone(),
                partner_program: program.destination.partner_program.clone(),
                timeout: None,
            })
            .await;
        link.validation = Some(match outcome {
            MemberCheckOutcome::Valid => MemberValidation {
                valid: true,
                reason: None,
                at: now,
            },
            MemberCheckOutcome::Invalid(reason) => MemberValidation {
                valid: false,
                reason: Some(reason),
                at: now,
            },
            MemberCheckOutcome::Unknown { detail } => {
                return Err(RecordError::Retry(format!(
                    "member validation with partner {partner}: {detail}"
                )));
            }
        });
        if !self.ports.enrollments.record_validation(&link).await? {
            return Err(RecordError::Retry(
                "the recipient was linked again during the member validation".into(),
            ));
        }
        tracing::info!(member = %link.member, valid = link.validation.as_ref().is_some_and(|v| v.valid), "member validated with the partner");
        Ok((link, true))
    }

    /// A clawback: the source undid the event behind a request. Its
    /// points are taken back at once (`on_undo = "reverse"`) or after an
    /// operator approves (`"flag"`); the clawback itself earns nothing and
    /// ends `rejected` with what was done (`clawback_reversed`,
    /// `nothing_to_reverse`, `clawback_partner_refused`, or `declined`).
    async fn clawback(&self, mut request: PointsRequest) -> Result<(), RecordError> {
        let Some(original_id) = request.undoes.clone() else {
            return Ok(());
        };
        match request.state() {
            StatusKind::Received => {}
            StatusKind::AwaitingApproval if request.is_approved() => {}
            other => {
                tracing::debug!(state = %other, "clawback decided or waiting; duplicate delivery ignored");
                return Ok(());
            }
        }
        let now = self.ports.clock.now();
        let finish = |mut request: PointsRequest, code: ReasonCode, message: String| {
            let reason = Reason::new(code, message.clone());
            request
                .transition(Status::Rejected { reason }, now, message)
                .map(|()| request)
                .map_err(|e| RecordError::Retry(e.to_string()))
        };
        let original = self.ports.get.get(&original_id).await?;
        let Some(original) = original else {
            let done = finish(
                request,
                ReasonCode::NothingToReverse,
                format!("{original_id} does not exist"),
            )?;
            self.ports.update.update(&done).await?;
            return Ok(());
        };
        // One reversal per clawback, whatever the redeliveries.
        let reversal_id = format!("undo-{}", request.id.as_str().trim_start_matches("pr_"));
        // Recorded by an earlier delivery that stopped before settling it
        // (the partner or the ledger did not answer, a crash): finish it.
        let resumed = original.reversals.iter().any(|r| r.id == reversal_id);
        let left = original
            .credited_points()
            .saturating_sub(original.reversed_points());
        match original.state() {
            _ if resumed => {}
            StatusKind::Credited if left > 0 => {}
            state @ (StatusKind::Credited
            | StatusKind::Reversed
            | StatusKind::Rejected
            | StatusKind::Failed) => {
                let done = finish(
                    request,
                    ReasonCode::NothingToReverse,
                    format!(
                        "{original_id} is {state}: it has no credited points left to take back"
                    ),
                )?;
                self.ports.update.update(&done).await?;
                tracing::info!(undoes = %original_id, "clawback: nothing to take back");
                return Ok(());
            }
            state => {
                return Err(RecordError::Retry(format!(
                    "{original_id} is {state}: the clawback waits until it is settled"
                )));
            }
        }
        let on_undo = self
            .ports
            .programs
            .program(&request.program)
            .map(|p| p.on_undo)
            .unwrap_or_default();
        if on_undo == OnUndo::Flag && !request.is_approved() && !resumed {
            let reason = Reason::new(
                ReasonCode::ClawbackReview,
                format!(
                    "the source undid the event behind {original_id}: approve to take back its {left} points, decline to keep them"
                ),
            );
            let detail = reason.message.clone();
            request
                .transition(Status::AwaitingApproval { reason }, now, detail)
                .map_err(|e| RecordError::Retry(e.to_string()))?;
            self.ports.update.update(&request).await?;
            tracing::info!(undoes = %original_id, points = left, "clawback waits for an operator");
            return Ok(());
        }
        let ports = ReversePorts {
            get: self.ports.get.as_ref(),
            update: self.ports.update.as_ref(),
            ledger_read: self.ports.ledger_read.as_ref(),
            ledger_write: self.ports.ledger.as_ref(),
            programs: self.ports.programs.as_ref(),
            partners: &self.ports.partners,
            clock: self.ports.clock.as_ref(),
        };
        let why = format!("the source undid the event ({})", request.id);
        let by = format!("source:{}", request.source);
        let done = match reverse(ports, &original_id, &reversal_id, None, &why, &by, None).await {
            Ok(reversal) => {
                tracing::info!(undoes = %original_id, points = reversal.points.get(), "clawback: points taken back");
                finish(
                    request,
                    ReasonCode::ClawbackReversed,
                    format!(
                        "took back {} points of {original_id} (reversal {reversal_id})",
                        reversal.points
                    ),
                )?
            }
            Err(e) if e.is_retryable() => return Err(RecordError::Retry(e.to_string())),
            Err(e @ ReverseError::Refused(ReversalError::NotCredited { .. })) => {
                finish(request, ReasonCode::NothingToReverse, e.to_string())?
            }
            Err(e) => {
                tracing::warn!(undoes = %original_id, code = e.code(), "clawback refused");
                finish(
                    request,
                    ReasonCode::Clawback(clawback_failure(&e)),
                    e.to_string(),
                )?
            }
        };
        self.ports.update.update(&done).await?;
        Ok(())
    }

    async fn reject(&self, message: PipelineMessage, reason: Reason) -> Result<(), RecordError> {
        // Re-read: the decision took time, and the stored version is the one to move.
        let mut request = load_request(self.ports.get.as_ref(), &message.request_id).await?;
        let open = match request.state() {
            StatusKind::Received | StatusKind::AwaitingEnrollment | StatusKind::Held => true,
            StatusKind::AwaitingApproval => request.is_approved(),
            _ => false,
        };
        if !open {
            return Ok(());
        }
        // A duplicate delivery may have reserved meanwhile: let its decision stand.
        if self.reservation(&request).await?.is_some() {
            return Err(RecordError::Retry(
                "a concurrent delivery reserved points for this request".into(),
            ));
        }
        let detail = reason.message.clone();
        let code = reason.code.clone();
        request
            .transition(Status::Rejected { reason }, self.ports.clock.now(), detail)
            .map_err(|e| RecordError::Retry(e.to_string()))?;
        self.ports.update.update(&request).await?;
        tracing::info!(%code, "rejected");
        pointsflow_runtime::metrics::count(request.program.as_str(), "RequestsRejected");
        Ok(())
    }

    async fn reservation(
        &self,
        request: &PointsRequest,
    ) -> Result<Option<Reservation>, RecordError> {
        let entries = self
            .ports
            .ledger_read
            .entries_for(&request.id)
            .await
            .map_err(|e| RecordError::Retry(format!("ledger: {e}")))?;
        let id = request.reservation_id();
        let Some(entry) = entries
            .iter()
            .find(|e| e.id == id && e.kind == EntryKind::Pending)
        else {
            return Ok(None);
        };
        if entries.iter().any(|e| e.pending_id() == Some(&id)) {
            return Ok(Some(Reservation::Resolved));
        }
        Ok(Some(Reservation::Live(Box::new(entry.clone()))))
    }

    /// Finishes a decision whose reservation was written before a crash: the
    /// reservation, not today's rules, says what was decided.
    async fn resume(
        &self,
        request: PointsRequest,
        reservation: &Entry,
    ) -> Result<Decision, RecordError> {
        let AccountId::Member { partner, member } = &reservation.credit else {
            return Err(RecordError::Poison(
                "the reservation credits no member account".into(),
            ));
        };
        let program = self
            .ports
            .programs
            .program(&request.program)
            .ok_or_else(|| {
                RecordError::Retry(format!("program {} is not configured", request.program))
            })?;
        if &program.destination.partner != partner {
            return Err(RecordError::Retry(format!(
                "program {} now credits partner {}, but points were reserved for partner {partner}",
                program.id, program.destination.partner
            )));
        }
        let now = self.ports.clock.now();
        // The names of the link, if it still links the member reserved for.
        let name = match self
            .ports
            .enrollments
            .member_link(&request.program, &request.recipient.id)
            .await
        {
            Ok(Some(link)) if &link.member == member => Some(PersonName {
                first_name: link.first_name,
                last_name: link.last_name,
            }),
            Ok(_) => None,
            Err(e) => return Err(RecordError::Retry(format!("enrollments: {e}"))),
        };
        reserved(
            request,
            reservation.amount,
            (member, name),
            &program,
            (now, self.ports.ids.as_ref()),
            " (recovered)",
        )
    }

    /// A rejection can race a duplicate delivery that reserved: release what it held.
    async fn release_orphan(&self, request: &PointsRequest) -> Result<(), RecordError> {
        if let Some(Reservation::Live(entry)) = self.reservation(request).await? {
            self.ports
                .ledger
                .apply(&[Entry::void(&entry, self.ports.clock.now())])
                .await
                .map_err(|e| RecordError::Retry(format!("ledger: {e}")))?;
            tracing::warn!("released a reservation left by a delivery that raced the rejection");
        }
        Ok(())
    }
}

/// A request to a paused program that holds its requests: held until the
/// program is active again (unchanged if it is held already).
fn held(
    mut request: PointsRequest,
    program: &Program,
    now: DateTime<Utc>,
) -> Result<Decision, RecordError> {
    if request.state() == StatusKind::Held {
        return Ok(Decision::Unchanged);
    }
    let reason = Reason::new(
        ReasonCode::ProgramPaused,
        format!(
            "program {} is paused; the request is held until the program is active again",
            program.id
        ),
    );
    let detail = reason.message.clone();
    request
        .transition(Status::Held { reason }, now, detail)
        .map_err(|e| RecordError::Retry(e.to_string()))?;
    Ok(Decision::Wait(Box::new(request)))
}

/// A request whose recipient has no member link: rejected at once, or, if
/// the program waits for enrollment, waiting until its deadline.
fn unenrolled(
    mut request: PointsRequest,
    program: &Program,
    now: DateTime<Utc>,
) -> Result<Decision, RecordError> {
    let who = &request.recipient.id;
    let Some(hours) = program.wait_for_enrollment_hours else {
        return Ok(Decision::Reject(Reason::new(
            ReasonCode::NotEnrolled,
            format!(
                "recipient {who} has no member account linked for program {}",
                program.id
            ),
        )));
    };
    let deadline = request.received_at + chrono::Duration::hours(i64::from(hours));
    if now >= deadline {
        return Ok(Decision::Reject(Reason::new(
            ReasonCode::EnrollmentTimedOut,
            format!(
                "recipient {who} was not linked to a member account in program {} within {hours} hours",
                program.id
            ),
        )));
    }
    if request.state() == StatusKind::AwaitingEnrollment {
        return Ok(Decision::Unchanged);
    }
    let reason = Reason::new(
        ReasonCode::AwaitingEnrollment,
        format!(
            "recipient {who} has no member account linked for program {}; the request waits until {} for the recipient to be linked",
            program.id,
            deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    );
    let detail = reason.message.clone();
    request
        .transition(Status::AwaitingEnrollment { reason }, now, detail)
        .map_err(|e| RecordError::Retry(e.to_string()))?;
    Ok(Decision::Wait(Box::new(request)))
}

/// What a clawback's refused reversal is called on the clawback.
fn clawback_failure(e: &ReverseError) -> ClawbackFailure {
    match e {
        ReverseError::Refused(ReversalError::ExceedsCredited { .. }) => {
            ClawbackFailure::ReversalExceedsCredit
        }
        ReverseError::Refused(ReversalError::IdReused { .. }) => ClawbackFailure::ReversalIdReused,
        ReverseError::Refused(_) => ClawbackFailure::InvalidField,
        ReverseError::NotFound(_) | ReverseError::ProgramUnknown(_) => ClawbackFailure::NotFound,
        ReverseError::PartnerRefused { .. } => ClawbackFailure::PartnerRefused,
        _ => ClawbackFailure::LedgerMismatch,
    }
}

fn to_dispatch(request: &PointsRequest) -> PipelineMessage {
    PipelineMessage {
        request_id: request.id.clone(),
    }
}
