//! pointsflow's configuration: sources and their credentials, partners,
//! programs and enrolled members, plus how the local stack runs its queues.
//! Read from TOML by the local stack and the Lambda functions alike; every
//! error names the entry and the field.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use pointsflow_core::access::Role;
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::program::Program;
use pointsflow_core::values::{
    MemberNumber, OperatorId, PartnerId, ProgramId, RecipientId, SourceId,
};
use serde::Deserialize;

pub mod programs;
pub mod source;
pub mod urls;
pub use programs::{PROGRAM_FILE_FORMAT, ProgramFile};
pub use source::{
    BasicCredential, CallbackSettings, CallbackSignature, Condition, MAX_BODY_BYTES, Mapping,
    Route, SalesforceSettings, SourceEntry, SourceKind, WebhookAuthKind, WebhookSettings,
};

/// The largest configuration a deployed stack can read, in bytes: the
/// functions read it from a Secrets Manager secret, whose text value holds
/// at most 65,536 bytes. A configuration of 20 sources, 5 partners and 10
/// programs takes about a third of that (`tests/deployed_size.rs`).
pub const DEPLOYED_MAX_BYTES: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{entry}: {field}: {problem}")]
    Invalid {
        entry: String,
        field: String,
        problem: String,
    },
}

/// A TOML error as a line, a column and what is wrong, without the text of
/// the line or any value: the configuration holds secrets, and this error
/// is printed before anything masks the logs (`api_keys = "pf_..."` in place
/// of a list must not print the key).
pub(crate) fn syntax(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = redact_quoted(e.message());
    ConfigError::Syntax(match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("TOML parse error at line {line}, column {column}: {message}")
        }
        None => format!("TOML parse error: {message}"),
    })
}

/// `text` with whatever stands between double quotes replaced by `…`
/// (serde quotes values, and names fields with backticks).
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            if quoted {
                out.push('…');
            }
            quoted = !quoted;
            out.push(c);
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn invalid(
    entry: impl Into<String>,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        entry: entry.into(),
        field: field.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often each function reloads the programs operators applied
    /// (`pointsflow programs apply`), in milliseconds.
    #[serde(default = "default_program_refresh_ms")]
    pub program_refresh_ms: u64,
    /// How often eligibility looks again at the requests waiting for
    /// enrollment or held by a paused program, in milliseconds.
    #[serde(default = "default_waiting_sweep_ms")]
    pub waiting_sweep_ms: u64,
    /// A credit whose outcome at the partner has been unknown or pending
    /// for longer than this is queued again for a look-up by the resolver.
    #[serde(default = "default_resolve_after_ms")]
    pub resolve_after_ms: u64,
    /// A request still `received`, `reserved` or `dispatching` this long
    /// after its round began (its message lost, a queue send that failed)
    /// is queued again by the resolver, and reported as stalled. Longer
    /// than a message's own retries (15 minutes by default).
    #[serde(default = "default_stalled_after_ms")]
    pub stalled_after_ms: u64,
    /// How often the local stack runs the resolver (deployed, the
    /// template's `ResolveUnsettledEvery` schedule does).
    #[serde(default = "default_resolve_every_ms")]
    pub resolve_every_ms: u64,
    #[serde(default)]
    pub queues: QueueSettings,
    /// How status callbacks are retried (here and deployed).
    #[serde(default)]
    pub callbacks: CallbackRetrySettings,
    #[serde(default)]
    pub sandbox: SandboxSettings,
    pub sources: Vec<SourceEntry>,
    pub partners: Vec<PartnerEntry>,
    pub programs: Vec<Program>,
    #[serde(default)]
    pub members: Vec<MemberEntry>,
    /// The people (or tools) allowed to approve, decline and inspect any request.
    #[serde(default)]
    pub operators: Vec<OperatorEntry>,
}

/// An operator, or a group of them: the roles they hold, and how they
/// prove who they are: bearer keys (the local stack), or IAM principals
/// (deployed: the ARNs, or patterns with `*`, that API Gateway's IAM
/// authorization reports for them).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorEntry {
    /// The entry's name; a key's holder is recorded under it.
    pub id: OperatorId,
    /// The bearer key (one; use `api_keys` to rotate).
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// IAM principal ARNs or patterns (`arn:aws:sts::123456789012:assumed-role/PointsflowApprover/*`).
    #[serde(default)]
    pub principals: Vec<String>,
    /// `viewer`, `approver`, `operator`, `admin` (docs/operations.md#roles).
    pub roles: BTreeSet<Role>,
}

