//! The operations function: the commands operators run on requests, from a
//! console test event, the `pointsflow` CLI or a schedule. An invocation is
//! a JSON object naming the operator and the command:
//!
//! ```json
//! {"operator": "ana", "command": "reverse", "request_id": "req_...",
//!  "points": 500, "reason": "deal reopened"}
//! ```
//!
//! Every command is validated before anything is read, recorded in the
//! audit log when it starts and again when it ends (who, when, what, the
//! result), and answered with `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": {"code", "message", "retryable"}}`. A command run
//! twice has the effect of once: approvals and declines are kept on the
//! request, a reversal has an id (derived from the command when none is
//! given), a resolve or a redrive does again only what is still to do.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pointsflow_core::approval::ApprovalDecision;
use pointsflow_core::audit::{AuditEntry, AuditOutcome};
use pointsflow_core::ledger::Entry;
use pointsflow_core::ports::PublishCallback;
use pointsflow_core::ports::{AuditLog, DeadLetters, RequestSearch};
use pointsflow_core::ports::{
    Clock, LedgerRead, LedgerWrite, PartnerConnector, ProgramCatalog, Publish, RequestGet,
    RequestUpdate, StoreError,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::reversal::{Reversal, ReversalState};
use pointsflow_core::search::SearchFilter;
use pointsflow_core::values::{OperatorId, PartnerId, Points, RequestId};
use pointsflow_usecases::approval::{DecideError, DecidePorts};
use pointsflow_usecases::notify::{NotifyError, NotifyPorts};
use pointsflow_usecases::reconcile::{ReconcileError, ReconcilePorts};
use pointsflow_usecases::resolve::{ResolveError, ResolvePorts};
use pointsflow_usecases::retry::{RetryPorts, RetryRequestError};
use pointsflow_usecases::reversal::{ReverseError, ReversePorts};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The most requests one `search` returns.
pub const MAX_SEARCH_RESULTS: usize = 1_000;
/// The most messages one `redrive` moves.
pub const MAX_REDRIVE: u64 = 100_000;

pub use pointsflow_core::ports::QueueName;

/// The commands, as an invocation names them (`"command": "get"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// A request with its whole timeline and ledger entries.
    Get { request_id: RequestId },
    /// Requests by source record id, recipient, member number, status,
    /// window or program.
    Search {
        #[serde(default)]
        source_record: Option<String>,
        #[serde(default)]
        recipient: Option<pointsflow_core::values::RecipientId>,
        #[serde(default)]
        member: Option<pointsflow_core::values::MemberNumber>,
        #[serde(default)]
        status: Option<StatusKind>,
        #[serde(default)]
        window: Option<String>,
        #[serde(default)]
        program: Option<pointsflow_core::values::ProgramId>,
        #[serde(default)]
        limit: Option<usize>,
    },
    Approve {
        request_id: RequestId,
        #[serde(default)]
        reason: Option<String>,
    },
    Decline {
        request_id: RequestId,
        reason: String,
    },
    /// Sends a failed (or rejected) request through eligibility again
    /// once its cause is fixed: a new round, reserved anew and credited
    /// under a new partner reference.
    Retry {
        request_id: RequestId,
        reason: String,
    },
    /// Looks the partner's outcome of an unsettled request up now.
    Resolve { request_id: RequestId },
    /// Takes back `points` of a credited request (everything left when
    /// absent). `reversal_id` makes a repeat harmless; without one it is
    /// derived from the request, the points and the reason.
    Reverse {
        request_id: RequestId,
        #[serde(default)]
        points: Option<Points>,
        reason: String,
        #[serde(default)]
        reversal_id: Option<String>,
    },
    /// Compares the requests, the ledger and the partner's statement for a
    /// window, a period (`from`, `to`: dates or RFC 3339 times, `to`
    /// excluded), or the last `last_hours` (what a schedule runs).
    Reconcile {
        #[serde(default)]
        window: Option<String>,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        last_hours: Option<u32>,
        #[serde(default)]
        program: Option<pointsflow_core::values::ProgramId>,
    },
    /// A stored reconciliation report, by its id (`window:...`, `period:...`).
    Report { id: String },
    /// The commands operators ran on a day (UTC; today when absent).
    Audit {
        #[serde(default)]
        day: Option<chrono::NaiveDate>,
    },
    /// Sends a request's final status to its source's callback again.
    Notify { request_id: RequestId },
    /// Moves dead letters back to their queue after a fix.
    Redrive {
        queue: QueueName,
        #[serde(default)]
        max: Option<u64>,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Search { .. } => "search",
            Command::Approve { .. } => "approve",
            Command::Decline { .. } => "decline",
            Command::Retry { .. } => "retry",
            Command::Resolve { .. } => "resolve",
            Command::Reverse { .. } => "reverse",
            Command::Reconcile { .. } => "reconcile",
            Command::Report { .. } => "report",
            Command::Audit { .. } => "audit",
            Command::Notify { .. } => "notify",
            Command::Redrive { .. } => "redrive",
        }
    }

    fn request(&self) -> Option<&RequestId> {
        match self {
            Command::Get { request_id }
            | Command::Approve { request_id, .. }
            | Command::Decline { request_id, .. }
            | Command::Resolve { request_id }
            | Command::Retry { request_id, .. }
            | Command::Notify { request_id }
            | Command::Reverse { request_id, .. } => Some(request_id),
            _ => None,
        }
    }
}

