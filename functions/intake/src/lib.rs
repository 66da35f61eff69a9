//! The intake function: the points-request HTTP API behind API Gateway.
//!
//! `POST /v1/points-requests` takes the canonical JSON request from an `api`
//! source; `POST /v1/sources/{source}/events` takes whatever the source's
//! kind sends (a Salesforce Outbound Message, a signed JSON webhook, or the
//! canonical request). Every route shares one path to storage: each event
//! becomes a request keyed by (source, business key), stored with a
//! conditional put, and the new ones are queued for eligibility in one
//! batch. `GET /v1/points-requests/{id}` shows a request with its timeline
//! and ledger entries. Operators (their own keys) approve or decline a
//! request waiting for approval (`.../{id}/approve`, `.../{id}/decline`),
//! apply program revisions (`/v1/programs`) and link recipients to member
//! accounts (`/v1/programs/{program}/members/{recipient}`). Errors are
//! problem+json with a stable code (SOAP faults for Salesforce), and a
//! refused request changes nothing.

pub mod auth;
mod mapping;
mod members;
pub mod problem;
mod programs;
pub mod salesforce_id;
pub mod soap;
pub mod wire;

use std::sync::Arc;

use futures::StreamExt;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use pointsflow_config::{Known, OperatorEntry, SourceEntry, SourceKind};
use pointsflow_core::approval::ApprovalDecision;
use pointsflow_core::ports::{
    Clock, Created, Enrollments, LedgerRead, PipelineMessage, ProgramCatalog, ProgramStore,
    Publish, RequestCreate, RequestGet, RequestUpdate, StoreError, StoredProgram, WaitingRequests,
};
use pointsflow_core::ports::{WindowSchedules, WindowStore};
use pointsflow_core::program::Program;
use pointsflow_core::reason::ReasonCode;
use pointsflow_core::request::{PointsRequest, Status, StatusKind};
use pointsflow_core::values::{IdempotencyKey, ProgramId, RecipientId, RequestId};
use pointsflow_core::window::WindowId;
use pointsflow_usecases::approval::{DecideError, DecidePorts};
use pointsflow_usecases::link::LinkPorts;
use pointsflow_usecases::programs::ApplyPorts;
use serde::Serialize;

pub use auth::webhook_signature;
pub use problem::Problem;

use auth::{Operator, Source, SourceAuth};
use mapping::{Candidate, Origin};

/// Every route intake serves, as (method, path template); the OpenAPI
/// document (`openapi.yaml`) describes exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/points-requests"),
    ("GET", "/v1/points-requests/{id}"),
    ("POST", "/v1/points-requests/{id}/approve"),
    ("POST", "/v1/points-requests/{id}/decline"),
    ("POST", "/v1/sources/{source}/events"),
    ("GET", "/v1/programs"),
    ("GET", "/v1/programs/{program}"),
    ("PUT", "/v1/programs/{program}"),
    ("GET", "/v1/programs/{program}/members/{recipient}"),
    ("PUT", "/v1/programs/{program}/members/{recipient}"),
    ("GET", "/v1/windows/{window}"),
    ("GET", "/v1/openapi.json"),
];

/// The OpenAPI document, as JSON (built from `openapi.yaml`).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// JSON bodies above this are refused with 413 before they are parsed.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Outbound Messages carry up to 100 records: they may be larger.
pub const DEFAULT_MAX_SOAP_BYTES: usize = 1024 * 1024;
/// Stores in flight at once while recording a message's events.
const CONCURRENT_STORES: usize = 16;

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub sources: Vec<SourceEntry>,
    pub operators: Vec<OperatorEntry>,
    /// The configuration's programs, under any applied revisions.
    pub programs: Vec<Program>,
    /// The partners and sources an applied program may name.
    pub known: Known,
    pub max_body_bytes: usize,
}

