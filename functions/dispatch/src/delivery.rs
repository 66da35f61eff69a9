//! The one attempt protocol for a credit at a partner, for a real-time
//! request and for a window credit alike: what the delivery state machine
//! (`pointsflow_core::delivery`) says comes next, an attempt counted and
//! saved before its call, the call (a look-up first where the partner does
//! not recognise repeats), and the outcome recorded. Each kind of credit
//! says only how it is saved ([`Delivery`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::delivery::{self, Call, DeliveryState, Next, Outcome};
use pointsflow_core::ledger::Entry;
use pointsflow_core::partner::{CreditInstruction, CreditOutcome, Destination};
use pointsflow_core::ports::PartnerConnector;
use pointsflow_core::request::{PointsRequest, Status};
use pointsflow_core::values::PartnerId;
use pointsflow_runtime::RecordError;

use crate::{Dispatch, retry};

/// A credit being delivered, as its kind keeps it.
#[async_trait]
pub(crate) trait Delivery: Send {
    fn state(&self) -> DeliveryState;

    /// When the last call started, if its outcome is not recorded yet.
    fn attempt_at(&self) -> Option<DateTime<Utc>>;

    fn partner(&self) -> &PartnerId;

    /// The call to make (its reference fixed by now).
    fn instruction(&self) -> Result<CreditInstruction, RecordError>;

    /// Whether the partner reference is fixed already (a request reserved
    /// by an earlier release has none until its first attempt).
    fn reference_fixed(&self) -> bool;

    /// Counts an attempt about to be made, and with `claim` saves it first:
    /// the conditional write means two deliveries that read the same state
    /// cannot both call. Without it, the write of the outcome records the
    /// attempt.
    async fn count_attempt(&mut self, dispatch: &Dispatch, claim: bool) -> Result<(), RecordError>;

    /// Saves what an outcome made of it (settling what depends on a final
    /// one). Not called for an outcome that changes nothing.
    async fn record(self, dispatch: &Dispatch, outcome: Outcome) -> Result<(), RecordError>;

    /// Settled before this delivery: makes sure what depends on the
    /// outcome (the ledger, a window credit's requests) followed it.
    async fn settled(self, dispatch: &Dispatch) -> Result<(), RecordError>;
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

/// Makes `call` under the instruction's reference. Each call gets what is
/// left of the invocation when it starts.
async fn call_partner(
    connector: &dyn PartnerConnector,
    call: Call,
    instruction: &CreditInstruction,
    deadline: Option<Instant>,
) -> CreditOutcome {
    let time_left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let credit = || async {
        connector
            .credit(&CreditInstruction {
                timeout: time_left(),
                ..instruction.clone()
            })
            .await
    };
    match call {
        Call::Credit => credit().await,
        Call::LookUp => connector.status(&instruction.reference, time_left()).await,
        Call::LookUpThenCredit => {
            match connector.status(&instruction.reference, time_left()).await {
                CreditOutcome::NotFound => credit().await,
                known => known,
            }
        }
    }
}

impl Dispatch {
    /// When the last call's outcome is recorded: `None` (the call is over),
    /// unless the answer was lost at a partner that commits late, which may
    /// still commit it; then the time of recording, so the look-up waits
    /// out the partner's commitment from there.
    pub(crate) fn attempt_after(
        &self,
        partner: &PartnerId,
        outcome: &Outcome,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let late = self
            .ports
            .partners
            .get(partner)
            .is_some_and(|c| !c.idempotent_on_reference() && !c.commit_within().is_zero());
        (late && matches!(outcome, Outcome::Unknown { .. })).then_some(now)
    }

    fn connector(&self, partner: &PartnerId) -> Result<Arc<dyn PartnerConnector>, RecordError> {
        self.ports
            .partners
            .get(partner)
            .cloned()
            .ok_or_else(|| retry(format!("partner {partner} is not configured")))
    }

