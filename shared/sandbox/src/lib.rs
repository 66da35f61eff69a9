//! The sandbox frequent-flyer partner: a real HTTP server speaking the REST
//! contract, with a member table, credits idempotent on the caller's
//! reference, status look-ups, a statement, and magic amounts that make it
//! misbehave on purpose (see [`magic`] and docs/partners.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use pointsflow_core::partner::normalise_name;
use pointsflow_partners::wire::{
    Credit, CreditRequest, CreditStatus, ErrorBody, MemberValidation, ReversalAnswer,
    ReversalRequest, Statement, ValidateMemberRequest,
};

mod lcp;

/// Point amounts that make the sandbox misbehave, as partners' sandboxes do.
pub mod magic {
    /// Refused for good: `422 member_blocked`, nothing credited.
    pub const REJECT: u64 = 9_901;
    /// `500` on every attempt, nothing credited.
    pub const ALWAYS_5XX: u64 = 9_902;
    /// Credited at once, but the answer comes only after the sandbox's slow
    /// delay (longer than a sensible client timeout); later attempts with the
    /// same reference are answered at once with the original credit.
    pub const TIMEOUT_AFTER_CREDIT: u64 = 9_903;
    /// `503` on the first attempt for a reference, nothing credited; credited
    /// on the next attempt.
    pub const CREDITED_AFTER_RETRY: u64 = 9_904;
    /// Accepted as `pending`; the first status look-up finds it credited.
    pub const PENDING_THEN_CREDITED: u64 = 9_905;
    /// Accepted as `pending`; the first status look-up finds it failed
    /// (`member_closed`), nothing credited.
    pub const PENDING_THEN_FAILED: u64 = 9_906;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMember {
    pub member_number: String,
    pub first_name: String,
    pub last_name: String,
}

/// A change made to the sandbox's records behind pointsflow's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// The credit disappears from look-ups and the statement.
    Remove,
    /// The credit says it gave this many points.
    Points(u64),
    /// The credit has this status.
    Status(CreditStatus),
    /// A credited credit under a reference pointsflow never sent.
    Plant { member: String, points: u64 },
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub api_key: String,
    pub members: Vec<SandboxMember>,
    /// How long a "timeout" answer takes.
    pub slow_response: Duration,
    pub behaviour: SandboxBehaviour,
}

/// How the sandbox misbehaves beyond the magic amounts, on every credit,
/// status look-up and member validation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SandboxBehaviour {
    /// Added to every answer.
    pub latency: Duration,
    /// The share of calls answered `503 unavailable` with nothing done (0 to 1).
    pub failure_rate: f64,
    /// Calls admitted per wall-clock second; the others are answered
    /// `429 rate_limited` (with `Retry-After: 1`) and nothing is done.
    pub rate_limit_per_second: Option<u32>,
}

/// A credit as the sandbox keeps it: compact, sharing member and program
/// text, turned into the wire [`Credit`] when asked for.
#[derive(Debug)]
struct Recorded {
    status: CreditStatus,
    /// What a pending credit becomes at its first status look-up.
    settles_as: Option<CreditStatus>,
    transaction: u64,
    member: Arc<str>,
    program: Arc<str>,
    points: u64,
    /// Points of it reversed since.
    reversed: u64,
    /// The reversals asked for on the REST contract: our id and its points.
    reversals: Vec<(Box<str>, u64)>,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// What the sandbox knows of one reference: how often it was tried and the
/// credit, once there is one.
#[derive(Debug, Default)]
struct Reference {
    attempts: u32,
    credit: Option<Box<Recorded>>,
}

#[derive(Debug, Default)]
struct Ledger {
    references: BTreeMap<Box<str>, Reference>,
    /// Loyalty-commerce member validations: id -> member.
    validations: HashMap<Box<str>, Arc<str>>,
    programs: HashSet<Arc<str>>,
    credits: u64,
    points: u64,
    attempts: u64,
    next_transaction: u64,
}

fn to_wire(reference: &str, r: &Recorded) -> Credit {
    Credit {
        reference: reference.to_owned(),
        transaction_id: format!("SBX{:010}", r.transaction),
        status: r.status,
        member_number: r.member.to_string(),
        points: r.points,
        program: r.program.to_string(),
        created_at: r.created_at,
        failure_code: (r.status == CreditStatus::Failed).then(|| "member_closed".to_owned()),
        reversed_points: r.reversed,
    }
}

impl Ledger {
    /// Every credit the sandbox has recorded, whatever its status.
    fn credits(&self) -> impl Iterator<Item = (&str, &Recorded)> {
        self.references
            .iter()
            .filter_map(|(k, r)| r.credit.as_deref().map(|c| (&**k, c)))
    }

