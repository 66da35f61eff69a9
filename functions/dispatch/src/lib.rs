//! The dispatch function: credits a reserved request at the partner, exactly
//! once in effect.
//!
//! The partner reference is fixed, in a conditional write, before the first
//! partner call, and reused on every retry and status look-up. A confirmed
//! credit posts the reservation; a definitive refusal voids it and releases
//! the budget; an ambiguous outcome (timeout, 5xx) keeps it pending and
//! leaves the message to be retried under the same reference.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use pointsflow_core::ledger::{Applied, Entry, EntryKind};
use pointsflow_core::partner::{CreditInstruction, CreditOutcome};
use pointsflow_core::ports::{
    Clock, IdSource, LedgerRead, LedgerWrite, PartnerConnector, PipelineMessage, ProgramCatalog,
    Publish, Redelivery, RequestGet, RequestUpdate,
};
use pointsflow_core::request::{PointsRequest, Status, StatusKind};
use pointsflow_core::unsettled::UnsettledIndex;
use pointsflow_core::values::PartnerId;
use pointsflow_core::window::{PublishWork, ScheduledRequests, WindowStore, WindowWork};
use serde::Deserialize;

pub mod resolve;
pub mod window;
use pointsflow_runtime::metrics::Unit;
use pointsflow_runtime::{
    Backoff, RecordError, SqsHandler, deadline, load_request, process_batch_with_backoff,
};

/// Time kept back from the invocation's deadline to record a partner's answer.
const RECORDING_MARGIN: Duration = Duration::from_secs(2);

/// Posts or voids a reservation: [`Entry::post`] or [`Entry::void`].
pub(crate) type Resolve = fn(&Entry, chrono::DateTime<chrono::Utc>) -> Entry;

/// Which partner call a credit gets next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// No call has been made under the reference.
    First,
    /// A call was made (or may have been) and its outcome is not known.
    Retry,
    /// The partner accepted the credit for later settlement.
    Pending,
}

/// A partner call that was not made (rate limit, open circuit, the
/// partner's 429): nothing changed, so the message is sent again to arrive
/// when a call can be made, without counting towards the receive limit.
pub(crate) fn not_attempted(retry_after: Duration, reason: &str) -> RecordError {
    // A little jitter, so deferred messages do not all come back at once.
    let jitter = Duration::from_millis(rand::random::<u64>() % 1_000);
    RecordError::Defer(
        retry_after + jitter,
        format!("partner not called: {reason}"),
    )
}

/// How long a partner call may be in flight after it started: twice the
/// dispatch function's timeout (30 s in the template), so a call that
/// started is over, one way or the other, once it has passed.
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(60);

/// What is left of the lease of a partner call started at `started`.
pub(crate) fn lease_left(
    started: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let started = started?;
    let over = started + chrono::TimeDelta::from_std(ATTEMPT_LEASE).ok()?;
    (over > now).then(|| (over - now).to_std().unwrap_or_default())
}

/// Calls the partner for a credit under `reference`. An unsettled credit is
/// only ever looked up; a partner that does not recognise repeats is asked
/// first whether an earlier attempt landed. Each call gets what is left of
/// the invocation when it starts.
pub(crate) async fn call_partner(
    connector: &dyn PartnerConnector,
    attempt: Attempt,
    instruction: &CreditInstruction,
    deadline: Option<Instant>,
) -> CreditOutcome {
    let time_left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let reference = &instruction.reference;
    let credit = || async {
        connector
            .credit(&CreditInstruction {
                timeout: time_left(),
                ..instruction.clone()
            })
            .await
    };
    let look_up = match attempt {
        Attempt::First => false,
        Attempt::Retry => !connector.idempotent_on_reference(),
        Attempt::Pending => true,
    };
    if !look_up {
        return credit().await;
    }
    match connector.status(reference, time_left()).await {
        CreditOutcome::NotFound if attempt == Attempt::Retry => credit().await,
        CreditOutcome::NotFound => CreditOutcome::Unknown {
            detail: "the partner has no record of a credit it reported pending".into(),
        },
        known => known,
    }
}