/// A command that could not be carried out, as the answer says it: a
/// stable code, a sentence, and whether running it again later may
/// succeed. Made only here, from each use case's typed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct OpError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl OpError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }

    /// `what` failed for now (a store, a queue, the ledger).
    pub fn unavailable(what: &str, e: impl std::fmt::Display) -> Self {
        Self {
            retryable: true,
            ..Self::new("unavailable", format!("{what}: {e}; run it again"))
        }
    }

    pub fn not_found(id: &RequestId) -> Self {
        Self::new("not_found", format!("no request {id}"))
    }

    fn of(code: &str, message: String, retryable: bool) -> Self {
        Self {
            retryable,
            ..Self::new(code, message)
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        let retryable = e.is_transient();
        Self::of("unavailable", format!("the store: {e}"), retryable)
    }
}

impl From<DecideError> for OpError {
    fn from(e: DecideError) -> Self {
        match &e {
            DecideError::NotFound => Self::new("not_found", e.to_string()),
            DecideError::Approval(a) => Self::new(a.code(), a.to_string()),
            _ => Self::of(
                "unavailable",
                format!("{e}; run the command again"),
                e.is_retryable(),
            ),
        }
    }
}

macro_rules! from_use_case {
    ($($error:ty),*) => {$(
        impl From<$error> for OpError {
            fn from(e: $error) -> Self {
                Self::of(e.code(), e.to_string(), e.is_retryable())
            }
        }
    )*};
}

from_use_case!(
    ReverseError,
    RetryRequestError,
    ResolveError,
    NotifyError,
    ReconcileError
);

/// What an invocation is answered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The audit entry of this invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OpError>,
}

/// An invocation, parsed: who runs which command.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub operator: OperatorId,
    pub command: Command,
    /// The command as given, for the audit log.
    pub arguments: Value,
}

impl Invocation {
    /// Reads `{"operator": ..., "command": ..., ...}`; the error names the
    /// field that is wrong.
    pub fn parse(event: Value) -> Result<Self, OpError> {
        let Value::Object(mut fields) = event else {
            return Err(OpError::new(
                "invalid_command",
                "an invocation is a JSON object with 'operator' and 'command'",
            ));
        };
        let operator = match fields.remove("operator") {
            Some(Value::String(s)) => OperatorId::parse(&s)
                .map_err(|e| OpError::new("invalid_command", format!("operator: {e}")))?,
            Some(_) => {
                return Err(OpError::new(
                    "invalid_command",
                    "operator: must be a string (who is running the command)",
                ));
            }
            None => {
                return Err(OpError::new(
                    "invalid_command",
                    "operator: missing (who is running the command)",
                ));
            }
        };
        let arguments = Value::Object(fields);
        let command: Command = serde_path_to_error::deserialize(&arguments).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            OpError::new(
                "invalid_command",
                if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                },
            )
        })?;
        Ok(Self {
            operator,
            command,
            arguments,
        })
    }
}