    /// Takes `delivery` one step: settles what follows a final outcome,
    /// waits for a call that may be in flight, or counts an attempt, calls
    /// the partner and records what came of it. An outcome that is not
    /// final leaves the message to come back.
    pub(crate) async fn deliver<D: Delivery>(
        &self,
        mut delivery: D,
        deadline: Option<Instant>,
    ) -> Result<(), RecordError> {
        let state = delivery.state();
        if state.is_settled() {
            return delivery.settled(self).await;
        }
        let connector = self.connector(delivery.partner())?;
        let now = self.ports.clock.now();
        match delivery::next(
            &state,
            connector.idempotent_on_reference(),
            connector.commit_within(),
            delivery.attempt_at(),
            now,
        ) {
            Next::Settled => delivery.settled(self).await,
            Next::Wait(wait) => Err(RecordError::RetryAfter(
                wait,
                "a partner call under this reference may still be in flight".into(),
            )),
            Next::Call { call, count } => {
                if count {
                    // A partner that answers a repeated reference with its
                    // first outcome needs no claim before a first call
                    // under a fixed reference: two deliveries calling at
                    // once credit once.
                    let claim = state != DeliveryState::Ready
                        || !delivery.reference_fixed()
                        || !connector.idempotent_on_reference();
                    delivery.count_attempt(self, claim).await?;
                }
                let instruction = delivery.instruction()?;
                let answer = call_partner(connector.as_ref(), call, &instruction, deadline).await;
                let outcome = delivery::after(&state, answer);
                let unsettled = match &outcome {
                    Outcome::NotAttempted {
                        retry_after,
                        reason,
                    } => return Err(not_attempted(*retry_after, reason)),
                    Outcome::StillPending { detail } => {
                        return Err(RecordError::Retry(format!(
                            "status look-up inconclusive: {detail}"
                        )));
                    }
                    Outcome::Pending { .. } => {
                        Some("partner credit pending; checking again later".to_owned())
                    }
                    Outcome::Unknown { detail } => Some(format!(
                        "partner outcome unknown: {detail}; will retry under the same reference"
                    )),
                    Outcome::Credited { .. } | Outcome::Failed { .. } => None,
                };
                delivery.record(self, outcome).await?;
                match unsettled {
                    Some(why) => Err(RecordError::Retry(why)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A real-time request's credit: the request itself carries its state.
pub(crate) struct RequestDelivery {
    pub request: PointsRequest,
    pub state: DeliveryState,
    /// Where the points were reserved for, even if the program's
    /// destination has changed since.
    pub destination: Destination,
}

#[async_trait]
impl Delivery for RequestDelivery {
    fn state(&self) -> DeliveryState {
        self.state.clone()
    }

    fn attempt_at(&self) -> Option<DateTime<Utc>> {
        self.request.attempt_at
    }

    fn partner(&self) -> &PartnerId {
        &self.destination.partner
    }

    fn instruction(&self) -> Result<CreditInstruction, RecordError> {
        let request = &self.request;
        let (Some(reference), Some(points), Some(member)) = (
            request.partner_reference.clone(),
            request.points,
            request.member.clone(),
        ) else {
            return Err(RecordError::Poison(
                "no partner reference, points or member on a request being sent".into(),
            ));
        };
        Ok(CreditInstruction {
            reference,
            member,
            member_name: request.member_name.clone(),
            points,
            partner_program: self.destination.partner_program.clone(),
            timeout: None,
        })
    }

    fn reference_fixed(&self) -> bool {
        self.request.partner_reference.is_some()
    }

    async fn count_attempt(&mut self, dispatch: &Dispatch, claim: bool) -> Result<(), RecordError> {
        let now = dispatch.ports.clock.now();
        let request = &mut self.request;
        if self.state == DeliveryState::Ready {
            // The reference is fixed before any partner call, and kept
            // (a request reserved by an earlier release has none yet).
            let reference = request
                .partner_reference
                .get_or_insert_with(|| dispatch.ports.ids.partner_reference())
                .clone();
            request
                .transition(
                    Status::Dispatching,
                    now,
                    format!("crediting under partner reference {reference}"),
                )
                .map_err(retry)?;
        }
        request.dispatch_attempts = request.dispatch_attempts.saturating_add(1);
        request.attempt_at = Some(now);
        if claim {
            request.version = dispatch.ports.update.update(request).await?;
        }
        Ok(())
    }

    async fn record(self, dispatch: &Dispatch, outcome: Outcome) -> Result<(), RecordError> {
        let mut request = self.request;
        let now = dispatch.ports.clock.now();
        // The call is over: whatever is written next says how it ended.
        request.attempt_at = dispatch.attempt_after(&self.destination.partner, &outcome, now);
        match outcome {
            Outcome::Credited { transaction } => {
                let detail = format!(
                    "partner credited {} points to member {} (transaction {transaction})",
                    request.points.unwrap_or_default(),
                    request.member.as_ref().map(|m| m.as_str()).unwrap_or("?")
                );
                request.partner_transaction = Some(transaction);
                dispatch
                    .settle(request, Entry::post, Status::Credited, detail)
                    .await?;
                tracing::info!("credited");
            }
            Outcome::Failed { reason } => {
                let detail = format!("{}; reservation voided, budget released", reason.message);
                let code = reason.code.clone();
                dispatch
                    .settle(request, Entry::void, Status::Failed { reason }, detail)
                    .await?;
                tracing::info!(%code, "failed");
            }
            Outcome::Pending { transaction } => {
                request.partner_transaction = transaction.or(request.partner_transaction.take());
                request
                    .transition(
                        Status::PartnerPending,
                        now,
                        "partner accepted the credit; it settles later",
                    )
                    .map_err(retry)?;
                dispatch.ports.update.update(&request).await?;
            }
            Outcome::Unknown { detail } => {
                request
                    .transition(
                        Status::Unknown,
                        now,
                        format!("outcome unknown ({detail}); will retry under the same reference"),
                    )
                    .map_err(retry)?;
                dispatch.ports.update.update(&request).await?;
                tracing::warn!(reference = ?request.partner_reference.as_ref().map(|r| r.to_string()), %detail, "partner outcome unknown");
            }
            Outcome::StillPending { .. } | Outcome::NotAttempted { .. } => {}
        }
        Ok(())
    }

    async fn settled(self, dispatch: &Dispatch) -> Result<(), RecordError> {
        let resolve = match self.state {
            DeliveryState::Failed => Entry::void,
            _ => Entry::post,
        };
        dispatch.ensure_resolved(&self.request, resolve).await
    }
}