#[derive(Clone)]
pub struct DispatchPorts {
    pub get: Arc<dyn RequestGet>,
    pub update: Arc<dyn RequestUpdate>,
    pub ledger_read: Arc<dyn LedgerRead>,
    pub ledger_write: Arc<dyn LedgerWrite>,
    pub programs: Arc<dyn ProgramCatalog>,
    pub partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    pub ids: Arc<dyn IdSource>,
    pub clock: Arc<dyn Clock>,
    /// Scheduled windows: the requests they hold, their runs and credits,
    /// and the dispatch queue their work goes through.
    pub scheduled: Arc<dyn ScheduledRequests>,
    pub windows: Arc<dyn WindowStore>,
    pub work: Arc<dyn PublishWork>,
    /// How a retried message is put back on the dispatch queue (after a
    /// backoff, or deferred while a partner cannot be called).
    pub redelivery: Arc<dyn Redelivery>,
    /// Requests whose outcome is not settled (window credits are found in
    /// `windows`), and the dispatch queue to send them back to for another
    /// look-up.
    pub unsettled_requests: Arc<dyn UnsettledIndex>,
    pub requeue: Arc<dyn Publish>,
}

/// What the dispatch queue carries: a request reserved by eligibility, or
/// work on a scheduled window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DispatchMessage {
    Request(PipelineMessage),
    Window(WindowWork),
}

#[derive(Clone)]
pub struct Dispatch {
    ports: DispatchPorts,
    backoff: Backoff,
    resolution: resolve::Resolution,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch").finish_non_exhaustive()
    }
}

fn retry(e: impl std::fmt::Display) -> RecordError {
    RecordError::Retry(e.to_string())
}

impl SqsHandler for Dispatch {
    async fn handle_batch(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        self.handle(event).await
    }
}

impl Dispatch {
    pub fn new(ports: DispatchPorts) -> Self {
        Self {
            ports,
            backoff: Backoff::default(),
            resolution: resolve::Resolution::default(),
        }
    }

    /// Unsettled credits are looked up again as `resolution` says.
    pub fn with_resolution(mut self, resolution: resolve::Resolution) -> Self {
        self.resolution = resolution;
        self
    }

    /// Retries wait as `backoff` says (capped exponential, full jitter).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The Lambda handler: an SQS batch from the dispatch queue, or a
    /// window's schedule firing (EventBridge Scheduler invokes the function
    /// with a [`window::ScheduledEvent`]).
    pub async fn handle_any(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<serde_json::Value, lambda_runtime::Error> {
        let (payload, context) = event.into_parts();
        if payload.get("Records").is_some() {
            let sqs: SqsEvent = serde_json::from_value(payload)?;
            let response = self.handle(LambdaEvent::new(sqs, context)).await?;
            return Ok(serde_json::to_value(response)?);
        }
        let scheduled: window::ScheduledEvent = serde_json::from_value(payload)
            .map_err(|e| format!("neither an SQS batch nor a window event: {e}"))?;
        match scheduled {
            window::ScheduledEvent::WindowClosed(closed) => {
                let run = self.window_closed(&closed).await?;
                Ok(serde_json::to_value(run)?)
            }
            window::ScheduledEvent::ResolveUnsettled {} => {
                let report = self.resolve_unsettled().await?;
                Ok(serde_json::to_value(report)?)
            }
        }
    }

    /// The Lambda handler for the dispatch queue.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let deadline = deadline(&event.context, RECORDING_MARGIN);
        pointsflow_runtime::catalog::refresh(self.ports.programs.as_ref()).await;
        Ok(process_batch_with_backoff(
            "dispatch",
            event.payload,
            self.backoff,
            self.ports.redelivery.as_ref(),
            |m| async move {
                match m {
                    DispatchMessage::Request(m) => self.process(m, deadline).await,
                    DispatchMessage::Window(WindowWork::Plan { window }) => {
                        self.plan(&window, deadline).await
                    }
                    DispatchMessage::Window(WindowWork::Credit { credit }) => {
                        self.process_credit(&credit, deadline).await
                    }
                }
            },
        )
        .await)
    }