/// The ports the commands use.
#[derive(Clone)]
pub struct OperationsPorts {
    pub get: Arc<dyn RequestGet>,
    pub update: Arc<dyn RequestUpdate>,
    pub search: Arc<dyn RequestSearch>,
    pub ledger_read: Arc<dyn LedgerRead>,
    pub ledger_write: Arc<dyn LedgerWrite>,
    pub programs: Arc<dyn ProgramCatalog>,
    pub partners: HashMap<PartnerId, Arc<dyn PartnerConnector>>,
    pub clock: Arc<dyn Clock>,
    /// Where approved requests go to be reserved.
    pub eligibility: Arc<dyn Publish>,
    /// Where requests go for a status look-up.
    pub dispatch: Arc<dyn Publish>,
    pub audit: Arc<dyn AuditLog>,
    pub dead_letters: HashMap<QueueName, Arc<dyn DeadLetters>>,
    /// The requests of a reconciliation's scope, and where reports go.
    pub lines: Arc<dyn pointsflow_core::ports::RequestLines>,
    pub reports: Arc<dyn pointsflow_core::ports::ReportStore>,
    /// The callbacks queue, when a source has a callback.
    pub callbacks: Option<Arc<dyn PublishCallback>>,
}

#[derive(Clone)]
pub struct Operations {
    ports: OperationsPorts,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations").finish_non_exhaustive()
    }
}

fn audit_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{:08x}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        rand::random::<u32>()
    )
}

/// A reversal's id when the operator gave none: the same request, points
/// and reason give the same id, so the same command twice reverses once.
fn derived_reversal_id(request: &RequestId, points: Option<Points>, reason: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(request.as_str().as_bytes());
    h.update(b"\0");
    h.update(points.map_or("all".to_owned(), |p| p.get().to_string()));
    h.update(b"\0");
    h.update(reason.trim().as_bytes());
    format!("op-{}", &hex::encode(h.finalize())[..16])
}

impl Operations {
    pub fn new(ports: OperationsPorts) -> Self {
        Self { ports }
    }

    /// The Lambda handler: any JSON in, an [`Answer`] out (never an error
    /// the console shows as a failed invocation for a bad command).
    pub async fn handle(
        &self,
        event: lambda_runtime::LambdaEvent<Value>,
    ) -> Result<Value, lambda_runtime::Error> {
        let answer = self.invoke(event.payload).await;
        Ok(serde_json::to_value(answer)?)
    }

    /// Parses, audits and runs one invocation.
    pub async fn invoke(&self, event: Value) -> Answer {
        let invocation = match Invocation::parse(event) {
            Ok(i) => i,
            Err(error) => {
                tracing::warn!(code = %error.code, message = %error.message, "refused an invocation");
                return Answer {
                    ok: false,
                    command: None,
                    audit_id: None,
                    result: None,
                    error: Some(error),
                };
            }
        };
        self.run(invocation).await
    }

    #[tracing::instrument(name = "operations", skip_all, fields(command = invocation.command.name(), operator = %invocation.operator, request_id))]
    pub async fn run(&self, invocation: Invocation) -> Answer {
        let name = invocation.command.name();
        if let Some(id) = invocation.command.request() {
            tracing::Span::current().record("request_id", id.as_str());
        }
        let mut entry = AuditEntry {
            id: audit_id(self.ports.clock.now()),
            operator: invocation.operator.clone(),
            command: name.to_owned(),
            arguments: invocation.arguments.clone(),
            request: invocation.command.request().map(|r| r.to_string()),
            started_at: self.ports.clock.now(),
            outcome: None,
        };
        let answer = |ok: bool, result: Option<Value>, error: Option<OpError>, id: &str| Answer {
            ok,
            command: Some(name.to_owned()),
            audit_id: Some(id.to_owned()),
            result,
            error,
        };
        // Nothing is done that the audit log does not show.
        if let Err(e) = self.ports.audit.record(&entry).await {
            tracing::error!(error = %e, "could not write the audit entry; nothing done");
            return answer(
                false,
                None,
                Some(OpError::unavailable("the audit log", e)),
                &entry.id,
            );
        }
        let outcome = self.execute(&invocation).await;
        let (ok, code, summary) = match &outcome {
            Ok((_, summary)) => (true, "ok".to_owned(), summary.clone()),
            Err(e) => (false, e.code.clone(), e.message.clone()),
        };
        entry.outcome = Some(AuditOutcome {
            ok,
            code,
            summary,
            finished_at: self.ports.clock.now(),
        });
        if let Err(e) = self.ports.audit.record(&entry).await {
            // The start is recorded; the command's own records (the
            // request's timeline, the ledger) say what it did.
            tracing::error!(error = %e, "could not record the command's end in the audit log");
        }
        match outcome {
            Ok((result, summary)) => {
                tracing::info!(%summary, "done");
                answer(true, Some(result), None, &entry.id)
            }
            Err(error) => {
                tracing::warn!(code = %error.code, message = %error.message, "refused");
                answer(false, None, Some(error), &entry.id)
            }
        }
    }