impl OperatorEntry {
    pub fn keys(&self) -> Vec<&str> {
        source::key_list(self.api_key.as_ref(), &self.api_keys)
    }
}

/// An operator's keys never reach a log.
impl std::fmt::Debug for OperatorEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorEntry")
            .field("id", &self.id)
            .field("api_keys", &source::Redacted(self.keys().len()))
            .field("principals", &self.principals)
            .field("roles", &self.roles)
            .finish()
    }
}

/// Status callbacks: the `n`th retry waits a random time up to
/// `min(retry_cap_ms, retry_base_ms * 2^(n-1))`; a status older than
/// `give_up_after_hours` goes to the dead-letter queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackRetrySettings {
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    pub give_up_after_hours: u64,
}

impl Default for CallbackRetrySettings {
    fn default() -> Self {
        Self {
            retry_base_ms: 30_000,
            retry_cap_ms: 3_600_000,
            give_up_after_hours: 72,
        }
    }
}

impl CallbackRetrySettings {
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn retry_cap(&self) -> Duration {
        Duration::from_millis(self.retry_cap_ms)
    }

    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_after_hours.saturating_mul(3_600))
    }
}

/// Event-source mapping and queue behaviour, as a deployed stack sets them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    pub visibility_timeout_ms: u64,
    pub max_receive_count: u32,
    pub batch_size: usize,
    pub concurrency: usize,
    pub function_timeout_ms: u64,
    /// Dispatch's retries (here and deployed): the `n`th waits a random time
    /// up to `min(retry_cap_ms, retry_base_ms * 2^(n-1))`, set on the
    /// queue as the message's visibility.
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout_ms: 5_000,
            max_receive_count: 5,
            batch_size: 10,
            concurrency: 4,
            function_timeout_ms: 4_000,
            retry_base_ms: 1_000,
            retry_cap_ms: 300_000,
        }
    }
}

impl QueueSettings {
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_millis(self.visibility_timeout_ms)
    }

    pub fn function_timeout(&self) -> Duration {
        Duration::from_millis(self.function_timeout_ms)
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn retry_cap(&self) -> Duration {
        Duration::from_millis(self.retry_cap_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    pub api_key: String,
    /// How long the sandbox's "timeout" magic amount takes to answer.
    pub slow_response_ms: u64,
    /// Accounts at the sandbox airline besides the enrolled `[[members]]`:
    /// people who can be linked (and validated) later.
    pub members: Vec<SandboxAccount>,
    /// Added to every answer.
    pub latency_ms: u64,
    /// The share of calls answered 503 with nothing done (0 to 1).
    pub failure_rate: f64,
    /// Calls admitted per second; the rest are answered 429.
    pub rate_limit_per_second: Option<u32>,
}

/// An account at the sandbox partner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxAccount {
    pub member_number: String,
    pub first_name: String,
    pub last_name: String,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            api_key: "sandbox-partner-key".into(),
            slow_response_ms: 5_000,
            members: Vec::new(),
            latency_ms: 0,
            failure_rate: 0.0,
            rate_limit_per_second: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerKind {
    /// The embedded sandbox partner, started with the stack.
    Sandbox,
    /// A partner speaking the REST/JSON contract at `base_url`.
    Rest,
}

/// The API a partner speaks (docs/partners.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerProtocol {
    #[default]
    Rest,
    LoyaltyCommerce,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerEntry {
    pub id: PartnerId,
    pub kind: PartnerKind,
    /// The partner's API: `rest` (the REST/JSON contract, idempotent on
    /// our reference) or `loyalty_commerce` (validate the member with
    /// names, then place an order; not idempotent). The sandbox speaks both.
    #[serde(default)]
    pub protocol: PartnerProtocol,
    /// For `rest`: where the partner's API is.
    #[serde(default)]
    pub base_url: Option<String>,
    /// For `rest`: the credential sent as a bearer token.
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default = "default_partner_timeout")]
    pub timeout_ms: u64,
    /// Calls per second the partner allows. pointsflow spaces its calls
    /// (credits, look-ups, validations, from every function at once) to
    /// stay under it; absent for no limit.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Consecutive failed calls (timeouts, 5xx, no connection) after which
    /// the partner's circuit opens: no calls, messages wait on the queue.
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit waits before one probe call; doubled after
    /// each failed probe, up to `circuit_open_max_ms`.
    #[serde(default = "default_circuit_open_ms")]
    pub circuit_open_ms: u64,
    /// The longest wait between two probes of a partner that stays down
    /// (15 minutes: the longest SQS holds a message back).
    #[serde(default = "default_circuit_open_max_ms")]
    pub circuit_open_max_ms: u64,
    /// How long after receiving a call the partner may still commit what
    /// it asked for (its committed latency, for an order recorded late by
    /// a `loyalty_commerce` partner). When an answer is lost, pointsflow
    /// looks the order up only once a call of ours can no longer be in
    /// flight (60 s) and this has passed too, so a late commit is found,
    /// not ordered again. Default 0 (at once).
    #[serde(default)]
    pub commit_within_ms: u64,
}