    #[tracing::instrument(name = "dispatch", skip_all, fields(request_id = %message.request_id, program, state, source_record))]
    async fn process(
        &self,
        message: PipelineMessage,
        deadline: Option<Instant>,
    ) -> Result<(), RecordError> {
        let mut request = load_request(self.ports.get.as_ref(), &message.request_id).await?;
        // A scheduled request travels in its window's credit.
        if let Some(credit) = request.credit.clone() {
            return self.process_credit(&credit, deadline).await;
        }
        let first_attempt = match request.state() {
            StatusKind::Reserved => {
                self.fix_reference(&mut request).await?;
                true
            }
            // Counted below, once the partner is known.
            StatusKind::Dispatching | StatusKind::Unknown => false,
            StatusKind::PartnerPending => false,
            // Settled: make sure the ledger agrees (a crash may have come
            // between the state and the ledger write), and call no one.
            StatusKind::Credited => return self.ensure_resolved(&request, Entry::post).await,
            StatusKind::Failed => return self.ensure_resolved(&request, Entry::void).await,
            StatusKind::Rejected | StatusKind::Reversed => {
                tracing::debug!(state = %request.state(), "already settled; duplicate delivery ignored");
                return Ok(());
            }
            other @ (StatusKind::Received
            | StatusKind::AwaitingApproval
            | StatusKind::AwaitingEnrollment
            | StatusKind::Held
            | StatusKind::Scheduled) => {
                return Err(RecordError::Poison(format!(
                    "a request in state {other} is not ready for dispatch"
                )));
            }
        };
        let Some(reference) = request.partner_reference.clone() else {
            return Err(RecordError::Poison(
                "no partner reference on a dispatching request".into(),
            ));
        };
        let (Some(points), Some(member)) = (request.points, request.member.clone()) else {
            return Err(RecordError::Poison(
                "no points or member on a reserved request".into(),
            ));
        };
        // Credit where the points were reserved for, even if the program's
        // destination has changed since.
        let destination = match &request.destination {
            Some(d) => d.clone(),
            None => self
                .ports
                .programs
                .program(&request.program)
                .ok_or_else(|| retry(format!("program {} is not configured", request.program)))?
                .destination
                .clone(),
        };
        let connector = self
            .ports
            .partners
            .get(&destination.partner)
            .cloned()
            .ok_or_else(|| retry(format!("partner {} is not configured", destination.partner)))?;
        let attempt = match request.state() {
            StatusKind::PartnerPending => Attempt::Pending,
            _ if first_attempt => Attempt::First,
            _ => Attempt::Retry,
        };
        if attempt == Attempt::Retry {
            // A partner that does not answer a repeated reference with the
            // first outcome is looked up before a retry; a look-up while
            // another delivery's call is still in flight would find nothing
            // and credit again. So a call started less than a lease ago,
            // with no outcome recorded since (recording one clears
            // `attempt_at`), is waited for.
            if !connector.idempotent_on_reference()
                && let Some(wait) = lease_left(request.attempt_at, self.ports.clock.now())
            {
                return Err(RecordError::RetryAfter(
                    wait,
                    "a partner call under this reference may still be in flight".into(),
                ));
            }
            self.count_attempt(&mut request).await?;
        }
        let instruction = CreditInstruction {
            reference,
            member,
            member_name: request.member_name.clone(),
            points,
            partner_program: destination.partner_program.clone(),
            timeout: None,
        };
        let outcome = call_partner(connector.as_ref(), attempt, &instruction, deadline).await;
        self.record(request, outcome).await
    }

    /// Counts a retry before making it. The conditional write also means two
    /// deliveries that read the same state cannot both go on to call the partner.
    async fn count_attempt(&self, request: &mut PointsRequest) -> Result<(), RecordError> {
        request.dispatch_attempts = request.dispatch_attempts.saturating_add(1);
        request.attempt_at = Some(self.ports.clock.now());
        request.version = self.ports.update.update(request).await?;
        Ok(())
    }

    /// Posts or voids the reservation of a request already settled, if that
    /// has not happened yet. Applying a resolution twice is a no-op.
    pub(crate) async fn ensure_resolved(
        &self,
        request: &PointsRequest,
        resolve: Resolve,
    ) -> Result<(), RecordError> {
        let pending = self.reservation(request).await?;
        match self
            .ports
            .ledger_write
            .apply(&[resolve(&pending, self.ports.clock.now())])
            .await
        {
            Ok(Applied::Now) => {
                tracing::warn!(state = %request.state(), "ledger caught up with a settled request");
                Ok(())
            }
            Ok(Applied::Already) => Ok(()),
            Err(e) if e.is_transient() => Err(retry(e)),
            Err(e) => Err(RecordError::Poison(format!(
                "the ledger disagrees with the request's state {}: {e}",
                request.state()
            ))),
        }
    }

    /// Fixes the partner reference before any partner call. The conditional
    /// update means two concurrent deliveries can never pick two references.
    async fn fix_reference(&self, request: &mut PointsRequest) -> Result<(), RecordError> {
        let reference = self.ports.ids.partner_reference();
        request.partner_reference = Some(reference.clone());
        request.dispatch_attempts = 1;
        request.attempt_at = Some(self.ports.clock.now());
        request
            .transition(
                Status::Dispatching,
                self.ports.clock.now(),
                format!("partner reference {reference} fixed; crediting"),
            )
            .map_err(retry)?;
        request.version = self.ports.update.update(request).await?;
        Ok(())
    }

