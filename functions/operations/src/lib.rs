//! The operator commands: reading requests, programs, links and windows,
//! deciding approvals, fixing what failed, reversing, reconciling, and the
//! changes a second operator confirms (proposals). They run for an
//! authenticated operator over the admin API (`pointsflow-admin`: an IAM
//! principal deployed, an operator key locally), and for a direct
//! invocation of the operations function (a console test event, a
//! schedule), whose `operator` is declared by the invoker:
//!
//! ```json
//! {"operator": "ana", "command": "reverse", "request_id": "req_...",
//!  "points": 500, "reason": "deal reopened"}
//! ```
//!
//! Every command names the roles that may run it ([`COMMANDS`]) and is
//! checked against the operator's before anything is read; every command,
//! refusals included, is recorded in the audit log when it starts and again
//! when it ends (who, how they were identified, what, the result), and
//! answered with `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": {"code", "message", "retryable"}}`. A command run
//! twice has the effect of once: approvals and declines are kept on the
//! request, a reversal has an id (derived from the command when none is
//! given), a resolve or a redrive does again only what is still to do, a
//! proposal confirmed again is a repeat.

mod changes;
mod programs;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pointsflow_config::Known;
use pointsflow_core::access::{Forbidden, OperatorIdentity, Principal, Role, Verified};
use pointsflow_core::approval::ApprovalDecision;
use pointsflow_core::audit::{AuditEntry, AuditOutcome};
use pointsflow_core::ledger::Entry;
use pointsflow_core::ports::{
    AuditLog, Clock, DeadLetters, Enrollments, LedgerRead, LedgerWrite, LinkHistory,
    PartnerConnector, ProgramCatalog, ProgramStore, ProposalStore, Publish, PublishCallback,
    RequestGet, RequestSearch, RequestUpdate, StoreError, WaitingRequests, WindowSchedules,
    WindowStore,
};
use pointsflow_core::program::Program;
use pointsflow_core::proposal::{ProposalError, ProposalId};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::reversal::{Reversal, ReversalState};
use pointsflow_core::search::SearchFilter;
use pointsflow_core::values::{PartnerId, Points, ProgramId, RecipientId, RequestId};
use pointsflow_usecases::approval::{DecideError, DecidePorts};
use pointsflow_usecases::link::{InvalidLink, LinkError};
use pointsflow_usecases::notify::{NotifyError, NotifyPorts};
use pointsflow_usecases::programs::ApplyError;
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
    Get {
        request_id: RequestId,
    },
    /// Requests by source record id, recipient, member number, status,
    /// window or program.
    Search {
        #[serde(default)]
        source_record: Option<String>,
        #[serde(default)]
        recipient: Option<RecipientId>,
        #[serde(default)]
        member: Option<pointsflow_core::values::MemberNumber>,
        #[serde(default)]
        status: Option<StatusKind>,
        #[serde(default)]
        window: Option<String>,
        #[serde(default)]
        program: Option<ProgramId>,
        /// A period (dates or RFC 3339 times), for a search by status or
        /// program alone.
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        to: Option<String>,
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
    Resolve {
        request_id: RequestId,
    },
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
        program: Option<ProgramId>,
    },
    /// A stored reconciliation report, by its id (`window:...`, `period:...`).
    Report {
        id: String,
    },
    /// The commands operators ran on a day (UTC; today when absent).
    Audit {
        #[serde(default)]
        day: Option<chrono::NaiveDate>,
    },
    /// Sends a request's final status to its source's callback again.
    Notify {
        request_id: RequestId,
    },
    /// Puts every event of one request, or of a period's requests (as a
    /// reconciliation reads them: sent to the partner, or received, in
    /// `[from, to)`), on the event bus again: the same events, with the
    /// same ids, so a consumer that has them de-duplicates them. At most
    /// [`RESEND_PAGE`] requests a call; `next` in the answer goes on.
    ResendEvents {
        #[serde(default)]
        request_id: Option<RequestId>,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        to: Option<String>,
        #[serde(default)]
        program: Option<ProgramId>,
        #[serde(default)]
        cursor: Option<String>,
    },
    /// Moves dead letters back to their queue after a fix.
    Redrive {
        queue: QueueName,
        #[serde(default)]
        max: Option<u64>,
    },
    /// Every program in force, with its revision.
    Programs,
    /// One program in force.
    Program {
        program: ProgramId,
    },
    /// Proposes a program revision (the one read, plus one): it takes
    /// effect when another admin confirms it.
    ProposeProgram {
        revision: u64,
        program: Box<Program>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// A recipient's link in force.
    Member {
        program: ProgramId,
        recipient: RecipientId,
    },
    /// Links a recipient who has none; for a recipient linked to another
    /// member, proposes the change (an admin's, confirmed by another).
    Link {
        program: ProgramId,
        recipient: String,
        member_number: String,
        first_name: String,
        last_name: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Proposes removing a recipient's link.
    Unlink {
        program: ProgramId,
        recipient: RecipientId,
        reason: String,
    },
    /// Every change of a recipient's link: who, when, from and to.
    LinkHistory {
        program: ProgramId,
        recipient: RecipientId,
    },
    /// A scheduled window's run and progress.
    Window {
        window: String,
    },
    /// The proposals waiting for a second operator, oldest first.
    Proposals {
        #[serde(default)]
        limit: Option<usize>,
    },
    Proposal {
        proposal_id: ProposalId,
    },
    /// Confirms another operator's proposal, which takes effect now.
    Confirm {
        proposal_id: ProposalId,
    },
    /// Withdraws a proposal before it takes effect.
    Withdraw {
        proposal_id: ProposalId,
        reason: String,
    },
}

/// Every command, and the roles that may run it. `link` and `reverse` are
/// an operator's, and an admin's when they change a link in force or
/// reverse more than the program's `reversal_limit` (then as a proposal).
/// The template's per-role policies grant the admin API's routes from
/// this list.
/// The most requests one `resend_events` call sends the events of.
pub const RESEND_PAGE: usize = 200;

pub const COMMANDS: &[(&str, &[Role])] = &[
    ("get", &[Role::Viewer]),
    ("search", &[Role::Viewer]),
    ("report", &[Role::Viewer]),
    ("audit", &[Role::Viewer]),
    ("programs", &[Role::Viewer]),
    ("program", &[Role::Viewer]),
    ("member", &[Role::Viewer]),
    ("link_history", &[Role::Viewer]),
    ("window", &[Role::Viewer]),
    ("proposals", &[Role::Viewer]),
    ("proposal", &[Role::Viewer]),
    ("approve", &[Role::Approver]),
    ("decline", &[Role::Approver]),
    ("retry", &[Role::Operator]),
    ("resolve", &[Role::Operator]),
    ("notify", &[Role::Operator]),
    ("redrive", &[Role::Operator]),
    ("resend_events", &[Role::Operator]),
    ("reconcile", &[Role::Operator]),
    ("link", &[Role::Operator, Role::Admin]),
    ("reverse", &[Role::Operator, Role::Admin]),
    ("propose_program", &[Role::Admin]),
    ("unlink", &[Role::Admin]),
    ("confirm", &[Role::Admin]),
    ("withdraw", &[Role::Admin]),
];

/// The roles that may run the command `name` (none for an unknown name).
pub fn roles_of(name: &str) -> &'static [Role] {
    COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, roles)| roles)
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
            Command::ResendEvents { .. } => "resend_events",
            Command::Programs => "programs",
            Command::Program { .. } => "program",
            Command::ProposeProgram { .. } => "propose_program",
            Command::Member { .. } => "member",
            Command::Link { .. } => "link",
            Command::Unlink { .. } => "unlink",
            Command::LinkHistory { .. } => "link_history",
            Command::Window { .. } => "window",
            Command::Proposals { .. } => "proposals",
            Command::Proposal { .. } => "proposal",
            Command::Confirm { .. } => "confirm",
            Command::Withdraw { .. } => "withdraw",
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
    ReconcileError,
    LinkError
);

