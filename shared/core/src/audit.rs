//! The audit log's entries: who ran which command when, and what came of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{Principal, Verified};

/// One command an operator ran, as the audit log keeps it. Written when the
/// command starts (`outcome` none) and again, under the same id, when it
/// ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique per invocation: `{time}-{random}`.
    pub id: String,
    pub operator: Principal,
    /// How the operator's identity was established (`declared`: written
    /// into a direct invocation by whoever invoked it).
    #[serde(default = "key")]
    pub verified: Verified,
    /// `get`, `reverse`, ...
    pub command: String,
    /// The command's arguments, as given.
    pub arguments: serde_json::Value,
    /// The request the command is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditOutcome>,
}

/// How a command ended: `ok` with a one-line summary, or the error's code
/// and sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditOutcome {
    pub ok: bool,
    /// `ok`, or the error's stable code.
    pub code: String,
    pub summary: String,
    pub finished_at: DateTime<Utc>,
}

fn key() -> Verified {
    Verified::Key
}