    /// Settles a pending credit, as a partner's nightly batch would, when it is looked up.
    fn settle(&mut self, reference: &str) {
        let Some(recorded) = self
            .references
            .get_mut(reference)
            .and_then(|r| r.credit.as_deref_mut())
        else {
            return;
        };
        if let (CreditStatus::Pending, Some(to)) = (recorded.status, recorded.settles_as.take()) {
            recorded.status = to;
            if to == CreditStatus::Credited {
                let points = recorded.points;
                self.credits = self.credits.saturating_add(1);
                self.points = self.points.saturating_add(points);
            }
        }
    }

    fn credit(&self, reference: &str) -> Option<Credit> {
        self.references
            .get(reference)
            .and_then(|r| r.credit.as_deref())
            .map(|c| to_wire(reference, c))
    }

    fn intern_program(&mut self, program: &str) -> Arc<str> {
        if let Some(p) = self.programs.get(program) {
            return p.clone();
        }
        let p: Arc<str> = Arc::from(program);
        self.programs.insert(p.clone());
        p
    }
}

#[derive(Debug)]
struct Sandbox {
    config: SandboxConfig,
    members: HashMap<Arc<str>, SandboxMember>,
    ledger: Mutex<Ledger>,
    limiter: Mutex<Limiter>,
    /// An outage: every call answered 503, nothing done.
    down: std::sync::atomic::AtomicBool,
    /// Credit calls wait here once this many credits are made, until
    /// released: a test stops a window part way, whatever the machine's speed.
    hold_after: std::sync::atomic::AtomicU64,
    released: tokio::sync::Notify,
}

/// Calls admitted in the current wall-clock second, and the most ever.
#[derive(Debug, Default)]
struct Limiter {
    calls: u64,
    second: i64,
    admitted: u32,
    throttled: u64,
    max_per_second: u32,
}

impl Sandbox {
    /// Waits while credits are held (see [`SandboxPartner::hold_credits_after`]).
    async fn held(&self) {
        loop {
            let released = self.released.notified();
            let after = self.hold_after.load(std::sync::atomic::Ordering::SeqCst);
            let made = self.ledger.lock().map(|l| l.credits).unwrap_or(0);
            if made < after {
                return;
            }
            released.await;
        }
    }

    /// The configured misbehaviour for one call: `Some(answer)` when the
    /// call is refused (429 over the rate limit, 503 by the failure rate).
    async fn misbehave(&self) -> Option<Response> {
        let b = self.config.behaviour;
        if !b.latency.is_zero() {
            tokio::time::sleep(b.latency).await;
        }
        let Ok(mut limiter) = self.limiter.lock() else {
            return Some(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "lock poisoned",
            ));
        };
        limiter.calls += 1;
        let now = chrono::Utc::now().timestamp();
        if limiter.second != now {
            limiter.second = now;
            limiter.admitted = 0;
        }
        if b.rate_limit_per_second
            .is_some_and(|limit| limiter.admitted >= limit)
        {
            limiter.throttled += 1;
            let mut answer = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests this second; retry after 1 s with the same reference",
            );
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(1u32));
            return Some(answer);
        }
        limiter.admitted += 1;
        limiter.max_per_second = limiter.max_per_second.max(limiter.admitted);
        drop(limiter);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the partner is down; retry with the same reference",
            ));
        }
        if b.failure_rate > 0.0 && rand::random::<f64>() < b.failure_rate {
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "simulated failure; retry with the same reference",
            ));
        }
        None
    }
}

/// Totals for dashboards and benchmarks: `credits` and `points` count settled
/// (credited) credits only; `attempts` counts every credit call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    pub credits: u64,
    pub points: u64,
    pub attempts: u64,
    /// Every call received (credits, look-ups, validations), answered or refused.
    #[serde(default)]
    pub calls: u64,
    /// Calls answered 429 for the rate limit.
    pub throttled: u64,
    /// The most calls admitted in one wall-clock second.
    pub max_per_second: u32,
}

/// A running sandbox partner.
#[derive(Debug)]
pub struct SandboxPartner {
    addr: SocketAddr,
    state: Arc<Sandbox>,
    task: tokio::task::JoinHandle<()>,
}