impl From<Forbidden> for OpError {
    fn from(e: Forbidden) -> Self {
        Self::new("forbidden", e.to_string())
    }
}

impl From<ProposalError> for OpError {
    fn from(e: ProposalError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<ApplyError> for OpError {
    fn from(e: ApplyError) -> Self {
        let retryable = !matches!(e, ApplyError::Conflict { .. });
        Self::of(e.code(), e.to_string(), retryable)
    }
}

impl From<InvalidLink> for OpError {
    fn from(e: InvalidLink) -> Self {
        Self::new(
            "invalid_command",
            format!("{}: {}", e.pointer.trim_start_matches('/'), e.problem),
        )
    }
}

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

/// An invocation: who runs which command. Arguments that make no command
/// are kept as the error, so that the refusal is checked against the
/// operator's roles first and audited like any other.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub operator: OperatorIdentity,
    /// The command's name, as given.
    pub name: String,
    /// The command, or why the arguments make none.
    pub command: Result<Command, OpError>,
    /// The command as given, for the audit log.
    pub arguments: Value,
}

fn invalid(message: impl Into<String>) -> OpError {
    OpError::new("invalid_command", message)
}

/// `arguments` (a JSON object with `command`) as a command; the error
/// names the field that is wrong.
fn command_of(arguments: &Value) -> Result<Command, OpError> {
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        invalid(if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        })
    })
}