    /// Runs the command: its result and a one-line summary for the audit log.
    async fn execute(&self, invocation: &Invocation) -> Result<(Value, String), OpError> {
        let by = &invocation.operator;
        match &invocation.command {
            Command::Get { request_id } => {
                let request = self.load(request_id).await?;
                let entries = self.entries(request_id).await?;
                let summary = format!("{request_id} is {}", request.state());
                Ok((json!({ "request": request, "entries": entries }), summary))
            }
            Command::Search {
                source_record,
                recipient,
                member,
                status,
                window,
                program,
                limit,
            } => {
                let filter = SearchFilter {
                    source_record: source_record.clone(),
                    recipient: recipient.clone(),
                    member: member.clone(),
                    status: *status,
                    window: window.clone(),
                    program: program.clone(),
                };
                self.search(&filter, *limit).await
            }
            Command::Approve { request_id, reason } => {
                self.decide(request_id, ApprovalDecision::Approve, by, reason.as_deref())
                    .await
            }
            Command::Decline { request_id, reason } => {
                self.decide(request_id, ApprovalDecision::Decline, by, Some(reason))
                    .await
            }
            Command::Resolve { request_id } => self.resolve(request_id).await,
            Command::Retry { request_id, reason } => self.retry(request_id, by, reason).await,
            Command::Reverse {
                request_id,
                points,
                reason,
                reversal_id,
            } => {
                let id = reversal_id
                    .clone()
                    .unwrap_or_else(|| derived_reversal_id(request_id, *points, reason));
                let reversal = self
                    .reverse(request_id, &id, *points, reason, by.as_str())
                    .await?;
                let summary = format!(
                    "reversal {} of {} points: {}",
                    reversal.id,
                    reversal.points,
                    state_name(&reversal.state)
                );
                Ok((
                    json!({ "request_id": request_id, "reversal": reversal }),
                    summary,
                ))
            }
            Command::Reconcile {
                window,
                from,
                to,
                last_hours,
                program,
            } => {
                let scope = self.scope(
                    window.as_deref(),
                    from.as_deref(),
                    to.as_deref(),
                    *last_hours,
                    program.clone(),
                )?;
                let report = self.reconcile(&scope).await?;
                let summary = report.summary();
                let value = serde_json::to_value(&report)
                    .map_err(|e| OpError::unavailable("the report", e))?;
                Ok((value, summary))
            }
            Command::Report { id } => {
                let report = self.ports.reports.report(id).await?.ok_or_else(|| {
                    OpError::new("not_found", format!("no reconciliation report {id}"))
                })?;
                let summary = report.summary();
                let value = serde_json::to_value(&report)
                    .map_err(|e| OpError::unavailable("the report", e))?;
                Ok((value, summary))
            }
            Command::Audit { day } => {
                let day = day.unwrap_or_else(|| self.ports.clock.now().date_naive());
                let entries = self.ports.audit.entries(day).await?;
                let summary = format!("{} commands on {day}", entries.len());
                Ok((json!({ "day": day, "entries": entries }), summary))
            }
            Command::Notify { request_id } => self.notify(request_id).await,
            Command::Redrive { queue, max } => self.redrive(*queue, *max).await,
        }
    }

