//! A partner connector behind the partner's rate limit and circuit breaker
//! ([`pointsflow_core::governance`]), whose state every invocation shares.
//!
//! Before a call: a slot in the rate limit (waiting for it when it is near,
//! within the call's time; otherwise the call is not made and the caller
//! defers its message), and the circuit's leave (closed: call; open: no
//! call until it has been open long enough, then one probe). After a call:
//! a partner that answered closes the circuit; a timeout, 5xx or connection
//! failure counts towards opening it. A call that is not made is
//! `NotAttempted`, which leaves everything as it was.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pointsflow_core::governance::{Gate, PartnerLimits, Slot};
use pointsflow_core::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, ReversalInstruction,
    ReversalOutcome,
};
use pointsflow_core::ports::{CircuitStore, Clock, PartnerConnector, RateLimiter, StoreError};
use pointsflow_core::values::{PartnerId, PartnerReference};

/// The longest a call waits for its slot in the rate limit.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(2);

/// When the shared state cannot be read, calls wait this long.
const STATE_UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

pub struct Governed {
    inner: Arc<dyn PartnerConnector>,
    partner: PartnerId,
    limits: PartnerLimits,
    limiter: Arc<dyn RateLimiter>,
    circuits: Arc<dyn CircuitStore>,
    clock: Arc<dyn Clock>,
}

/// Why a call is not made.
struct NotNow {
    retry_after: Duration,
    reason: String,
}

/// How a governed call went, for the circuit.
trait Answered {
    /// Whether the partner answered (anything but a timeout, 5xx or no connection).
    fn answered(&self) -> bool;
}

impl Answered for CreditOutcome {
    fn answered(&self) -> bool {
        !matches!(self, CreditOutcome::Unknown { .. })
    }
}

impl Answered for ReversalOutcome {
    fn answered(&self) -> bool {
        !matches!(self, ReversalOutcome::Unknown { .. })
    }
}

impl Answered for MemberCheckOutcome {
    fn answered(&self) -> bool {
        !matches!(self, MemberCheckOutcome::Unknown { .. })
    }
}

