//! Carrying out a reversal: recorded on the request (so two cannot
//! together take back more than was credited), asked of the partner under
//! its id, written to the ledger as a new entry, settled on the request.
//! Each step is safe to run again, so a repeat, or a run after a crash,
//! finishes what is left. Operators' `reverse` and the clawbacks of
//! undone source events both come here.

use std::collections::HashMap;
use std::sync::Arc;

use pointsflow_core::ledger::{Entry, EntryKind};
use pointsflow_core::partner::{ReversalInstruction, ReversalOutcome};
use pointsflow_core::ports::{
    Clock, LedgerRead, LedgerWrite, PartnerConnector, ProgramCatalog, RequestGet, RequestUpdate,
    StoreError,
};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::reversal::{Requested, Reversal, ReversalState};
use pointsflow_core::values::{PartnerId, Points, RequestId};

/// What a reversal uses.
#[derive(Clone, Copy)]
pub struct ReversePorts<'a> {
    pub get: &'a dyn RequestGet,
    pub update: &'a dyn RequestUpdate,
    pub ledger_read: &'a dyn LedgerRead,
    pub ledger_write: &'a dyn LedgerWrite,
    pub programs: &'a dyn ProgramCatalog,
    pub partners: &'a HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    pub clock: &'a dyn Clock,
}

/// A command (an operator's, or a clawback's reversal) that could not be
/// carried out: a stable code, a sentence, and whether running it again
/// later may succeed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

/// What a reversal that could not be carried out says.
pub type ReverseError = CommandError;

impl CommandError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(code: &str, message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            ..Self::new(code, message)
        }
    }

    /// `what` failed for now (a store, a queue, the ledger).
    pub fn unavailable(what: &str, e: impl std::fmt::Display) -> Self {
        Self::retryable("unavailable", format!("{what}: {e}; run it again"))
    }

    pub fn not_found(id: &RequestId) -> Self {
        Self::new("not_found", format!("no request {id}"))
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        Self::unavailable("the store", e)
    }
}

async fn load(ports: ReversePorts<'_>, id: &RequestId) -> Result<PointsRequest, ReverseError> {
    ports
        .get
        .get(id)
        .await
        .map_err(|e| ReverseError::unavailable("the store", e))?
        .ok_or_else(|| ReverseError::not_found(id))
}