impl Invocation {
    /// A direct invocation of the operations function (a console test
    /// event, a schedule): `{"operator": ..., "command": ..., ...}`. The
    /// operator is whoever the invoker says: it is recorded as declared,
    /// and holds every role, since invoke rights on the function amount to
    /// admin (docs/security.md).
    pub fn parse(event: Value) -> Result<Self, OpError> {
        let Value::Object(mut fields) = event else {
            return Err(invalid(
                "an invocation is a JSON object with 'operator' and 'command'",
            ));
        };
        let principal = match fields.remove("operator") {
            Some(Value::String(s)) => {
                Principal::parse(&s).map_err(|e| invalid(format!("operator: {e}")))?
            }
            Some(_) => {
                return Err(invalid(
                    "operator: must be a string (who is running the command)",
                ));
            }
            None => return Err(invalid("operator: missing (who is running the command)")),
        };
        let name = match fields.get("command") {
            Some(Value::String(name)) => name.clone(),
            _ => String::new(),
        };
        let arguments = Value::Object(fields);
        Ok(Self {
            operator: OperatorIdentity {
                principal,
                roles: Role::ALL.into_iter().collect(),
                verified: Verified::Declared,
            },
            name,
            command: command_of(&arguments),
            arguments,
        })
    }

    /// The command `name` with `arguments` (a JSON object, without
    /// `command`), for an operator the caller authenticated. Who runs it is
    /// never a field of the arguments.
    pub fn authenticated(operator: OperatorIdentity, name: &str, arguments: Value) -> Self {
        let command = match &arguments {
            Value::Object(fields)
                if fields.contains_key("operator") || fields.contains_key("command") =>
            {
                Err(invalid(
                    "operator, command: not arguments (who runs it is the authenticated caller; the command is in the path)",
                ))
            }
            Value::Object(fields) => {
                let mut fields = fields.clone();
                fields.insert("command".into(), Value::String(name.to_owned()));
                command_of(&Value::Object(fields))
            }
            _ => Err(invalid("a command's arguments are a JSON object")),
        };
        Self {
            operator,
            name: name.to_owned(),
            command,
            arguments,
        }
    }