    /// The scope a `reconcile` names: a window, a period, or the last hours.
    fn scope(
        &self,
        window: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        last_hours: Option<u32>,
        program: Option<pointsflow_core::values::ProgramId>,
    ) -> Result<pointsflow_core::reconcile::Scope, OpError> {
        use pointsflow_core::reconcile::Scope;
        let invalid = |m: String| OpError::new("invalid_command", m);
        let instant = |name: &str, raw: &str| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|t| t.and_utc())
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "{name}: '{raw}' is neither a date (2026-11-27) nor an RFC 3339 time"
                    ))
                })
        };
        match (window, from, to, last_hours) {
            (Some(w), None, None, None) => {
                let window = pointsflow_core::window::WindowId::parse(w)
                    .map_err(|e| invalid(format!("window: {e}")))?;
                if program.is_some() {
                    return Err(invalid("program: a window names its program".into()));
                }
                Ok(Scope::Window(window))
            }
            (None, Some(f), Some(t), None) => {
                let (from, to) = (instant("from", f)?, instant("to", t)?);
                if from >= to {
                    return Err(invalid("to: must be after from".into()));
                }
                if to - from > chrono::Duration::days(31) {
                    return Err(invalid("to: a period is at most 31 days".into()));
                }
                Ok(Scope::Period { from, to, program })
            }
            (None, None, None, Some(h)) if (1..=744).contains(&h) => {
                let to = self.ports.clock.now();
                Ok(Scope::Period {
                    from: to - chrono::Duration::hours(i64::from(h)),
                    to,
                    program,
                })
            }
            (None, None, None, Some(_)) => Err(invalid("last_hours: must be 1 to 744".into())),
            _ => Err(invalid(
                "reconcile needs one of: window; from and to; last_hours".into(),
            )),
        }
    }

    async fn load(&self, id: &RequestId) -> Result<PointsRequest, OpError> {
        self.ports
            .get
            .get(id)
            .await?
            .ok_or_else(|| OpError::not_found(id))
    }

    async fn entries(&self, id: &RequestId) -> Result<Vec<Entry>, OpError> {
        self.ports
            .ledger_read
            .entries_for(id)
            .await
            .map_err(|e| OpError::unavailable("the ledger", e))
    }

    async fn search(
        &self,
        filter: &SearchFilter,
        limit: Option<usize>,
    ) -> Result<(Value, String), OpError> {
        if filter.is_empty() {
            return Err(OpError::new(
                "invalid_command",
                "search needs at least one of source_record, recipient, member, status, window, program",
            ));
        }
        let limit = limit.unwrap_or(100);
        if limit == 0 || limit > MAX_SEARCH_RESULTS {
            return Err(OpError::new(
                "invalid_command",
                format!("limit: must be 1 to {MAX_SEARCH_RESULTS}"),
            ));
        }
        let found = self.ports.search.search(filter, limit).await?;
        let rows: Vec<Value> = found
            .iter()
            .map(|r| {
                json!({
                    "request_id": r.id,
                    "source": r.source,
                    "source_record": r.event.id,
                    "program": r.program,
                    "recipient": r.recipient.id,
                    "member": r.member,
                    "state": r.state(),
                    "points": r.points,
                    "received_at": r.received_at,
                })
            })
            .collect();
        let summary = format!("{} requests found", rows.len());
        Ok((
            json!({ "requests": rows, "truncated": found.len() == limit }),
            summary,
        ))
    }

    async fn decide(
        &self,
        id: &RequestId,
        decision: ApprovalDecision,
        by: &OperatorId,
        reason: Option<&str>,
    ) -> Result<(Value, String), OpError> {
        let ports = DecidePorts {
            get: self.ports.get.as_ref(),
            update: self.ports.update.as_ref(),
            eligibility: self.ports.eligibility.as_ref(),
            clock: self.ports.clock.as_ref(),
        };
        let (request, changed) =
            pointsflow_usecases::approval::decide(ports, id, decision, by, reason).await?;
        let summary = format!(
            "{id} {decision}{}; now {}",
            if changed { "" } else { " already" },
            request.state()
        );
        Ok((
            json!({ "request_id": id, "state": request.state(), "changed": changed, "approval": request.approval }),
            summary,
        ))
    }

    async fn retry(
        &self,
        id: &RequestId,
        by: &OperatorId,
        reason: &str,
    ) -> Result<(Value, String), OpError> {
        let ports = RetryPorts {
            get: self.ports.get.as_ref(),
            update: self.ports.update.as_ref(),
            eligibility: self.ports.eligibility.as_ref(),
            clock: self.ports.clock.as_ref(),
        };
        let retried = pointsflow_usecases::retry::retry(ports, id, by, reason).await?;
        let round = retried.request.round + 1;
        Ok((
            json!({ "request_id": id, "state": retried.request.state(), "round": round, "changed": retried.changed }),
            format!(
                "{id} {} (round {round})",
                if retried.changed {
                    "retried"
                } else {
                    "already retried"
                }
            ),
        ))
    }

    async fn resolve(&self, id: &RequestId) -> Result<(Value, String), OpError> {
        let ports = ResolvePorts {
            get: self.ports.get.as_ref(),
            dispatch: self.ports.dispatch.as_ref(),
        };
        let request = pointsflow_usecases::resolve::resolve(ports, id).await?;
        let state = request.state();
        Ok((
            json!({ "request_id": id, "state": state, "queued": true, "reference": request.partner_reference }),
            format!("{id} ({state}) queued for a status look-up"),
        ))
    }

    async fn notify(&self, id: &RequestId) -> Result<(Value, String), OpError> {
        let ports = NotifyPorts {
            get: self.ports.get.as_ref(),
            callbacks: self.ports.callbacks.as_deref(),
        };
        let message = pointsflow_usecases::notify::notify(ports, id).await?;
        let state = message.state;
        Ok((
            json!({ "request_id": id, "state": state, "event_id": message.event_id(), "queued": true }),
            format!("{id}'s status {state} queued for its callback"),
        ))
    }

    /// Carries out a reversal (see `pointsflow_usecases::reversal`).
    pub async fn reverse(
        &self,
        id: &RequestId,
        reversal_id: &str,
        points: Option<Points>,
        reason: &str,
        by: &str,
    ) -> Result<Reversal, OpError> {
        let ports = ReversePorts {
            get: self.ports.get.as_ref(),
            update: self.ports.update.as_ref(),
            ledger_read: self.ports.ledger_read.as_ref(),
            ledger_write: self.ports.ledger_write.as_ref(),
            programs: self.ports.programs.as_ref(),
            partners: &self.ports.partners,
            clock: self.ports.clock.as_ref(),
        };
        Ok(
            pointsflow_usecases::reversal::reverse(ports, id, reversal_id, points, reason, by)
                .await?,
        )
    }

    /// Reconciles `scope` (see `pointsflow_usecases::reconcile`).
    pub async fn reconcile(
        &self,
        scope: &pointsflow_core::reconcile::Scope,
    ) -> Result<pointsflow_core::reconcile::ReconcileReport, OpError> {
        let ports = ReconcilePorts {
            lines: self.ports.lines.clone(),
            ledger_read: self.ports.ledger_read.clone(),
            programs: self.ports.programs.clone(),
            partners: self.ports.partners.clone(),
            reports: self.ports.reports.clone(),
            clock: self.ports.clock.clone(),
        };
        Ok(ports.reconcile(scope).await?)
    }

    async fn redrive(
        &self,
        queue: QueueName,
        max: Option<u64>,
    ) -> Result<(Value, String), OpError> {
        let max = max.unwrap_or(MAX_REDRIVE);
        if max == 0 || max > MAX_REDRIVE {
            return Err(OpError::new(
                "invalid_command",
                format!("max: must be 1 to {MAX_REDRIVE}"),
            ));
        }
        let dlq = self.ports.dead_letters.get(&queue).ok_or_else(|| {
            OpError::new(
                "invalid_command",
                format!("queue: {queue:?} has no dead-letter queue here"),
            )
        })?;
        let report = dlq
            .redrive(max)
            .await
            .map_err(|e| OpError::unavailable("the queue", e))?;
        let summary = format!(
            "{} moved, {} failed, {} left",
            report.moved, report.failed, report.left
        );
        Ok((json!({ "queue": queue, "report": report }), summary))
    }
}

