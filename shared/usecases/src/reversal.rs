//! Reverse: taking back points a credited request gave. Recorded on the
//! request (so two reversals cannot together take back more than was
//! credited), asked of the partner under its id, written to the ledger as a
//! new entry, settled on the request. Each step is safe to run again, so a
//! repeat, or a run after a crash, finishes what is left. Operators'
//! `reverse` and the clawbacks of undone source events both come here.

use std::collections::HashMap;
use std::sync::Arc;

use pointsflow_core::ledger::{Entry, EntryKind, LedgerError};
use pointsflow_core::partner::{ReversalInstruction, ReversalOutcome};
use pointsflow_core::ports::{
    Clock, LedgerRead, LedgerWrite, PartnerConnector, ProgramCatalog, RequestGet, RequestUpdate,
    StoreError,
};
use pointsflow_core::reason::Reason;
use pointsflow_core::request::PointsRequest;
use pointsflow_core::reversal::{Requested, Reversal, ReversalError, ReversalState};
use pointsflow_core::values::{PartnerId, Points, ProgramId, RequestId};
use pointsflow_runtime::metrics::{self, Unit};

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

/// Why a reversal was not carried out (or not all the way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReverseError {
    #[error("no request {0}")]
    NotFound(RequestId),
    /// The request cannot be reversed so (not credited, too many points, an
    /// id reused for other points, a bad id or reason).
    #[error(transparent)]
    Refused(#[from] ReversalError),
    #[error("program {0} is not configured")]
    ProgramUnknown(ProgramId),
    #[error("partner {0} is not configured")]
    PartnerNotConfigured(PartnerId),
    #[error("the request has no reservation in the ledger")]
    NoReservation,
    #[error("the request's reservation is not posted yet; run the command again shortly")]
    NotPostedYet,
    #[error("a credited request without a partner reference")]
    NoReference,
    #[error("the ledger: {0}")]
    Ledger(LedgerError),
    #[error("the partner refused reversal {id}: {} ({})", reason.message, reason.code)]
    PartnerRefused { id: String, reason: Reason },
    #[error(
        "the partner did not answer or was not called ({detail}); the reversal is recorded: run the same command again"
    )]
    PartnerUnavailable { detail: String },
    #[error("the store: {0}; run it again")]
    Store(StoreError),
    #[error("the request kept changing; run the command again")]
    Busy,
    /// The request's reversals would together pass `limit` (another
    /// reversal was recorded meanwhile): an admin's proposal, not this.
    #[error(
        "the request's reversals would come to {total} points, above the {limit} this may take back"
    )]
    AboveLimit { limit: Points, total: u64 },
}

impl ReverseError {
    /// The stable code the edges answer with.
    pub fn code(&self) -> &'static str {
        match self {
            ReverseError::NotFound(_) | ReverseError::ProgramUnknown(_) => "not_found",
            ReverseError::Refused(e) => e.code(),
            ReverseError::PartnerNotConfigured(_) => "partner_not_configured",
            ReverseError::NoReservation
            | ReverseError::NotPostedYet
            | ReverseError::NoReference => "ledger_mismatch",
            ReverseError::Ledger(e) if e.is_transient() => "unavailable",
            ReverseError::Ledger(_) => "ledger_mismatch",
            ReverseError::PartnerRefused { .. } => "partner_refused",
            ReverseError::PartnerUnavailable { .. } => "partner_unavailable",
            ReverseError::Store(_) | ReverseError::Busy => "unavailable",
            ReverseError::AboveLimit { .. } => "forbidden",
        }
    }

    /// Whether running the same reversal again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReverseError::PartnerNotConfigured(_)
            | ReverseError::NotPostedYet
            | ReverseError::PartnerUnavailable { .. }
            | ReverseError::Busy => true,
            ReverseError::Ledger(e) => e.is_transient(),
            ReverseError::Store(e) => e.is_transient(),
            ReverseError::NotFound(_)
            | ReverseError::Refused(_)
            | ReverseError::ProgramUnknown(_)
            | ReverseError::NoReservation
            | ReverseError::NoReference
            | ReverseError::PartnerRefused { .. }
            | ReverseError::AboveLimit { .. } => false,
        }
    }
}

async fn load(ports: ReversePorts<'_>, id: &RequestId) -> Result<PointsRequest, ReverseError> {
    ports
        .get
        .get(id)
        .await
        .map_err(ReverseError::Store)?
        .ok_or_else(|| ReverseError::NotFound(id.clone()))
}