fn default_circuit_open_max_ms() -> u64 {
    900_000
}

fn default_circuit_failures() -> u32 {
    5
}

fn default_circuit_open_ms() -> u64 {
    30_000
}

impl PartnerEntry {
    /// The partner's rate limit and circuit breaker settings.
    pub fn limits(&self) -> pointsflow_core::governance::PartnerLimits {
        pointsflow_core::governance::PartnerLimits {
            rate_limit_per_second: self.rate_limit_per_second,
            circuit_failures: self.circuit_failures,
            circuit_open: Duration::from_millis(self.circuit_open_ms),
            circuit_open_max: Duration::from_millis(self.circuit_open_max_ms),
            commit_within: Duration::from_millis(self.commit_within_ms),
            probe_timeout: Duration::from_millis(self.timeout_ms.saturating_mul(2).max(1_000)),
        }
    }
}

/// The partner's credential never reaches a log.
impl std::fmt::Debug for PartnerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerEntry")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("protocol", &self.protocol)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("circuit_failures", &self.circuit_failures)
            .field("circuit_open_ms", &self.circuit_open_ms)
            .field("circuit_open_max_ms", &self.circuit_open_max_ms)
            .field("commit_within_ms", &self.commit_within_ms)
            .finish()
    }
}

fn default_program_refresh_ms() -> u64 {
    30_000
}

fn default_waiting_sweep_ms() -> u64 {
    60_000
}

fn default_resolve_after_ms() -> u64 {
    300_000
}

fn default_stalled_after_ms() -> u64 {
    900_000
}

fn default_resolve_every_ms() -> u64 {
    60_000
}

fn default_partner_timeout() -> u64 {
    2_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    pub program: ProgramId,
    pub recipient: RecipientId,
    pub member_number: String,
    pub first_name: String,
    pub last_name: String,
}

/// Reads the file at `path` with `parse`; a syntax error names the file.
pub(crate) fn load_with<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ConfigError::Syntax(s) => ConfigError::Syntax(format!("{}: {s}", path.display())),
        other => other,
    })
}

/// The partners and sources a program may name.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub partners: Vec<PartnerId>,
    pub sources: Vec<SourceId>,
}