/// The ports intake uses, and nothing more.
#[derive(Clone)]
pub struct IntakePorts {
    pub create: Arc<dyn RequestCreate>,
    pub get: Arc<dyn RequestGet>,
    pub update: Arc<dyn RequestUpdate>,
    pub ledger: Arc<dyn LedgerRead>,
    pub eligibility_queue: Arc<dyn Publish>,
    pub programs: Arc<dyn ProgramCatalog>,
    pub program_store: Arc<dyn ProgramStore>,
    pub enrollments: Arc<dyn Enrollments>,
    pub waiting: Arc<dyn WaitingRequests>,
    /// Scheduled windows: their progress, and their schedules (armed when a
    /// scheduled program is applied).
    pub windows: Arc<dyn WindowStore>,
    pub schedules: Arc<dyn WindowSchedules>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
pub struct Intake {
    config: Arc<IntakeConfig>,
    sources: Arc<Vec<Source>>,
    operators: Arc<Vec<Operator>>,
    ports: IntakePorts,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

/// What recording one event came to.
#[derive(Debug)]
enum Recorded {
    /// Stored now.
    New(Box<PointsRequest>),
    /// Already there with the same payload: a retry.
    Replay(Box<PointsRequest>),
    /// Already there with another payload under the same key.
    Conflict(Box<PointsRequest>),
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => {
            let mut response = Response::new(Body::Text(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "could not serialise a response");
            Problem::internal().into_response()
        }
    }
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            let media = media.trim();
            media.eq_ignore_ascii_case("application/json")
                || (media.len() > 5
                    && media[..media.len() - 5]
                        .to_ascii_lowercase()
                        .starts_with("application/")
                    && media.to_ascii_lowercase().ends_with("+json"))
        })
}

impl Intake {
    pub fn new(config: IntakeConfig, ports: IntakePorts) -> Self {
        let sources = config.sources.iter().cloned().map(Source::new).collect();
        let operators = config.operators.iter().map(Operator::new).collect();
        Self {
            config: Arc::new(config),
            sources: Arc::new(sources),
            operators: Arc::new(operators),
            ports,
        }
    }