fn state_name(state: &ReversalState) -> &'static str {
    match state {
        ReversalState::Requested => "requested",
        ReversalState::Done { .. } => "done",
        ReversalState::Refused { .. } => "refused",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Every sample console event is a valid invocation.
    #[test]
    fn the_sample_events_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/events/operations");
        let mut seen = std::collections::BTreeSet::new();
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let invocation = Invocation::parse(serde_json::from_str(&text).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen.insert(invocation.command.name());
        }
        for command in [
            "get", "search", "approve", "decline", "resolve", "reverse", "audit", "redrive",
        ] {
            assert!(seen.contains(command), "no sample event for {command}");
        }
    }

    #[test]
    fn a_derived_reversal_id_is_the_same_for_the_same_command() {
        let id = RequestId::parse("pr_3c5a0d4e9b1f2a7c8d6e0f1a2b3c4d5e").unwrap();
        let p = Points::new(100).ok();
        assert_eq!(
            derived_reversal_id(&id, p, "lost"),
            derived_reversal_id(&id, p, " lost ")
        );
        assert_ne!(
            derived_reversal_id(&id, p, "lost"),
            derived_reversal_id(&id, None, "lost")
        );
        assert_ne!(
            derived_reversal_id(&id, p, "lost"),
            derived_reversal_id(&id, p, "reduced")
        );
    }
}