impl Governed {
    pub fn new(
        inner: Arc<dyn PartnerConnector>,
        partner: PartnerId,
        limits: PartnerLimits,
        limiter: Arc<dyn RateLimiter>,
        circuits: Arc<dyn CircuitStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner,
            partner,
            limits,
            limiter,
            circuits,
            clock,
        }
    }

    fn unavailable(e: &StoreError) -> NotNow {
        NotNow {
            retry_after: STATE_UNAVAILABLE_RETRY,
            reason: format!("the partner's shared limits cannot be read: {e}"),
        }
    }

    /// Passes the circuit and takes a rate slot; the circuit as read (to
    /// update after the call) when the call may go.
    async fn admit(
        &self,
        time_left: Option<Duration>,
    ) -> Result<pointsflow_core::governance::Circuit, NotNow> {
        let now = self.clock.now();
        let mut circuit = self
            .circuits
            .circuit(&self.partner)
            .await
            .map_err(|e| Self::unavailable(&e))?;
        match circuit.gate(now, &self.limits) {
            Gate::Call => {}
            Gate::Refuse(wait) => {
                self.report_unavailable(&circuit, now);
                return Err(NotNow {
                    retry_after: wait,
                    reason: format!("the circuit of partner {} is open", self.partner),
                });
            }
            Gate::Probe(probing) => {
                match self.circuits.save_circuit(&self.partner, &probing).await {
                    Ok(version) => {
                        tracing::warn!(partner = %self.partner, "circuit half-open: one probe call");
                        circuit = pointsflow_core::governance::Circuit { version, ..probing };
                    }
                    Err(StoreError::Conflict { .. }) => {
                        return Err(NotNow {
                            retry_after: Duration::from_secs(1),
                            reason: format!("another call is probing partner {}", self.partner),
                        });
                    }
                    Err(e) => return Err(Self::unavailable(&e)),
                }
            }
        }
        if let Some(spacing) = self.limits.spacing() {
            // Never wait past what the call has left.
            let max_wait = time_left.map_or(MAX_SLOT_WAIT, |t| t.min(MAX_SLOT_WAIT) / 2);
            match self
                .limiter
                .reserve(&self.partner, spacing, max_wait, now)
                .await
                .map_err(|e| Self::unavailable(&e))?
            {
                Slot::Granted(wait) => tokio::time::sleep(wait).await,
                Slot::Denied(wait) => {
                    return Err(NotNow {
                        retry_after: wait,
                        reason: format!("partner {}'s rate limit is taken", self.partner),
                    });
                }
            }
        }
        Ok(circuit)
    }

    /// While the partner's circuit is not closed, how long it has been
    /// unavailable: the metric `PartnerUnavailableSeconds` (by partner, and
    /// the stack's maximum), which the alarm `PartnerUnavailable` watches.
    fn report_unavailable(
        &self,
        circuit: &pointsflow_core::governance::Circuit,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        if let Some(down) = circuit.unavailable_for(now) {
            pointsflow_runtime::metrics::put(
                ("Partner", self.partner.as_str()),
                &[(
                    "PartnerUnavailableSeconds",
                    down.as_secs_f64().floor(),
                    pointsflow_runtime::metrics::Unit::Seconds,
                )],
            );
        }
    }

    /// Records the call's outcome in the circuit.
    async fn record(&self, read: pointsflow_core::governance::Circuit, answered: bool) {
        let now = self.clock.now();
        let mut circuit = read;
        for _ in 0..3 {
            let Some(next) = circuit.after(answered, now, &self.limits) else {
                return;
            };
            match self.circuits.save_circuit(&self.partner, &next).await {
                Ok(_) => {
                    if next.state != read.state
                        || (next.failures >= self.limits.circuit_failures
                            && read.failures < self.limits.circuit_failures)
                    {
                        tracing::warn!(
                            partner = %self.partner,
                            state = ?next.state,
                            failures = next.failures,
                            next_probe_seconds = next.open_for(&self.limits).as_secs(),
                            "partner circuit changed"
                        );
                    }
                    self.report_unavailable(&next, now);
                    return;
                }
                Err(StoreError::Conflict { .. }) => {
                    match self.circuits.circuit(&self.partner).await {
                        Ok(again) => circuit = again,
                        Err(_) => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(partner = %self.partner, error = %e, "could not record the call in the circuit");
                    return;
                }
            }
        }
    }

    async fn governed<T: Answered>(
        &self,
        time_left: Option<Duration>,
        not_now: impl FnOnce(NotNow) -> T,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let circuit = match self.admit(time_left).await {
            Ok(c) => c,
            Err(why) => return not_now(why),
        };
        let started = std::time::Instant::now();
        let outcome = call.await;
        let answered = outcome.answered();
        pointsflow_runtime::metrics::put(
            ("Partner", self.partner.as_str()),
            &[
                (
                    "PartnerLatencyMs",
                    started.elapsed().as_secs_f64() * 1e3,
                    pointsflow_runtime::metrics::Unit::Milliseconds,
                ),
                (
                    "PartnerErrors",
                    if answered { 0.0 } else { 1.0 },
                    pointsflow_runtime::metrics::Unit::Count,
                ),
            ],
        );
        self.record(circuit, answered).await;
        outcome
    }
}

fn not_attempted(why: NotNow) -> CreditOutcome {
    CreditOutcome::NotAttempted {
        retry_after: why.retry_after,
        reason: why.reason,
    }
}

#[async_trait]
impl PartnerConnector for Governed {
    fn idempotent_on_reference(&self) -> bool {
        self.inner.idempotent_on_reference()
    }

    /// The partner's configured `commit_within_ms`, never less than the
    /// connector's own.
    fn commit_within(&self) -> Duration {
        self.limits.commit_within.max(self.inner.commit_within())
    }

    async fn credit(&self, instruction: &CreditInstruction) -> CreditOutcome {
        self.governed(
            instruction.timeout,
            not_attempted,
            self.inner.credit(instruction),
        )
        .await
    }

    async fn status(
        &self,
        reference: &PartnerReference,
        timeout: Option<Duration>,
    ) -> CreditOutcome {
        self.governed(
            timeout,
            not_attempted,
            self.inner.status(reference, timeout),
        )
        .await
    }

    async fn statement(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<
        Vec<pointsflow_core::reconcile::StatementLine>,
        pointsflow_core::ports::StatementError,
    > {
        self.inner.statement(from, to).await
    }

    async fn reverse(&self, reversal: &ReversalInstruction) -> ReversalOutcome {
        self.governed(
            reversal.timeout,
            |why| ReversalOutcome::NotAttempted { reason: why.reason },
            self.inner.reverse(reversal),
        )
        .await
    }

    async fn validate_member(&self, check: &MemberCheck) -> MemberCheckOutcome {
        self.governed(
            check.timeout,
            |why| MemberCheckOutcome::Unknown { detail: why.reason },
            self.inner.validate_member(check),
        )
        .await
    }
}