    /// The Lambda handler: every outcome is a response, never an `Err`.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        pointsflow_usecases::catalog::refresh(self.ports.programs.as_ref()).await;
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method().clone();
        let result = match (segments.as_slice(), &method) {
            (["v1", "points-requests"], &Method::POST) => self.create(&request, None).await,
            (["v1", "points-requests"], _) => Err(Problem::method_not_allowed("POST")),
            (["v1", "points-requests", id], &Method::GET) => self.show(&request, id).await,
            (["v1", "points-requests", _], _) => Err(Problem::method_not_allowed("GET")),
            (
                [
                    "v1",
                    "points-requests",
                    id,
                    action @ ("approve" | "decline"),
                ],
                &Method::POST,
            ) => {
                let decision = if *action == "approve" {
                    ApprovalDecision::Approve
                } else {
                    ApprovalDecision::Decline
                };
                self.decide(&request, id, decision).await
            }
            (["v1", "points-requests", _, "approve" | "decline"], _) => {
                Err(Problem::method_not_allowed("POST"))
            }
            (["v1", "sources", source, "events"], &Method::POST) => {
                return self.source_event(&request, source).await;
            }
            (["v1", "sources", _, "events"], _) => Err(Problem::method_not_allowed("POST")),
            (["v1", "programs"], &Method::GET) => self.list_programs(&request).await,
            (["v1", "programs"], _) => Err(Problem::method_not_allowed("GET")),
            (["v1", "programs", id], &Method::GET) => self.show_program(&request, id).await,
            (["v1", "programs", id], &Method::PUT) => self.apply_program(&request, id).await,
            (["v1", "programs", _], _) => Err(Problem::method_not_allowed("GET, PUT")),
            (["v1", "programs", program, "members", recipient], &Method::GET) => {
                self.show_link(&request, program, recipient).await
            }
            (["v1", "programs", program, "members", recipient], &Method::PUT) => {
                self.link(&request, program, recipient).await
            }
            (["v1", "programs", _, "members", _], _) => {
                Err(Problem::method_not_allowed("GET, PUT"))
            }
            (["v1", "windows", window], &Method::GET) => self.show_window(&request, window).await,
            (["v1", "windows", _], _) => Err(Problem::method_not_allowed("GET")),
            (["v1", "openapi.json"], &Method::GET) => Ok(openapi()),
            (["v1", "openapi.json"], _) => Err(Problem::method_not_allowed("GET")),
            _ => Err(Problem::not_found(format!("no route for {method} {path}"))),
        };
        result.unwrap_or_else(Problem::into_response)
    }

    fn source(&self, id: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.id().as_str() == id)
    }

    /// The source's own body limit, else `default`.
    fn body_limit(source: &Source, default: usize) -> usize {
        source.entry.max_body_bytes.unwrap_or(default)
    }

    /// `POST /v1/sources/{source}/events`: the source's kind decides how
    /// the body is authenticated and read.
    #[tracing::instrument(name = "intake.source_event", skip_all, fields(source = %source_id))]
    async fn source_event(&self, request: &Request, source_id: &str) -> Response<Body> {
        // An unknown source and a wrong credential look alike.
        let Some(source) = self.source(source_id) else {
            return match query_param(request, "token") {
                Some(_) => salesforce_fault(StatusCode::UNAUTHORIZED, Problem::unauthorized()),
                None => Problem::unauthorized().into_response(),
            };
        };
        let outcome = match source.entry.kind {
            SourceKind::Api => self.create(request, Some(source)).await,
            SourceKind::Webhook => self.webhook(request, source).await,
            SourceKind::SalesforceOutboundMessage => {
                return self.salesforce(request, source).await;
            }
        };
        outcome.unwrap_or_else(Problem::into_response)
    }

    /// The canonical request, from an `api` source (at `via`, when it came
    /// through the source's own URL).
    #[tracing::instrument(name = "intake.create", skip_all, fields(source, request_id))]
    async fn create(
        &self,
        request: &Request,
        via: Option<&Source>,
    ) -> Result<Response<Body>, Problem> {
        let source = auth::api_source(&self.sources, request.headers())?;
        if via.is_some_and(|v| v.id() != source.id()) {
            return Err(Problem::unauthorized());
        }
        let source_id = source.id().clone();
        tracing::Span::current().record("source", source_id.as_str());
        if !is_json(request) {
            return Err(Problem::unsupported_media_type());
        }
        let body: &[u8] = request.body().as_ref();
        let limit = Self::body_limit(source, self.config.max_body_bytes);
        if body.len() > limit {
            return Err(Problem::payload_too_large(limit));
        }
        let key_header = request
            .headers()
            .get("idempotency-key")
            .ok_or_else(Problem::missing_idempotency_key)?;
        let key = key_header
            .to_str()
            .map_err(|_| Problem::invalid_idempotency_key("the key must be visible ASCII"))
            .and_then(|k| {
                IdempotencyKey::parse(k).map_err(|e| Problem::invalid_idempotency_key(e.problem))
            })?;

        let parsed = wire::parse_body(body)?;
        let program_raw = parsed.program_raw().to_owned();
        let new = parsed.into_new_request(source_id.clone(), key)?;
        match self.ports.programs.program(&new.program) {
            Some(p) if p.accepts_source(&source_id) => {}
            _ => return Err(Problem::unknown_program(&program_raw)),
        }
        let candidate = new.into_request(self.ports.clock.now());
        tracing::Span::current().record("request_id", candidate.id.as_str());
        let recorded = self.record(vec![candidate], false).await?;
        answer_one(recorded)
    }

    /// A JSON event from a webhook source, read through its mapping.
    #[tracing::instrument(name = "intake.webhook", skip_all, fields(request_id))]
    async fn webhook(&self, request: &Request, source: &Source) -> Result<Response<Body>, Problem> {
        let SourceAuth::Webhook(webhook_auth) = &source.auth else {
            return Err(Problem::internal());
        };
        let body: &[u8] = request.body().as_ref();
        let limit = Self::body_limit(source, self.config.max_body_bytes);
        if body.len() > limit {
            return Err(Problem::payload_too_large(limit));
        }
        let now = self.ports.clock.now();
        auth::verify_webhook(webhook_auth, request.headers(), body, now.timestamp())?;
        if !is_json(request) {
            return Err(Problem::unsupported_media_type());
        }
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| Problem::malformed_json(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(Problem::invalid_field("", "the body must be a JSON object"));
        }
        let mapping = source
            .entry
            .mapping
            .as_ref()
            .ok_or_else(Problem::internal)?;
        let id_path = mapping.event_id.as_deref().unwrap_or("/id");
        let event_id = mapping::Fields::get(&value, id_path)
            .map(|v| v.into_owned())
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Problem::invalid_field(id_path, format!("{id_path}: the event's id is missing"))
            })?;
        let program = mapping::program_for(&source.entry, &value).ok_or_else(Problem::internal)?;
        let origin = Origin {
            key: format!("{event_id}:{program}"),
            event_id,
            attributes: serde_json::Map::new(),
        };
        let candidate =
            mapping::map_event(&source.entry, &value, program, origin, now).map_err(|e| {
                Problem::invalid_field(id_path, format!("the event cannot be keyed: {e}"))
            })?;
        // A field the mapping cannot read is bad input: refuse it, store nothing.
        // An event that does not qualify is recorded as rejected.
        if let Some(reason) = &candidate.rejected
            && reason.code != ReasonCode::NotQualifying
        {
            return Err(Problem::invalid_field("", reason.message.clone()));
        }
        tracing::Span::current().record("request_id", candidate.request.id.as_str());
        let recorded = self.record(vec![candidate.request], false).await?;
        answer_one(recorded)
    }

    /// A Salesforce Outbound Message: every notification recorded (or known
    /// as a duplicate) and queued before the acknowledgement; any failure is
    /// a fault, and Salesforce retries the whole message.
    #[tracing::instrument(name = "intake.salesforce", skip_all, fields(org, notifications))]
    async fn salesforce(&self, request: &Request, source: &Source) -> Response<Body> {
        let SourceAuth::Salesforce { tokens, org_ids } = &source.auth else {
            return salesforce_fault(StatusCode::INTERNAL_SERVER_ERROR, Problem::internal());
        };
        let token = query_param(request, "token").unwrap_or("");
        if !tokens.accepts(token) {
            return salesforce_fault(StatusCode::UNAUTHORIZED, Problem::unauthorized());
        }
        let body: &[u8] = request.body().as_ref();
        let limit = Self::body_limit(source, DEFAULT_MAX_SOAP_BYTES);
        if body.len() > limit {
            return salesforce_fault(
                StatusCode::PAYLOAD_TOO_LARGE,
                Problem::payload_too_large(limit),
            );
        }
        let message = match soap::parse(body) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable outbound message");
                return soap_response(
                    StatusCode::BAD_REQUEST,
                    soap::fault(soap::FaultCode::Client, "malformed_message", &e.to_string()),
                );
            }
        };
        let span = tracing::Span::current();
        span.record("org", message.organization_id.as_str());
        span.record("notifications", message.notifications.len());
        let Some(org) = salesforce_id::to_18(&message.organization_id)
            .filter(|org| org_ids.iter().any(|allowed| allowed == org))
        else {
            tracing::warn!(org = %message.organization_id, "outbound message from an org that is not allowed");
            return soap_response(
                StatusCode::FORBIDDEN,
                soap::fault(
                    soap::FaultCode::Client,
                    "org_not_allowed",
                    &format!(
                        "organization {} may not send to this source",
                        message.organization_id
                    ),
                ),
            );
        };
        let now = self.ports.clock.now();
        let mut candidates = Vec::with_capacity(message.notifications.len());
        for n in &message.notifications {
            let record = n.field("Id").and_then(salesforce_id::to_18);
            let program = mapping::program_for(&source.entry, n);
            let (Some(record), Some(program)) = (record, program) else {
                return soap_response(
                    StatusCode::BAD_REQUEST,
                    soap::fault(
                        soap::FaultCode::Client,
                        "malformed_message",
                        &format!(
                            "notification {} has no record Id among its fields; add Id to the outbound message's fields",
                            n.id
                        ),
                    ),
                );
            };
            let mut attributes = serde_json::Map::new();
            for (name, value) in [
                ("salesforce_org_id", org.as_str()),
                ("salesforce_object", n.object.as_str()),
                ("salesforce_notification_id", n.id.as_str()),
            ] {
                attributes.insert(name.into(), serde_json::Value::String(value.to_owned()));
            }
            let origin = Origin {
                key: format!("{org}:{record}:{program}"),
                event_id: record,
                attributes,
            };
            match mapping::map_event(&source.entry, n, program, origin, now) {
                Ok(Candidate { request, .. }) => candidates.push(request),
                Err(e) => {
                    tracing::error!(error = %e, notification = %n.id, "cannot map a notification");
                    return salesforce_fault(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Problem::internal(),
                    );
                }
            }
        }
        match self.record(candidates, true).await {
            Ok(recorded) => {
                let (mut new, mut duplicates) = (0, 0);
                for r in &recorded {
                    match r {
                        Recorded::New(_) => new += 1,
                        Recorded::Replay(_) | Recorded::Conflict(_) => duplicates += 1,
                    }
                }
                tracing::info!(new, duplicates, "outbound message acknowledged");
                soap_response(StatusCode::OK, soap::ack())
            }
            Err(problem) => salesforce_fault(StatusCode::INTERNAL_SERVER_ERROR, problem),
        }
    }

    /// Stores each request (a conditional put keyed by its id), then queues
    /// every one that still needs eligibility in one publish. Fails if any
    /// store or send fails; what was stored stays, and a retry finds it.
    /// A key reused with another payload changes nothing, unless the source
    /// treats that as a retry (`conflict_is_retry`: Salesforce sends a
    /// record's latest data, so a re-sent notification may differ).
    async fn record(
        &self,
        requests: Vec<PointsRequest>,
        conflict_is_retry: bool,
    ) -> Result<Vec<Recorded>, Problem> {
        let create = self.ports.create.as_ref();
        let results: Vec<_> = futures::stream::iter(requests)
            .map(|candidate| async move {
                let created = create.create(&candidate).await;
                (candidate, created)
            })
            .buffered(CONCURRENT_STORES)
            .collect()
            .await;
        let mut recorded = Vec::with_capacity(results.len());
        for (candidate, created) in results {
            recorded.push(match created {
                Ok(Created::New) => {
                    tracing::info!(request_id = %candidate.id, state = %candidate.state(), program = %candidate.program, source_record = candidate.event.id.as_deref().unwrap_or("-"), recipient = %candidate.recipient.id, "accepted");
                    pointsflow_runtime::metrics::count(candidate.program.as_str(), "RequestsReceived");
                    Recorded::New(Box::new(candidate))
                }
                Ok(Created::Existing(existing)) => match self.clawback(&candidate, &existing).await? {
                    Some(undo) => undo,
                    None if existing.payload_hash == candidate.payload_hash => {
                        tracing::info!(request_id = %existing.id, state = %existing.state(), "replay of a recorded request");
                        Recorded::Replay(existing)
                    }
                    None => {
                        tracing::warn!(request_id = %existing.id, "same business key with a different payload; nothing changed");
                        Recorded::Conflict(existing)
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, request_id = %candidate.id, "could not store the request");
                    return Err(Problem::unavailable(
                        "the request could not be stored; retry with the same key",
                    ));
                }
            });
        }
        // Queue what is still `received`: new requests, and any a first
        // attempt stored but could not queue (eligibility ignores duplicates).
        let messages: Vec<PipelineMessage> = recorded
            .iter()
            .filter_map(|r| match r {
                Recorded::New(request) => Some(request.as_ref()),
                Recorded::Replay(request) => Some(request.as_ref()),
                Recorded::Conflict(request) => conflict_is_retry.then_some(request.as_ref()),
            })
            .filter(|r| r.state() == StatusKind::Received)
            .map(|r| PipelineMessage {
                request_id: r.id.clone(),
            })
            .collect();
        if !messages.is_empty() {
            self.ports
                .eligibility_queue
                .publish(&messages)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "could not queue requests");
                    Problem::unavailable(
                        "the request was stored but could not be queued; retry with the same key",
                    )
                })?;
        }
        Ok(recorded)
    }

    /// An event for a record whose earlier event qualified, that no longer
    /// qualifies (the Opportunity left Closed Won), undoes it: a clawback
    /// request, keyed on the first one's key, goes through eligibility.
    async fn clawback(
        &self,
        candidate: &PointsRequest,
        existing: &PointsRequest,
    ) -> Result<Option<Recorded>, Problem> {
        let why = match &candidate.status {
            Status::Rejected { reason } if reason.code == ReasonCode::NotQualifying => {
                &reason.message
            }
            _ => return Ok(None),
        };
        if existing.undoes.is_some() {
            return Ok(None);
        }
        let Some(undo) = existing.clawback(candidate.event.clone(), why, self.ports.clock.now())
        else {
            return Ok(None);
        };
        if existing.state() == StatusKind::Rejected {
            // Nothing to take back. But a clawback an earlier delivery
            // recorded (before the request was declined) and could not
            // queue is queued now: eligibility closes it.
            return match self.ports.get.get(&undo.id).await {
                Ok(Some(stored)) => Ok(Some(Recorded::Replay(Box::new(stored)))),
                Ok(None) => Ok(None),
                Err(e) => {
                    tracing::error!(error = %e, request_id = %undo.id, "could not read the clawback");
                    Err(Problem::unavailable(
                        "the request could not be read; retry with the same key",
                    ))
                }
            };
        }
        match self.ports.create.create(&undo).await {
            Ok(Created::New) => {
                tracing::info!(request_id = %undo.id, undoes = %existing.id, program = %undo.program, "clawback accepted");
                pointsflow_runtime::metrics::count(undo.program.as_str(), "ClawbacksReceived");
                Ok(Some(Recorded::New(Box::new(undo))))
            }
            Ok(Created::Existing(stored)) => Ok(Some(Recorded::Replay(stored))),
            Err(e) => {
                tracing::error!(error = %e, request_id = %undo.id, "could not store the clawback");
                Err(Problem::unavailable(
                    "the request could not be stored; retry with the same key",
                ))
            }
        }
    }

    #[tracing::instrument(name = "intake.show", skip_all, fields(request_id = %id))]
    async fn show(&self, request: &Request, id: &str) -> Result<Response<Body>, Problem> {
        let caller = auth::caller(&self.sources, &self.operators, request.headers())
            .map_err(|_| Problem::unauthorized())?;
        let stored = self.load(id).await?;
        // Another source's request is not found, rather than forbidden: ids
        // leak nothing. Operators see every request.
        match caller {
            auth::Caller::Source(source) if &stored.source != source.id() => {
                return Err(not_found(id));
            }
            auth::Caller::Source(_) => {}
            auth::Caller::Operator(operator) => {
                tracing::info!(operator = %operator.id, request_id = %stored.id, "shown to an operator");
            }
        }
        self.view(&stored).await
    }

    /// The stored request `id`, or 404.
    async fn load(&self, id: &str) -> Result<PointsRequest, Problem> {
        let parsed = RequestId::parse(id).map_err(|_| not_found(id))?;
        let stored = self.ports.get.get(&parsed).await.map_err(|e| {
            tracing::error!(error = %e, "could not read the request");
            Problem::unavailable("the request could not be read; retry")
        })?;
        stored.ok_or_else(|| not_found(id))
    }

    /// A request with its ledger entries, as `GET` shows it.
    async fn view(&self, request: &PointsRequest) -> Result<Response<Body>, Problem> {
        let entries = self
            .ports
            .ledger
            .entries_for(&request.id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not read the ledger");
                Problem::unavailable("the ledger could not be read; retry")
            })?;
        Ok(json(
            StatusCode::OK,
            &wire::RequestView::of(request, &entries),
        ))
    }

    /// `POST /v1/points-requests/{id}/approve` and `/decline`: an operator's
    /// decision on a request waiting for approval. The decision and who made
    /// it are kept on the request; an approved request goes back to
    /// eligibility to be reserved. Deciding the same way twice is harmless.
    #[tracing::instrument(name = "intake.approval", skip_all, fields(request_id = %id, operator, ?decision))]
    async fn decide(
        &self,
        request: &Request,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<Response<Body>, Problem> {
        let operator = auth::operator(&self.operators, request.headers())?;
        tracing::Span::current().record("operator", operator.id.as_str());
        let body: &[u8] = request.body().as_ref();
        if body.len() > self.config.max_body_bytes {
            return Err(Problem::payload_too_large(self.config.max_body_bytes));
        }
        let reason = wire::parse_decision(body, is_json(request))?;
        let parsed = RequestId::parse(id).map_err(|_| not_found(id))?;
        let ports = DecidePorts {
            get: self.ports.get.as_ref(),
            update: self.ports.update.as_ref(),
            eligibility: self.ports.eligibility_queue.as_ref(),
            clock: self.ports.clock.as_ref(),
        };
        match pointsflow_usecases::approval::decide(
            ports,
            &parsed,
            decision,
            &operator.id,
            reason.as_deref(),
        )
        .await
        {
            Ok((stored, _)) => self.view(&stored).await,
            Err(DecideError::NotFound) => Err(not_found(id)),
            Err(DecideError::Approval(e)) => Err(Problem::approval(&e)),
            Err(e) => {
                tracing::error!(error = %e, "the decision could not be completed");
                Err(Problem::unavailable(format!("{e}; send it again")))
            }
        }
    }
}

