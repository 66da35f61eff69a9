//! Reversals: taking back points a credited request gave, all of them or a
//! part, because an operator says so or because the source undid the event
//! (the Opportunity left Closed Won, the recognition was withdrawn).
//!
//! A reversal is recorded on the request first (a versioned write: two
//! reversals racing cannot together take back more than was credited), then
//! asked of the partner under its own id, then written to the ledger as a new
//! entry; nothing already written is changed. A crash anywhere in between
//! leaves a `requested` reversal that running the reversal again finishes.
//! When every credited point is taken back the request becomes `reversed`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::reason::Reason;
use crate::request::status::StatusKind;
use crate::values::Points;

/// The longest reversal id: it travels to the partner.
pub const MAX_REVERSAL_ID_CHARS: usize = 64;

/// One reversal of a request, as recorded on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    /// Unique within the request; sent to the partner.
    pub id: String,
    pub points: Points,
    pub reason: String,
    /// Who asked: an operator's id, or `source:<source id>` for a clawback.
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub state: ReversalState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reversal_state", rename_all = "snake_case")]
pub enum ReversalState {
    /// Recorded; the partner and the ledger may not have it yet.
    Requested,
    /// The partner took the points back and the ledger has the entry.
    Done { partner_reversal: String },
    /// The partner refused; nothing was taken back.
    Refused { reason: Reason },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReversalError {
    #[error("the request is {state}; only a credited request can be reversed")]
    NotCredited { state: StatusKind },
    #[error(
        "{requested} points would exceed what is left to reverse: {credited} credited, {reversed} reversed or being reversed"
    )]
    ExceedsCredited {
        credited: u64,
        reversed: u64,
        requested: u64,
    },
    #[error("reversal {id} was asked for {was} points, not {now}")]
    IdReused { id: String, was: u64, now: u64 },
    #[error("{0}")]
    Invalid(&'static str),
}

impl ReversalError {
    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ReversalError::NotCredited { .. } => "not_credited",
            ReversalError::ExceedsCredited { .. } => "reversal_exceeds_credit",
            ReversalError::IdReused { .. } => "reversal_id_reused",
            ReversalError::Invalid(_) => "invalid_field",
        }
    }
}

/// What [`PointsRequest::request_reversal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// Recorded now: save the request, then carry it out.
    New(Reversal),
    /// A reversal with this id is recorded already (a repeat): carry it out
    /// if it is still `requested`, otherwise report it.
    Existing(Reversal),
}