    /// The request the command is about, if any.
    fn request(&self) -> Option<&RequestId> {
        self.command.as_ref().ok().and_then(Command::request)
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
    /// The event bus, when the stack has one (`resend_events`).
    pub events: Option<Arc<dyn pointsflow_core::ports::EventBus>>,
    /// Applied program revisions, and what applying one sets going.
    pub program_store: Arc<dyn ProgramStore>,
    pub waiting: Arc<dyn WaitingRequests>,
    pub schedules: Arc<dyn WindowSchedules>,
    pub windows: Arc<dyn WindowStore>,
    /// Member links in force (the configuration's under the stored ones),
    /// and their history.
    pub enrollments: Arc<dyn Enrollments>,
    pub link_history: Arc<dyn LinkHistory>,
    pub proposals: Arc<dyn ProposalStore>,
}

/// What the commands know of the configuration.
#[derive(Debug, Clone, Default)]
pub struct OperationsConfig {
    /// The configuration's programs (revision 0), under applied revisions.
    pub programs: Vec<Program>,
    /// The partners and sources a program revision may name.
    pub known: Known,
}

#[derive(Clone)]
pub struct Operations {
    config: Arc<OperationsConfig>,
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
    pub fn new(config: OperationsConfig, ports: OperationsPorts) -> Self {
        Self {
            config: Arc::new(config),
            ports,
        }
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

    #[tracing::instrument(name = "operations", skip_all, fields(command = %invocation.name, operator = %invocation.operator.principal, verified = ?invocation.operator.verified, request_id))]
    pub async fn run(&self, invocation: Invocation) -> Answer {
        pointsflow_usecases::catalog::refresh(self.ports.programs.as_ref()).await;
        let name = invocation.name.as_str();
        if let Some(id) = invocation.request() {
            tracing::Span::current().record("request_id", id.as_str());
        }
        let mut entry = AuditEntry {
            id: audit_id(self.ports.clock.now()),
            operator: invocation.operator.principal.clone(),
            verified: invocation.operator.verified,
            command: name.to_owned(),
            arguments: invocation.arguments.clone(),
            request: invocation.request().map(|r| r.to_string()),
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

    /// Runs the command, if the operator holds a role that may: its result
    /// and a one-line summary for the audit log.
    async fn execute(&self, invocation: &Invocation) -> Result<(Value, String), OpError> {
        let operator = &invocation.operator;
        let name = invocation.name.as_str();
        let roles = roles_of(name);
        if roles.is_empty() {
            return Err(invalid(format!("command: no command '{name}'")));
        }
        // The role first: someone who may not run the command learns
        // nothing from how its arguments are checked.
        if !roles.iter().any(|r| operator.has(*r)) {
            let needs = roles.first().copied().unwrap_or(Role::Admin);
            operator.require(needs, &format!("run {name}"))?;
        }
        let command = invocation.command.as_ref().map_err(Clone::clone)?;
        let by = &operator.principal;
        match command {
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
                from,
                to,
                limit,
            } => {
                let invalid = |m: String| OpError::new("invalid_command", m);
                let filter = SearchFilter {
                    source_record: source_record.clone(),
                    recipient: recipient.clone(),
                    member: member.clone(),
                    status: *status,
                    window: window.clone(),
                    program: program.clone(),
                    from: from
                        .as_deref()
                        .map(|f| instant("from", f))
                        .transpose()
                        .map_err(invalid)?,
                    to: to
                        .as_deref()
                        .map(|t| instant("to", t))
                        .transpose()
                        .map_err(invalid)?,
                };
                self.search(&filter, *limit).await
            }
            Command::Approve { request_id, reason } => {
                self.decide(
                    request_id,
                    ApprovalDecision::Approve,
                    operator,
                    reason.as_deref(),
                )
                .await
            }
            Command::Decline { request_id, reason } => {
                self.decide(
                    request_id,
                    ApprovalDecision::Decline,
                    operator,
                    Some(reason),
                )
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
                self.reverse_command(operator, request_id, &id, *points, reason)
                    .await
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
            Command::ResendEvents {
                request_id,
                from,
                to,
                program,
                cursor,
            } => {
                self.resend_events(
                    request_id.as_ref(),
                    (from.as_deref(), to.as_deref(), program.clone()),
                    cursor.as_deref(),
                )
                .await
            }
            Command::Programs => self.list_programs().await,
            Command::Program { program } => self.show_program(program).await,
            Command::ProposeProgram {
                revision,
                program,
                reason,
            } => {
                self.propose_program(operator, *revision, program, reason.as_deref())
                    .await
            }
            Command::Member { program, recipient } => self.show_link(program, recipient).await,
            Command::Link {
                program,
                recipient,
                member_number,
                first_name,
                last_name,
                reason,
            } => {
                let program = self.program_named(program)?;
                let link = pointsflow_usecases::link::link_from(
                    &program,
                    recipient,
                    member_number,
                    first_name,
                    last_name,
                )?;
                self.link(operator, link, reason.as_deref()).await
            }
            Command::Unlink {
                program,
                recipient,
                reason,
            } => self.unlink(operator, program, recipient, reason).await,
            Command::LinkHistory { program, recipient } => {
                let events = pointsflow_usecases::link::history(
                    self.ports.enrollments.as_ref(),
                    self.ports.link_history.as_ref(),
                    program,
                    recipient,
                )
                .await?;
                let summary = format!(
                    "{} changes of {recipient}'s link in {program}",
                    events.len()
                );
                Ok((
                    json!({ "program": program, "recipient": recipient, "history": events }),
                    summary,
                ))
            }
            Command::Window { window } => self.show_window(window).await,
            Command::Proposals { limit } => self.open_proposals(*limit).await,
            Command::Proposal { proposal_id } => {
                let proposal = self.proposal(proposal_id).await?;
                let summary = format!("{proposal_id}: {}", proposal.change.describe());
                Ok((json!({ "proposal": proposal }), summary))
            }
            Command::Confirm { proposal_id } => self.confirm(operator, proposal_id).await,
            Command::Withdraw {
                proposal_id,
                reason,
            } => self.withdraw(operator, proposal_id, reason).await,
        }
    }

    /// The scope a `reconcile` names: a window, a period, or the last hours.
    fn scope(
        &self,
        window: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        last_hours: Option<u32>,
        program: Option<ProgramId>,
    ) -> Result<pointsflow_core::reconcile::Scope, OpError> {
        use pointsflow_core::reconcile::Scope;
        let invalid = |m: String| OpError::new("invalid_command", m);
        let instant = |name: &str, raw: &str| instant(name, raw).map_err(invalid);
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
        filter
            .check()
            .map_err(|m| OpError::new("invalid_command", m))?;
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
        operator: &OperatorIdentity,
        reason: Option<&str>,
    ) -> Result<(Value, String), OpError> {
        let by = &operator.principal;
        if operator.verified == Verified::Declared && decision == ApprovalDecision::Approve {
            let request = self.load(id).await?;
            if request.approvals_needed > 1 {
                return Err(OpError::new(
                    "four_eyes",
                    format!(
                        "{id} needs two approvers, and a declared identity cannot be one of them: approve it over the admin API"
                    ),
                ));
            }
        }
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
            json!({ "request_id": id, "state": request.state(), "changed": changed, "approval": request.approval, "first_approval": request.first_approval }),
            summary,
        ))
    }

    async fn retry(
        &self,
        id: &RequestId,
        by: &Principal,
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
        limit: Option<Points>,
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
        Ok(pointsflow_usecases::reversal::reverse(
            ports,
            id,
            reversal_id,
            points,
            reason,
            by,
            limit,
        )
        .await?)
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

    async fn resend_events(
        &self,
        request_id: Option<&RequestId>,
        (from, to, program): (Option<&str>, Option<&str>, Option<ProgramId>),
        cursor: Option<&str>,
    ) -> Result<(Value, String), OpError> {
        let bus = self.ports.events.clone().ok_or_else(|| {
            OpError::new(
                "no_event_bus",
                "this stack has no event bus to send events to",
            )
        })?;
        let (ids, next) = match (request_id, from, to) {
            (Some(id), None, None) if program.is_none() && cursor.is_none() => {
                (vec![id.clone()], None)
            }
            (None, Some(_), Some(_)) => {
                let scope = self.scope(None, from, to, None, program)?;
                let page = self.ports.lines.lines(&scope, cursor, RESEND_PAGE).await?;
                (page.lines.into_iter().map(|l| l.id).collect(), page.next)
            }
            _ => {
                return Err(OpError::new(
                    "invalid_command",
                    "resend_events needs request_id, or from and to (and optionally program and cursor)",
                ));
            }
        };
        let mut changes = Vec::with_capacity(ids.len());
        for id in &ids {
            changes.push(pointsflow_core::events::Change::request(
                id.to_string(),
                None,
                self.load(id).await?,
            ));
        }
        // Events only: a status callback is sent again with `notify`.
        let sender = pointsflow_events::Events::new(pointsflow_events::EventsPorts {
            bus,
            programs: self.ports.programs.clone(),
            callbacks: None,
        });
        let published = sender.publish(&changes).await;
        if let Some(request) = published.failed_from {
            return Err(OpError::unavailable(
                "the event bus",
                format!(
                    "it did not take the events of {request} and later; run the command again{}",
                    cursor
                        .map(|c| format!(" with cursor {c}"))
                        .unwrap_or_default()
                ),
            ));
        }
        let summary = format!(
            "{} events of {} requests sent again{}",
            published.events,
            ids.len(),
            if next.is_some() {
                "; more: run again with next as cursor"
            } else {
                ""
            }
        );
        Ok((
            json!({"requests": ids.len(), "events": published.events, "next": next}),
            summary,
        ))
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

/// A command's time: a date (midnight UTC) or an RFC 3339 time.
fn instant(name: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    pointsflow_core::time::parse_instant(raw).ok_or_else(|| {
        format!("{name}: '{raw}' is neither a date (2026-11-27) nor an RFC 3339 time")
    })
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
            seen.insert(invocation.command.unwrap().name());
        }
        for (command, _) in COMMANDS {
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