impl Intake {
    /// An operator's JSON body: within the size limit, JSON, of shape `T`.
    fn json_body<T: serde::de::DeserializeOwned>(&self, request: &Request) -> Result<T, Problem> {
        let body: &[u8] = request.body().as_ref();
        if body.len() > self.config.max_body_bytes {
            return Err(Problem::payload_too_large(self.config.max_body_bytes));
        }
        if !is_json(request) {
            return Err(Problem::unsupported_media_type());
        }
        wire::parse_json(body)
    }

    /// The applied programs, read now (not the catalog's snapshot): an
    /// operator sees what was just applied.
    async fn applied(&self) -> Result<Vec<StoredProgram>, Problem> {
        self.ports.program_store.programs().await.map_err(|e| {
            tracing::error!(error = %e, "could not read the programs");
            Problem::unavailable("the programs could not be read; retry")
        })
    }

    /// `GET /v1/windows/{window}`: a scheduled window's run and progress.
    async fn show_window(&self, request: &Request, id: &str) -> Result<Response<Body>, Problem> {
        auth::operator(&self.operators, request.headers())?;
        let decoded = id
            .replace("%40", "@")
            .replace("%3A", ":")
            .replace("%3a", ":");
        let window = WindowId::parse(&decoded)
            .map_err(|e| Problem::not_found(format!("no window {id}: {e}")))?;
        let unavailable = |e: StoreError| {
            tracing::error!(error = %e, "window store unavailable");
            Problem::unavailable("the window store is unavailable; try again")
        };
        let run = self
            .ports
            .windows
            .run(&window)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Problem::not_found(format!("window {window} has not been dispatched (yet)"))
            })?;
        let settled = self
            .ports
            .windows
            .settled(&window)
            .await
            .map_err(unavailable)?;
        Ok(json(
            StatusCode::OK,
            &wire::WindowView::of(&run.with_settled(&settled)),
        ))
    }

    /// `GET /v1/programs`: every program in force, with its revision.
    async fn list_programs(&self, request: &Request) -> Result<Response<Body>, Problem> {
        auth::operator(&self.operators, request.headers())?;
        let applied = self.applied().await?;
        let all = programs::in_force(&self.config.programs, &applied);
        let list: Vec<&programs::ProgramView> = all.values().collect();
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "programs": list }),
        ))
    }

    /// `GET /v1/programs/{program}`.
    async fn show_program(&self, request: &Request, id: &str) -> Result<Response<Body>, Problem> {
        auth::operator(&self.operators, request.headers())?;
        let applied = self.applied().await?;
        let all = programs::in_force(&self.config.programs, &applied);
        let view = all
            .iter()
            .find(|(p, _)| p.as_str() == id)
            .map(|(_, v)| v)
            .ok_or_else(|| Problem::not_found(format!("no program {id}")))?;
        Ok(json(StatusCode::OK, view))
    }

    /// `PUT /v1/programs/{program}`: applies a revision. The same revision
    /// applied again (a retry) answers as the first time.
    #[tracing::instrument(name = "intake.apply_program", skip_all, fields(program = %id, operator))]
    async fn apply_program(&self, request: &Request, id: &str) -> Result<Response<Body>, Problem> {
        let operator = auth::operator(&self.operators, request.headers())?;
        tracing::Span::current().record("operator", operator.id.as_str());
        let parsed: programs::ApplyBody = self.json_body(request)?;
        let stored = programs::revision_to_store(
            id,
            parsed,
            &self.config.known,
            &operator.id,
            self.ports.clock.now(),
        )?;
        let ports = ApplyPorts {
            store: self.ports.program_store.as_ref(),
            waiting: self.ports.waiting.as_ref(),
            eligibility: self.ports.eligibility_queue.as_ref(),
            schedules: self.ports.schedules.as_ref(),
            clock: self.ports.clock.as_ref(),
        };
        match pointsflow_usecases::programs::apply(ports, stored).await {
            Ok(applied) => Ok(json(
                StatusCode::OK,
                &programs::ProgramView::applied(&applied),
            )),
            Err(e) => Err(programs::apply_failed(&e)),
        }
    }
}