/// A shutdown signal a server waits on.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            code: code.into(),
            message: message.into(),
        }),
    )
        .into_response()
}

fn authorised(state: &Sandbox, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key == state.config.api_key)
}

enum Decision {
    Answer(StatusCode, Credit),
    Slow(Credit),
    Fail(Response),
}

fn decide(state: &Sandbox, req: CreditRequest) -> Decision {
    let Ok(mut ledger) = state.ledger.lock() else {
        return Decision::Fail(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "lock poisoned",
        ));
    };
    ledger.attempts = ledger.attempts.saturating_add(1);
    let attempt = {
        let r = ledger
            .references
            .entry(req.reference.as_str().into())
            .or_default();
        r.attempts = r.attempts.saturating_add(1);
        r.attempts
    };
    if let Some(existing) = ledger.credit(&req.reference) {
        let same = existing.member_number == req.member_number
            && existing.points == req.points
            && existing.program == req.program;
        if !same {
            return Decision::Fail(error(
                StatusCode::CONFLICT,
                "reference_conflict",
                "this reference was used for a different credit",
            ));
        }
        return Decision::Answer(StatusCode::OK, existing);
    }
    if req.points == 0 || req.reference.is_empty() {
        return Decision::Fail(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "reference and a positive points amount are required",
        ));
    }
    match req.points {
        magic::REJECT => {
            return Decision::Fail(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "member_blocked",
                "the member's account is blocked from accruals",
            ));
        }
        magic::ALWAYS_5XX => {
            return Decision::Fail(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "simulated partner failure",
            ));
        }
        magic::CREDITED_AFTER_RETRY if attempt == 1 => {
            return Decision::Fail(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "simulated outage; retry with the same reference",
            ));
        }
        _ => {}
    }
    let Some((member, _)) = state.members.get_key_value(req.member_number.as_str()) else {
        return Decision::Fail(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_member",
            format!("no member {}", req.member_number),
        ));
    };
    ledger.next_transaction += 1;
    let settles_as = match req.points {
        magic::PENDING_THEN_CREDITED => Some(CreditStatus::Credited),
        magic::PENDING_THEN_FAILED => Some(CreditStatus::Failed),
        _ => None,
    };
    let recorded = Recorded {
        status: if settles_as.is_some() {
            CreditStatus::Pending
        } else {
            CreditStatus::Credited
        },
        settles_as,
        transaction: ledger.next_transaction,
        member: member.clone(),
        program: ledger.intern_program(&req.program),
        points: req.points,
        reversed: 0,
        reversals: Vec::new(),
        created_at: chrono::Utc::now(),
    };
    let credit = to_wire(&req.reference, &recorded);
    if credit.status == CreditStatus::Credited {
        ledger.credits = ledger.credits.saturating_add(1);
        ledger.points = ledger.points.saturating_add(credit.points);
    }
    ledger
        .references
        .entry(req.reference.as_str().into())
        .or_default()
        .credit = Some(Box::new(recorded));
    if credit.points == magic::TIMEOUT_AFTER_CREDIT {
        Decision::Slow(credit)
    } else if credit.status == CreditStatus::Pending {
        Decision::Answer(StatusCode::ACCEPTED, credit)
    } else {
        Decision::Answer(StatusCode::CREATED, credit)
    }
}

async fn create_credit(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorised(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad or missing API key",
        );
    }
    let req: CreditRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    };
    if let Some(refused) = state.misbehave().await {
        return refused;
    }
    state.held().await;
    match decide(&state, req) {
        Decision::Answer(status, credit) => (status, Json(credit)).into_response(),
        Decision::Slow(credit) => {
            tokio::time::sleep(state.config.slow_response).await;
            (StatusCode::CREATED, Json(credit)).into_response()
        }
        Decision::Fail(response) => response,
    }
}

async fn get_credit(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let Ok(mut ledger) = state.ledger.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "lock poisoned",
        );
    };
    ledger.settle(&reference);
    let found = ledger.credit(&reference);
    drop(ledger);
    match found {
        Some(credit) => Json(credit).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no credit with this reference",
        ),
    }
}

