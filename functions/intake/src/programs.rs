//! `/v1/programs`: operators read the programs in force and apply new
//! revisions (`pointsflow programs apply`). A revision is stored only over
//! the one its author read, checked against this stack's partners and
//! sources, and reaches every function within the refresh interval.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pointsflow_config::{ConfigError, Known};
use pointsflow_core::ports::StoredProgram;
use pointsflow_core::program::Program;
use pointsflow_core::values::{OperatorId, ProgramId};
use pointsflow_usecases::programs::ApplyError;
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// A program as `GET` shows it: revision 0 is the configuration's own.
#[derive(Debug, Serialize)]
pub struct ProgramView<'a> {
    pub program: &'a Program,
    pub revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<&'a OperatorId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
}

impl<'a> ProgramView<'a> {
    pub fn configured(program: &'a Program) -> Self {
        Self {
            program,
            revision: 0,
            applied_by: None,
            applied_at: None,
        }
    }

    pub fn applied(stored: &'a StoredProgram) -> Self {
        Self {
            program: &stored.program,
            revision: stored.revision,
            applied_by: Some(&stored.applied_by),
            applied_at: Some(stored.applied_at),
        }
    }
}

/// Every program: the configuration's, overlaid by the applied ones.
pub fn in_force<'a>(
    configured: &'a [Program],
    applied: &'a [StoredProgram],
) -> BTreeMap<&'a ProgramId, ProgramView<'a>> {
    let mut all: BTreeMap<&ProgramId, ProgramView> = configured
        .iter()
        .map(|p| (&p.id, ProgramView::configured(p)))
        .collect();
    for stored in applied {
        all.insert(&stored.program.id, ProgramView::applied(stored));
    }
    all
}

/// The body of `PUT /v1/programs/{program}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    /// The revision this becomes: the one read, plus one.
    pub revision: u64,
    pub program: Program,
}

/// The checked revision to store, or why not.
pub fn revision_to_store(
    path_id: &str,
    body: ApplyBody,
    known: &Known,
    by: &OperatorId,
    at: DateTime<Utc>,
) -> Result<StoredProgram, Problem> {
    if body.program.id.as_str() != path_id {
        return Err(Problem::invalid_field(
            "/program/id",
            format!(
                "/program/id: is '{}' but the URL names program '{path_id}'",
                body.program.id
            ),
        ));
    }
    known.check(&body.program).map_err(|e| {
        let pointer = match &e {
            ConfigError::Invalid { field, .. } => format!("/program/{}", field.replace('.', "/")),
            _ => "/program".to_owned(),
        };
        Problem::invalid_field(pointer, e.to_string())
    })?;
    if body.revision == 0 {
        return Err(Problem::invalid_field(
            "/revision",
            "/revision: must be the revision read plus one (1 for a program never applied)",
        ));
    }
    Ok(StoredProgram {
        program: body.program,
        revision: body.revision,
        applied_by: by.clone(),
        applied_at: at,
    })
}

/// A revision that was not applied (or not set going), as an answer.
pub fn apply_failed(e: &ApplyError) -> Problem {
    match e {
        ApplyError::Conflict { .. } => Problem::revision_conflict(e.to_string()),
        other => {
            tracing::error!(error = %other, "could not apply the program");
            Problem::unavailable(other.to_string())
        }
    }
}