impl Intake {
    /// An operator, or an api source the program accepts, may enroll.
    fn enroller(&self, request: &Request, program: &Program) -> Result<(), Problem> {
        match auth::caller(&self.sources, &self.operators, request.headers()) {
            Ok(auth::Caller::Operator(_)) => Ok(()),
            Ok(auth::Caller::Source(s)) if program.accepts_source(s.id()) => Ok(()),
            _ => Err(Problem::unauthorized()),
        }
    }

    fn program_named(&self, id: &str) -> Result<Arc<Program>, Problem> {
        ProgramId::parse(id)
            .ok()
            .and_then(|p| self.ports.programs.program(&p))
            .ok_or_else(|| Problem::not_found(format!("no program {id}")))
    }

    /// `GET /v1/programs/{program}/members/{recipient}`.
    async fn show_link(
        &self,
        request: &Request,
        program: &str,
        recipient: &str,
    ) -> Result<Response<Body>, Problem> {
        let program = self.program_named(program)?;
        self.enroller(request, &program)?;
        let missing = || {
            Problem::not_found(format!(
                "recipient {recipient} is not linked in program {}",
                program.id
            ))
        };
        let who = RecipientId::parse(recipient).map_err(|_| missing())?;
        let link = self
            .ports
            .enrollments
            .member_link(&program.id, &who)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "could not read the link");
                Problem::unavailable("the link could not be read; retry")
            })?
            .ok_or_else(missing)?;
        Ok(json(StatusCode::OK, &members::LinkView::of(&link, None)))
    }

    /// `PUT /v1/programs/{program}/members/{recipient}`: links the recipient
    /// and releases its requests waiting for enrollment. The same link
    /// again keeps the partner's validation of it.
    #[tracing::instrument(name = "intake.link", skip_all, fields(program = %program, recipient = %recipient))]
    async fn link(
        &self,
        request: &Request,
        program: &str,
        recipient: &str,
    ) -> Result<Response<Body>, Problem> {
        let program = self.program_named(program)?;
        self.enroller(request, &program)?;
        let parsed: members::LinkBody = self.json_body(request)?;
        let link = members::link_from(&program, recipient, parsed)?;
        let ports = LinkPorts {
            enrollments: self.ports.enrollments.as_ref(),
            waiting: self.ports.waiting.as_ref(),
            eligibility: self.ports.eligibility_queue.as_ref(),
        };
        match pointsflow_usecases::link::link(ports, link).await {
            Ok(linked) => Ok(json(
                StatusCode::OK,
                &members::LinkView::of(&linked.link, Some(linked.released)),
            )),
            Err(e) => {
                tracing::error!(error = %e, "could not link");
                Err(Problem::unavailable(format!("{e}; send it again")))
            }
        }
    }
}

