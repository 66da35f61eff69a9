//! The dispatch function: credits a reserved request at the partner, exactly
//! once in effect.
//!
//! The partner reference is fixed before the first partner call (a
//! real-time request's in the write of its reservation, a window credit's
//! when it is made) and reused on every retry and status look-up. Before a
//! first call to a partner that does not recognise repeated references, a
//! conditional write claims the credit, so two deliveries cannot both
//! call; a partner that answers a repeat with its first outcome needs no
//! claim, and the write of the outcome records the attempt. A confirmed
//! credit posts the reservation; a definitive refusal voids it and releases
//! the budget; an ambiguous outcome (timeout, 5xx) keeps it pending and
//! leaves the message to be retried under the same reference.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use pointsflow_core::ledger::{Applied, Entry, EntryKind};
use pointsflow_core::ports::{
    CircuitStore, Clock, IdSource, LedgerRead, LedgerWrite, PartnerConnector, PipelineMessage,
    ProgramCatalog, Publish, PublishWork, Redelivery, RequestGet, RequestLines, RequestUpdate,
    ScheduledRequests, SweepMarks, UnsettledIndex, WindowStore,
};
use pointsflow_core::request::{PointsRequest, Status, StatusKind};
use pointsflow_core::values::PartnerId;
use pointsflow_core::window::WindowWork;
use serde::Deserialize;

mod delivery;
pub mod resolve;
pub mod window;

use delivery::RequestDelivery;
use pointsflow_runtime::metrics::Unit;
use pointsflow_runtime::{
    Backoff, RecordError, SqsHandler, deadline, load_request, process_batch_with_backoff,
};

/// Time kept back from the invocation's deadline to record a partner's answer.
const RECORDING_MARGIN: Duration = Duration::from_secs(2);

/// Posts or voids a reservation: [`Entry::post`] or [`Entry::void`].
pub(crate) type Resolve = fn(&Entry, chrono::DateTime<chrono::Utc>) -> Entry;

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
    /// The requests hour by hour, and where the resolver keeps how far it
    /// has read them: a request moving straight on from its receipt is
    /// not in `unsettled_requests` until the resolver finds it stalled.
    pub lines: Arc<dyn RequestLines>,
    pub sweep: Arc<dyn SweepMarks>,
    pub requeue: Arc<dyn Publish>,
    /// The eligibility queue, for a request left `received` (its send to
    /// eligibility failed) that the resolver finds.
    pub eligibility: Arc<dyn Publish>,
    /// The partners' circuits: the resolver does not queue again what waits
    /// on a partner whose circuit is open (its messages are held back).
    pub circuits: Arc<dyn CircuitStore>,
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
        pointsflow_usecases::catalog::refresh(self.ports.programs.as_ref()).await;
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
        let request = load_request(self.ports.get.as_ref(), &message.request_id).await?;
        // A scheduled request travels in its window's credit.
        if let Some(credit) = request.credit.clone() {
            return self.process_credit(&credit, deadline).await;
        }
        let Some(state) = request.delivery_state() else {
            return match request.state() {
                StatusKind::Rejected | StatusKind::Reversed => {
                    tracing::debug!(state = %request.state(), "already settled; duplicate delivery ignored");
                    Ok(())
                }
                other => Err(RecordError::Poison(format!(
                    "a request in state {other} is not ready for dispatch"
                ))),
            };
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
        self.deliver(
            RequestDelivery {
                request,
                state,
                destination,
            },
            deadline,
        )
        .await
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
}