/// Records the reversal on the request, asks the partner, writes the
/// ledger entry, and settles the reversal on the request; each step is
/// safe to run again, so a repeat (or a run after a crash) finishes
/// what is left.
pub async fn reverse(
    ports: ReversePorts<'_>,
    id: &RequestId,
    reversal_id: &str,
    points: Option<Points>,
    reason: &str,
    by: &str,
) -> Result<Reversal, ReverseError> {
    let (mut request, reversal) =
        record_reversal(ports, id, reversal_id, points, reason, by).await?;
    if reversal.state != ReversalState::Requested {
        return Ok(reversal);
    }
    let entries = ports
        .ledger_read
        .entries_for(id)
        .await
        .map_err(|e| ReverseError::unavailable("the ledger", e))?;
    let reservation = posted_reservation(&request, &entries)?;
    let destination = match &request.destination {
        Some(d) => d.clone(),
        None => ports
            .programs
            .program(&request.program)
            .ok_or_else(|| {
                ReverseError::new(
                    "not_found",
                    format!("program {} is not configured", request.program),
                )
            })?
            .destination
            .clone(),
    };
    let connector = ports.partners.get(&destination.partner).ok_or_else(|| {
        ReverseError::retryable(
            "partner_not_configured",
            format!("partner {} is not configured", destination.partner),
        )
    })?;
    let reference = request.partner_reference.clone().ok_or_else(|| {
        ReverseError::new(
            "ledger_mismatch",
            "a credited request without a partner reference",
        )
    })?;
    let before: u64 = request
        .reversals
        .iter()
        .filter(|r| r.id != reversal.id && matches!(r.state, ReversalState::Done { .. }))
        .map(|r| r.points.get())
        .sum();
    let instruction = ReversalInstruction {
        reference,
        transaction: request.partner_transaction.clone(),
        reversal_id: reversal.id.clone(),
        points: reversal.points,
        reversed_before: before,
        reason: reversal.reason.clone(),
        timeout: None,
    };
    let settled = match connector.reverse(&instruction).await {
        ReversalOutcome::Reversed {
            reversal: partner_reversal,
        } => {
            let now = ports.clock.now();
            let entry = Entry::reversal(&reservation, &reversal.id, reversal.points, now)
                .ok_or_else(|| {
                    ReverseError::new("ledger_mismatch", "the reservation names no request")
                })?;
            ports.ledger_write.apply(&[entry]).await.map_err(|e| {
                if e.is_transient() {
                    ReverseError::unavailable("the ledger", e)
                } else {
                    ReverseError::new("ledger_mismatch", e.to_string())
                }
            })?;
            ReversalState::Done { partner_reversal }
        }
        ReversalOutcome::Refused(reason) => ReversalState::Refused { reason },
        ReversalOutcome::Unknown { detail } => {
            return Err(ReverseError::retryable(
                "partner_unavailable",
                format!(
                    "the partner did not answer ({detail}); the reversal is recorded: run the same command again"
                ),
            ));
        }
        ReversalOutcome::NotAttempted { reason } => {
            return Err(ReverseError::retryable(
                "partner_unavailable",
                format!(
                    "the partner was not called ({reason}); the reversal is recorded: run the same command again"
                ),
            ));
        }
    };
    // Settle it on the request, reading again on a conflict.
    for _ in 0..5 {
        let changed = request
            .settle_reversal(&reversal.id, settled.clone(), ports.clock.now())
            .map_err(|e| ReverseError::new(e.code(), e.to_string()))?;
        if !changed {
            break;
        }
        match ports.update.update(&request).await {
            Ok(_) => {
                if matches!(settled, ReversalState::Done { .. }) {
                    crate::metrics::put(
                        ("Program", request.program.as_str()),
                        &[
                            ("RequestsReversed", 1.0, crate::metrics::Unit::Count),
                            (
                                "PointsReversed",
                                reversal.points.get() as f64,
                                crate::metrics::Unit::Count,
                            ),
                        ],
                    );
                }
                break;
            }
            Err(StoreError::Conflict { .. }) => request = load(ports, id).await?,
            Err(e) => return Err(ReverseError::unavailable("the store", e)),
        }
    }
    let done = Reversal {
        state: settled.clone(),
        ..reversal
    };
    match settled {
        ReversalState::Refused { reason } => Err(ReverseError::new(
            "partner_refused",
            format!(
                "the partner refused reversal {}: {} ({})",
                done.id, reason.message, reason.code
            ),
        )),
        _ => Ok(done),
    }
}

/// Records (or finds) the reversal on the request.
async fn record_reversal(
    ports: ReversePorts<'_>,
    id: &RequestId,
    reversal_id: &str,
    points: Option<Points>,
    reason: &str,
    by: &str,
) -> Result<(PointsRequest, Reversal), ReverseError> {
    for _ in 0..5 {
        let mut request = load(ports, id).await?;
        let requested = request
            .request_reversal(reversal_id, points, reason, by, ports.clock.now())
            .map_err(|e| ReverseError::new(e.code(), e.to_string()))?;
        match requested {
            Requested::Existing(r) => return Ok((request, r)),
            Requested::New(r) => match ports.update.update(&request).await {
                Ok(version) => {
                    request.version = version;
                    return Ok((request, r));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ReverseError::unavailable("the store", e)),
            },
        }
    }
    Err(ReverseError::retryable(
        "unavailable",
        "the request kept changing; run the command again",
    ))
}

/// The request's reservation, which must be posted before anything can be
/// taken back.
fn posted_reservation(request: &PointsRequest, entries: &[Entry]) -> Result<Entry, ReverseError> {
    let id = request.reservation_id();
    let reservation = entries
        .iter()
        .find(|e| e.id == id && e.kind == EntryKind::Pending)
        .ok_or_else(|| {
            ReverseError::new(
                "ledger_mismatch",
                "the request has no reservation in the ledger",
            )
        })?;
    if !entries
        .iter()
        .any(|e| matches!(&e.kind, EntryKind::PostPending { pending } if pending == &id))
    {
        return Err(ReverseError::retryable(
            "ledger_mismatch",
            "the request's reservation is not posted yet; run the command again shortly",
        ));
    }
    Ok(reservation.clone())
}