fn not_found(id: &str) -> Problem {
    Problem::not_found(format!("no points request {id}"))
}

fn openapi() -> Response<Body> {
    let mut response = Response::new(Body::Text(OPENAPI_JSON.to_owned()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer to a single event: 202 for a new or replayed request, 409
/// for a key reused with another payload.
fn answer_one(mut recorded: Vec<Recorded>) -> Result<Response<Body>, Problem> {
    match recorded.pop() {
        Some(Recorded::New(request)) => Ok(accepted(&request, false)),
        Some(Recorded::Replay(request)) => Ok(accepted(&request, true)),
        Some(Recorded::Conflict(_)) => Err(Problem::idempotency_key_reused()),
        None => Err(Problem::internal()),
    }
}

/// A query parameter as sent. Source tokens are URL-safe by configuration,
/// so no percent-decoding is needed to compare them.
fn query_param<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn soap_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

/// A problem as a SOAP fault: ours (5xx) or the sender's.
fn salesforce_fault(status: StatusCode, problem: Problem) -> Response<Body> {
    let code = if status.is_server_error() {
        soap::FaultCode::Server
    } else {
        soap::FaultCode::Client
    };
    soap_response(status, soap::fault(code, problem.code, &problem.detail))
}

fn accepted(request: &PointsRequest, replayed: bool) -> Response<Body> {
    let mut response = json(StatusCode::ACCEPTED, &wire::Accepted::of(request));
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&wire::link(&request.id)) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