/// `POST /v1/credits/{reference}/reversals`: takes back points of a
/// credited credit, never more than it gave; the same `reversal_id` again
/// is answered with the first answer and changes nothing.
async fn reverse_credit(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Path(reference): Path<String>,
    Json(req): Json<ReversalRequest>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let Ok(mut ledger) = state.ledger.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "lock poisoned",
        );
    };
    let Some(recorded) = ledger
        .references
        .get_mut(reference.as_str())
        .and_then(|r| r.credit.as_deref_mut())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no credit with this reference",
        );
    };
    let answer = |points: u64, reversed_points: u64| ReversalAnswer {
        reversal_id: req.reversal_id.clone(),
        reference: reference.clone(),
        points,
        reversed_points,
    };
    if let Some((_, points)) = recorded
        .reversals
        .iter()
        .find(|(id, _)| **id == *req.reversal_id)
    {
        if *points != req.points {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reversal_id_reused",
                "this reversal id was used for another number of points",
            );
        }
        return (StatusCode::OK, Json(answer(*points, recorded.reversed))).into_response();
    }
    if recorded.status != CreditStatus::Credited {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_credited",
            "only a credited credit can be reversed",
        );
    }
    if req.points == 0 || recorded.reversed + req.points > recorded.points {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reversal_exceeds_credit",
            format!(
                "{} of {} points are reversed already; {} more would exceed the credit",
                recorded.reversed, recorded.points, req.points
            ),
        );
    }
    recorded.reversed += req.points;
    recorded
        .reversals
        .push((req.reversal_id.as_str().into(), req.points));
    let body = answer(req.points, recorded.reversed);
    drop(ledger);
    (StatusCode::CREATED, Json(body)).into_response()
}

#[derive(Debug, Deserialize)]
struct StatementQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// `GET /v1/statement[?from=...&to=...]`: the credits created in
/// `[from, to)`, every credit without bounds.
async fn statement(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Query(query): Query<StatementQuery>,
) -> Response {
    if !authorised(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad or missing API key",
        );
    }
    // A bound that is given but unreadable: its text.
    let bound = |raw: &Option<String>| match raw {
        None => Ok(None),
        Some(r) => pointsflow_core::time::parse_instant(r)
            .map(Some)
            .ok_or_else(|| r.clone()),
    };
    let (from, to) = match (bound(&query.from), bound(&query.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(bad), _) | (_, Err(bad)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("'{bad}' is neither a date (2026-11-27) nor an RFC 3339 time"),
            );
        }
    };
    let mut credits: Vec<Credit> = state
        .ledger
        .lock()
        .map(|l| {
            l.credits()
                .map(|(r, c)| to_wire(r, c))
                .filter(|c| from.is_none_or(|f| c.created_at >= f))
                .filter(|c| to.is_none_or(|t| c.created_at < t))
                .collect()
        })
        .unwrap_or_default();
    credits.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
    Json(Statement { credits }).into_response()
}

async fn stats(State(state): State<Arc<Sandbox>>) -> Response {
    Json(state.stats()).into_response()
}

impl Sandbox {
    /// The answer to a call the sandbox does not take: a bad or missing
    /// key, or (per its behaviour) an outage, a failure or its rate limit.
    pub(crate) async fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        if !authorised(self, headers) {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "bad or missing API key",
            ));
        }
        self.misbehave().await
    }

    fn stats(&self) -> SandboxStats {
        let (calls, throttled, max_per_second) = self
            .limiter
            .lock()
            .map(|l| (l.calls, l.throttled, l.max_per_second))
            .unwrap_or_default();
        self.ledger
            .lock()
            .map(|l| SandboxStats {
                credits: l.credits,
                points: l.points,
                attempts: l.attempts,
                calls,
                throttled,
                max_per_second,
            })
            .unwrap_or_default()
    }
}

/// `POST /v1/members/validate`: the member must exist and the names match
/// after normalisation (case, spacing, punctuation and accents ignored).
async fn validate_member(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Json(req): Json<ValidateMemberRequest>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let invalid = |code: &str, message: String| MemberValidation {
        valid: false,
        code: Some(code.into()),
        message: Some(message),
    };
    let number = req.member_number.trim().to_ascii_uppercase();
    let answer = match state.members.get(number.as_str()) {
        None => invalid("unknown_member", format!("no member {number}")),
        Some(m)
            if normalise_name(&m.first_name) != normalise_name(&req.first_name)
                || normalise_name(&m.last_name) != normalise_name(&req.last_name) =>
        {
            invalid(
                "name_mismatch",
                format!("the names given do not match member {number}'s"),
            )
        }
        Some(_) => MemberValidation {
            valid: true,
            code: None,
            message: None,
        },
    };
    (StatusCode::OK, Json(answer)).into_response()
}