/// Records the reversal on the request, asks the partner, writes the
/// ledger entry, and settles the reversal on the request; each step is
/// safe to run again, so a repeat (or a run after a crash) finishes
/// what is left. With a `limit`, a new reversal is recorded only while
/// the request's reversals together stay within it, checked against the
/// very version it is written over, so reversals sent at once cannot pass
/// it together.
pub async fn reverse(
    ports: ReversePorts<'_>,
    id: &RequestId,
    reversal_id: &str,
    points: Option<Points>,
    reason: &str,
    by: &str,
    limit: Option<Points>,
) -> Result<Reversal, ReverseError> {
    let (mut request, reversal) =
        record_reversal(ports, id, reversal_id, points, reason, by, limit).await?;
    if reversal.state != ReversalState::Requested {
        return Ok(reversal);
    }
    let entries = ports
        .ledger_read
        .entries_for(id)
        .await
        .map_err(ReverseError::Ledger)?;
    let reservation = posted_reservation(&request, &entries)?;
    let destination = match &request.destination {
        Some(d) => d.clone(),
        None => ports
            .programs
            .program(&request.program)
            .ok_or_else(|| ReverseError::ProgramUnknown(request.program.clone()))?
            .destination
            .clone(),
    };
    let connector = ports
        .partners
        .get(&destination.partner)
        .ok_or_else(|| ReverseError::PartnerNotConfigured(destination.partner.clone()))?;
    let reference = request
        .partner_reference
        .clone()
        .ok_or(ReverseError::NoReference)?;
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
                .ok_or(ReverseError::NoReservation)?;
            ports
                .ledger_write
                .apply(&[entry])
                .await
                .map_err(ReverseError::Ledger)?;
            ReversalState::Done { partner_reversal }
        }
        ReversalOutcome::Refused(reason) => ReversalState::Refused { reason },
        ReversalOutcome::Unknown { detail } => {
            return Err(ReverseError::PartnerUnavailable { detail });
        }
        ReversalOutcome::NotAttempted { reason } => {
            return Err(ReverseError::PartnerUnavailable {
                detail: format!("not called: {reason}"),
            });
        }
    };
    // Settle it on the request, reading again on a conflict.
    for _ in 0..5 {
        let changed = request.settle_reversal(&reversal.id, settled.clone(), ports.clock.now())?;
        if !changed {
            break;
        }
        match ports.update.update(&request).await {
            Ok(_) => {
                if matches!(settled, ReversalState::Done { .. }) {
                    metrics::put(
                        ("Program", request.program.as_str()),
                        &[
                            ("RequestsReversed", 1.0, Unit::Count),
                            ("PointsReversed", reversal.points.get() as f64, Unit::Count),
                        ],
                    );
                }
                break;
            }
            Err(StoreError::Conflict { .. }) => request = load(ports, id).await?,
            Err(e) => return Err(ReverseError::Store(e)),
        }
    }
    let done = Reversal {
        state: settled.clone(),
        ..reversal
    };
    match settled {
        ReversalState::Refused { reason } => Err(ReverseError::PartnerRefused {
            id: done.id,
            reason,
        }),
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
    limit: Option<Points>,
) -> Result<(PointsRequest, Reversal), ReverseError> {
    for _ in 0..5 {
        let mut request = load(ports, id).await?;
        match request.request_reversal(reversal_id, points, reason, by, ports.clock.now())? {
            Requested::Existing(r) => return Ok((request, r)),
            Requested::New(r) => {
                // `request` now holds the new reversal: its total is
                // checked on the version the update is conditional on.
                let total = request.reversed_points();
                if let Some(limit) = limit
                    && total > limit.get()
                {
                    return Err(ReverseError::AboveLimit { limit, total });
                }
                match ports.update.update(&request).await {
                    Ok(version) => {
                        request.version = version;
                        return Ok((request, r));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(ReverseError::Store(e)),
                }
            }
        }
    }
    Err(ReverseError::Busy)
}

/// The request's reservation, which must be posted before anything can be
/// taken back.
fn posted_reservation(request: &PointsRequest, entries: &[Entry]) -> Result<Entry, ReverseError> {
    let id = request.reservation_id();
    let reservation = entries
        .iter()
        .find(|e| e.id == id && e.kind == EntryKind::Pending)
        .ok_or(ReverseError::NoReservation)?;
    if !entries
        .iter()
        .any(|e| matches!(&e.kind, EntryKind::PostPending { pending } if pending == &id))
    {
        return Err(ReverseError::NotPostedYet);
    }
    Ok(reservation.clone())
}