    async fn reservation(&self, request: &PointsRequest) -> Result<Entry, RecordError> {
        let id = request.reservation_id();
        self.ports
            .ledger_read
            .entries_for(&request.id)
            .await
            .map_err(retry)?
            .into_iter()
            .find(|e| e.id == id && e.kind == EntryKind::Pending)
            .ok_or_else(|| {
                RecordError::Poison("the request has no reservation in the ledger".into())
            })
    }

    /// Records the final state and then resolves the reservation (post or
    /// void). The state goes first: once it is written no delivery calls the
    /// partner again, and a crash before the ledger write is healed by the
    /// next delivery ([`Self::ensure_resolved`]).
    pub(crate) async fn settle(
        &self,
        mut request: PointsRequest,
        resolve: Resolve,
        to: Status,
        detail: String,
    ) -> Result<(), RecordError> {
        let now = self.ports.clock.now();
        let pending = self.reservation(&request).await?;
        request.transition(to, now, detail).map_err(retry)?;
        self.ports.update.update(&request).await?;
        self.ports
            .ledger_write
            .apply(&[resolve(&pending, now)])
            .await
            .map_err(retry)?;
        let program = ("Program", request.program.as_str());
        if request.state() == StatusKind::Credited {
            let points = request.points.map_or(0, |p| p.get());
            let seconds = (now - request.received_at).num_milliseconds() as f64 / 1e3;
            pointsflow_runtime::metrics::put(
                program,
                &[
                    ("RequestsCredited", 1.0, Unit::Count),
                    ("PointsCredited", points as f64, Unit::None),
                    ("ReceiptToCreditSeconds", seconds, Unit::Seconds),
                ],
            );
        } else {
            pointsflow_runtime::metrics::put(program, &[("RequestsFailed", 1.0, Unit::Count)]);
        }
        Ok(())
    }

    async fn record(
        &self,
        mut request: PointsRequest,
        outcome: CreditOutcome,
    ) -> Result<(), RecordError> {
        let now = self.ports.clock.now();
        // The call is over: whatever is written next says how it ended.
        request.attempt_at = None;
        match outcome {
            CreditOutcome::NotAttempted {
                retry_after,
                reason,
            } => Err(not_attempted(retry_after, &reason)),
            CreditOutcome::Credited { transaction } => {
                let detail = format!(
                    "partner credited {} points to member {} (transaction {transaction})",
                    request.points.unwrap_or_default(),
                    request.member.as_ref().map(|m| m.as_str()).unwrap_or("?")
                );
                request.partner_transaction = Some(transaction);
                self.settle(request, Entry::post, Status::Credited, detail)
                    .await?;
                tracing::info!("credited");
                Ok(())
            }
            CreditOutcome::Rejected(reason) => {
                let detail = format!("{}; reservation voided, budget released", reason.message);
                let code = reason.code.clone();
                self.settle(request, Entry::void, Status::Failed { reason }, detail)
                    .await?;
                tracing::info!(%code, "failed");
                Ok(())
            }
            CreditOutcome::Pending { transaction } => {
                request.partner_transaction = transaction.or(request.partner_transaction.take());
                request
                    .transition(
                        Status::PartnerPending,
                        now,
                        "partner accepted the credit; it settles later",
                    )
                    .map_err(retry)?;
                self.ports.update.update(&request).await?;
                Err(RecordError::Retry(
                    "partner credit pending; checking again later".into(),
                ))
            }
            CreditOutcome::Unknown { detail } if request.state() == StatusKind::PartnerPending => {
                Err(RecordError::Retry(format!(
                    "status look-up inconclusive: {detail}"
                )))
            }
            CreditOutcome::Unknown { detail } => {
                let reference = request.partner_reference.clone();
                request
                    .transition(
                        Status::Unknown,
                        now,
                        format!("outcome unknown ({detail}); will retry under the same reference"),
                    )
                    .map_err(retry)?;
                self.ports.update.update(&request).await?;
                tracing::warn!(reference = ?reference.map(|r| r.to_string()), %detail, "partner outcome unknown");
                Err(RecordError::Retry(format!(
                    "partner outcome unknown: {detail}"
                )))
            }
            CreditOutcome::NotFound => Err(RecordError::Retry(
                "the partner answered a credit with not-found".into(),
            )),
        }
    }
}