impl SandboxPartner {
    /// Binds `addr` (port 0 for any free port) and serves until `shutdown` resolves.
    pub async fn start(
        config: SandboxConfig,
        addr: SocketAddr,
        shutdown: Shutdown,
    ) -> std::io::Result<Self> {
        let members = config
            .members
            .iter()
            .map(|m| {
                (
                    Arc::from(m.member_number.trim().to_ascii_uppercase()),
                    m.clone(),
                )
            })
            .collect();
        let state = Arc::new(Sandbox {
            config,
            members,
            ledger: Mutex::new(Ledger::default()),
            limiter: Mutex::new(Limiter::default()),
            down: std::sync::atomic::AtomicBool::new(false),
            hold_after: std::sync::atomic::AtomicU64::new(u64::MAX),
            released: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/v1/credits", post(create_credit))
            .route("/v1/credits/{reference}", get(get_credit))
            .route("/v1/credits/{reference}/reversals", post(reverse_credit))
            .route("/v1/members/validate", post(validate_member))
            .route("/v1/statement", get(statement))
            .route("/v1/stats", get(stats))
            .route("/lcp/v1/member-validations", post(lcp::member_validation))
            .route("/lcp/v1/orders", post(lcp::place_order).get(lcp::orders))
            .route("/lcp/v1/orders/{id}/reversals", post(lcp::reverse))
            .with_state(state.clone());
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "sandbox partner stopped");
            }
        });
        tracing::info!(%addr, "sandbox partner listening");
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SandboxStats {
        self.state.stats()
    }

    /// Starts or ends an outage: while down, every call (credit, look-up,
    /// validation) is answered 503 and nothing is done.
    pub fn set_down(&self, down: bool) {
        self.state
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Holds every credit call (answering none) once `credits` credits are
    /// made, until [`Self::release_credits`]: a test stops a run part way
    /// however fast the machine is.
    pub fn hold_credits_after(&self, credits: u64) {
        self.state
            .hold_after
            .store(credits, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets held credit calls go on.
    pub fn release_credits(&self) {
        self.state
            .hold_after
            .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
        self.state.released.notify_waiters();
    }

    /// Points credited per member, for reconciliation with the ledger.
    pub fn credited_by_member(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        if let Ok(l) = self.state.ledger.lock() {
            for (_, c) in l
                .credits()
                .filter(|(_, c)| c.status == CreditStatus::Credited)
            {
                *out.entry(c.member.to_string()).or_default() += c.points - c.reversed;
            }
        }
        out
    }

    /// Changes what the sandbox says of a credit, behind pointsflow's back
    /// (for reconciliation drills): `false` when there is no such credit.
    pub fn tamper(&self, reference: &str, change: Tamper) -> bool {
        let Ok(mut ledger) = self.state.ledger.lock() else {
            return false;
        };
        match change {
            Tamper::Remove => ledger
                .references
                .get_mut(reference)
                .and_then(|r| r.credit.take())
                .is_some(),
            Tamper::Points(points) => ledger
                .references
                .get_mut(reference)
                .and_then(|r| r.credit.as_deref_mut())
                .map(|c| c.points = points)
                .is_some(),
            Tamper::Status(status) => ledger
                .references
                .get_mut(reference)
                .and_then(|r| r.credit.as_deref_mut())
                .map(|c| {
                    c.status = status;
                    c.settles_as = None;
                })
                .is_some(),
            Tamper::Plant { member, points } => {
                ledger.next_transaction += 1;
                let recorded = Recorded {
                    status: CreditStatus::Credited,
                    settles_as: None,
                    transaction: ledger.next_transaction,
                    member: Arc::from(member.as_str()),
                    program: ledger.intern_program("SKY"),
                    points,
                    reversed: 0,
                    reversals: Vec::new(),
                    created_at: chrono::Utc::now(),
                };
                ledger
                    .references
                    .entry(reference.into())
                    .or_default()
                    .credit = Some(Box::new(recorded));
                true
            }
        }
    }

    /// Credit attempts seen per reference.
    pub fn attempts(&self, reference: &str) -> u32 {
        self.state
            .ledger
            .lock()
            .ok()
            .and_then(|l| l.references.get(reference).map(|r| r.attempts))
            .unwrap_or(0)
    }

    /// The credits recorded under a reference (0 or 1).
    pub fn credit(&self, reference: &str) -> Option<Credit> {
        self.state
            .ledger
            .lock()
            .ok()
            .and_then(|l| l.credit(reference))
    }

    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}