impl Known {
    /// A program's own rules, and that its partner and sources exist; the
    /// error names the program and the field.
    pub fn check(&self, p: &Program) -> Result<(), ConfigError> {
        let entry = format!("programs.{}", p.id);
        p.validate()
            .map_err(|e| invalid(entry.clone(), e.field, e.problem))?;
        if !self.partners.contains(&p.destination.partner) {
            return Err(invalid(
                entry,
                "destination.partner",
                format!("no partner '{}' is configured", p.destination.partner),
            ));
        }
        for s in &p.sources {
            if !self.sources.contains(s) {
                return Err(invalid(
                    entry,
                    "sources",
                    format!("no source '{s}' is configured"),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// What a program may name in this configuration.
    pub fn known(&self) -> Known {
        Known {
            partners: self.partners.iter().map(|p| p.id.clone()).collect(),
            sources: self.sources.iter().map(|s| s.id.clone()).collect(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_with(path, Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| syntax(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let q = &self.queues;
        if !(1..=10).contains(&q.batch_size) {
            return Err(invalid("queues", "batch_size", "must be 1 to 10"));
        }
        if q.max_receive_count == 0 {
            return Err(invalid(
                "queues",
                "max_receive_count",
                "must be at least 1: a message that always fails must reach the dead-letter queue",
            ));
        }
        if q.concurrency == 0 {
            return Err(invalid("queues", "concurrency", "must be at least 1"));
        }
        if q.function_timeout_ms == 0 {
            return Err(invalid(
                "queues",
                "function_timeout_ms",
                "must be greater than 0",
            ));
        }
        // As on AWS: a message must stay hidden for longer than an invocation
        // can run, or a second invocation picks it up while the first works on it.
        if q.visibility_timeout_ms <= q.function_timeout_ms {
            return Err(invalid(
                "queues",
                "visibility_timeout_ms",
                format!(
                    "must be longer than function_timeout_ms ({})",
                    q.function_timeout_ms
                ),
            ));
        }
        if q.retry_base_ms == 0 || q.retry_cap_ms < q.retry_base_ms {
            return Err(invalid(
                "queues",
                "retry_cap_ms",
                "retry_base_ms must be positive and retry_cap_ms at least retry_base_ms",
            ));
        }
        let sandbox = &self.sandbox;
        if !(0.0..=1.0).contains(&sandbox.failure_rate) {
            return Err(invalid("sandbox", "failure_rate", "must be 0 to 1"));
        }
        if sandbox.rate_limit_per_second == Some(0) {
            return Err(invalid(
                "sandbox",
                "rate_limit_per_second",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        let mut sources = HashSet::new();
        let mut secrets = HashSet::new();
        for s in &self.sources {
            if !sources.insert(&s.id) {
                return Err(invalid(format!("sources.{}", s.id), "id", "appears twice"));
            }
            source::validate(s, &mut secrets)?;
        }
        let mut operators = HashSet::new();
        for o in &self.operators {
            let entry = format!("operators.{}", o.id);
            if !operators.insert(&o.id) {
                return Err(invalid(entry, "id", "appears twice"));
            }
            if o.keys().is_empty() && o.principals.is_empty() {
                return Err(invalid(
                    entry,
                    "api_key",
                    "an operator needs a key (the local stack) or principals (deployed)",
                ));
            }
            for key in o.keys() {
                source::check_secret(&entry, "api_key", key, 16, &mut secrets)?;
            }
            for principal in &o.principals {
                if !principal.starts_with("arn:") || principal.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        entry,
                        "principals",
                        format!("'{principal}' is not an IAM ARN or ARN pattern"),
                    ));
                }
            }
            if o.roles.is_empty() {
                return Err(invalid(
                    entry,
                    "roles",
                    "must name at least one of viewer, approver, operator, admin",
                ));
            }
        }
        let mut partners = HashSet::new();
        for p in &self.partners {
            if !partners.insert(&p.id) {
                return Err(invalid(format!("partners.{}", p.id), "id", "appears twice"));
            }
            let entry = format!("partners.{}", p.id);
            if p.rate_limit_per_second == Some(0) {
                return Err(invalid(
                    &entry,
                    "rate_limit_per_second",
                    "must be at least 1 (leave it out for no limit)",
                ));
            }
            if p.circuit_failures == 0 {
                return Err(invalid(&entry, "circuit_failures", "must be at least 1"));
            }
            if p.circuit_open_ms < 1_000 {
                return Err(invalid(&entry, "circuit_open_ms", "must be at least 1000"));
            }
            if p.commit_within_ms > 43_140_000 {
                return Err(invalid(
                    &entry,
                    "commit_within_ms",
                    "must be at most 43140000: with the 60 s a call may be in flight, 12 hours, the longest SQS holds a message back",
                ));
            }
            if !(p.circuit_open_ms..=900_000).contains(&p.circuit_open_max_ms) {
                return Err(invalid(
                    &entry,
                    "circuit_open_max_ms",
                    "must be from circuit_open_ms to 900000 (15 minutes)",
                ));
            }
            if p.kind == PartnerKind::Rest {
                let url = p.base_url.as_deref().unwrap_or("");
                if let Err(e) = urls::outbound(url) {
                    return Err(invalid(
                        format!("partners.{}", p.id),
                        "base_url",
                        format!("a rest partner needs an https base_url: {url:?} {e}"),
                    ));
                }
                if p.api_key.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        format!("partners.{}", p.id),
                        "api_key",
                        "a rest partner needs an api_key",
                    ));
                }
            }
            if p.timeout_ms == 0 || p.timeout_ms >= q.function_timeout_ms {
                return Err(invalid(
                    format!("partners.{}", p.id),
                    "timeout_ms",
                    format!(
                        "must be greater than 0 and less than queues.function_timeout_ms ({})",
                        q.function_timeout_ms
                    ),
                ));
            }
        }
        if self.resolve_every_ms == 0 {
            return Err(invalid(
                "resolve_every_ms",
                "resolve_every_ms",
                "must be greater than 0",
            ));
        }
        if self.waiting_sweep_ms == 0 {
            return Err(invalid(
                "waiting_sweep_ms",
                "waiting_sweep_ms",
                "must be greater than 0",
            ));
        }
        if self.program_refresh_ms == 0 {
            return Err(invalid(
                "program_refresh_ms",
                "program_refresh_ms",
                "must be greater than 0",
            ));
        }
        let mut programs = HashSet::new();
        let known = self.known();
        for p in &self.programs {
            if !programs.insert(&p.id) {
                return Err(invalid(format!("programs.{}", p.id), "id", "appears twice"));
            }
            known.check(p)?;
        }
        for s in &self.sources {
            let entry = format!("sources.{}", s.id);
            let chosen = s
                .program
                .iter()
                .map(|p| (p, "program"))
                .chain(s.routes.iter().map(|r| (&r.program, "routes.program")));
            for (program, field) in chosen {
                match self.programs.iter().find(|p| &p.id == program) {
                    None => {
                        return Err(invalid(
                            entry,
                            field,
                            format!("no program '{program}' is configured"),
                        ));
                    }
                    Some(p) if !p.accepts_source(&s.id) => {
                        return Err(invalid(
                            entry,
                            field,
                            format!("program '{program}' does not list this source in its sources"),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        let mut linked = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            let entry = format!("members[{i}]");
            if !programs.contains(&m.program) {
                return Err(invalid(
                    entry,
                    "program",
                    format!("no program '{}' is configured", m.program),
                ));
            }
            self.member_number(m)
                .map_err(|problem| invalid(entry.clone(), "member_number", problem))?;
            if !linked.insert((&m.program, &m.recipient)) {
                return Err(invalid(
                    entry,
                    "recipient",
                    "is linked twice in this program",
                ));
            }
        }
        Ok(())
    }

    /// A member entry's number, in its program's format when it has one.
    fn member_number(&self, m: &MemberEntry) -> Result<MemberNumber, String> {
        let format = self
            .programs
            .iter()
            .find(|p| p.id == m.program)
            .and_then(|p| p.member_format.as_ref());
        match format {
            Some(f) => f.normalise(&m.member_number),
            None => MemberNumber::parse(&m.member_number).map_err(|e| e.problem),
        }
    }

    /// The member links, parsed (validation has already accepted them).
    /// Every secret the configuration holds (source keys, Salesforce
    /// tokens, webhook keys, passwords and HMAC secrets, partner, operator
    /// and sandbox keys), for the log masking.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.sources {
            out.extend(s.bearer_keys().into_iter().map(str::to_owned));
            if let Some(sf) = &s.salesforce {
                out.extend(sf.tokens.iter().cloned());
            }
            if let Some(c) = &s.callback {
                out.extend(c.signing_secrets().into_iter().map(str::to_owned));
            }
            if let Some(w) = &s.webhook {
                out.extend(w.keys.iter().cloned());
                out.extend(w.secrets.iter().cloned());
                out.extend(w.basic.iter().map(|b| b.password.clone()));
            }
        }
        out.extend(self.partners.iter().filter_map(|p| p.api_key.clone()));
        for o in &self.operators {
            out.extend(o.keys().into_iter().map(str::to_owned));
        }
        out.push(self.sandbox.api_key.clone());
        out.retain(|s| !s.is_empty());
        out
    }

    /// The member numbers the configuration names (its members' and the
    /// sandbox partner's), for the logs to mask.
    pub fn member_numbers(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.member_number.clone())
            .chain(self.sandbox.members.iter().map(|m| m.member_number.clone()))
            .collect()
    }

    pub fn member_links(&self) -> Vec<MemberLink> {
        self.members
            .iter()
            .filter_map(|m| {
                Some(MemberLink::new(
                    m.program.clone(),
                    m.recipient.clone(),
                    self.member_number(m).ok()?,
                    m.first_name.clone(),
                    m.last_name.clone(),
                ))
            })
            .collect()
    }

    pub fn uses_sandbox(&self) -> bool {
        self.partners.iter().any(|p| p.kind == PartnerKind::Sandbox)
    }
}

#[cfg(test)]
mod syntax_tests {
    use super::*;

    /// A typo that puts a key where a list belongs: the error says where
    /// and what, and never prints the key.
    #[test]
    fn a_syntax_error_names_the_place_not_the_secret() {
        let key = "pf_live_4f1c2b7e9a6d4e0f8a7b";
        for text in [
            format!("[[sources]]\nid = \"crm\"\napi_keys = \"{key}\"\n"),
            format!("[[sources]]\nid = \"crm\"\napi_key = \"{key}\n"),
            format!("[[sources]]\nid = \"crm\"\napi_key = {key}\n"),
        ] {
            let error = Config::parse(&text).err().unwrap().to_string();
            assert!(!error.contains(key), "{error}");
            assert!(!error.contains("pf_live"), "{error}");
            assert!(
                error.starts_with("TOML parse error at line 3, column"),
                "{error}"
            );
        }
    }
}
