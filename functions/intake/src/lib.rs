//! The intake function: the points-request HTTP API behind API Gateway.
//!
//! `POST /v1/points-requests` takes the canonical JSON request from an `api`
//! source; `POST /v1/sources/{source}/events` takes whatever the source's
//! kind sends (a Salesforce Outbound Message, a signed JSON webhook, or the
//! canonical request). Every route shares one path to storage: each event
//! becomes a request keyed by (source, business key), stored with a
//! conditional put, and the new ones are queued for eligibility in one
//! batch. `GET /v1/points-requests/{id}` shows a source its own request
//! with its timeline and ledger entries, and
//! `PUT /v1/programs/{program}/members/{recipient}` lets a source the
//! program names link a recipient who has no link yet. That is all: intake
//! only ingests. What operators do (approvals, programs, changing links,
//! windows, the operations commands) is the admin API's
//! (`pointsflow-admin`), under IAM. Errors are problem+json with a stable
//! code (SOAP faults for Salesforce), and a refused request changes nothing.

pub mod auth;
mod mapping;
mod members;
pub mod salesforce_id;
pub mod soap;
pub mod wire;

use std::sync::Arc;

use futures::StreamExt;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use pointsflow_config::{SourceEntry, SourceKind};
use pointsflow_core::ports::{
    Clock, Created, Enrollments, LedgerRead, PipelineMessage, ProgramCatalog, Publish,
    RequestCreate, RequestGet, WaitingRequests,
};
use pointsflow_core::program::Program;
use pointsflow_core::reason::ReasonCode;
use pointsflow_core::request::{PointsRequest, Status, StatusKind};
use pointsflow_core::values::{IdempotencyKey, ProgramId, RequestId};
use pointsflow_http::{is_json, json};
use pointsflow_usecases::link::{LinkError, LinkPorts};

pub use auth::webhook_signature;
pub use pointsflow_http::{Problem, problem};

use auth::{Source, SourceAuth, WebhookAuth};
use mapping::{Candidate, Origin};

/// Every route intake serves, as (method, path template); the OpenAPI
/// document (`openapi.yaml`) describes exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/points-requests"),
    ("GET", "/v1/points-requests/{id}"),
    ("POST", "/v1/sources/{source}/events"),
    ("PUT", "/v1/programs/{program}/members/{recipient}"),
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
    pub max_body_bytes: usize,
}

/// The ports intake uses, and nothing more.
#[derive(Clone)]
pub struct IntakePorts {
    pub create: Arc<dyn RequestCreate>,
    pub get: Arc<dyn RequestGet>,
    pub ledger: Arc<dyn LedgerRead>,
    pub eligibility_queue: Arc<dyn Publish>,
    pub programs: Arc<dyn ProgramCatalog>,
    /// Member links in force (a source's new link keeps its creation on
    /// itself: intake writes no history).
    pub enrollments: Arc<dyn Enrollments>,
    /// The requests a new link releases.
    pub waiting: Arc<dyn WaitingRequests>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
pub struct Intake {
    config: Arc<IntakeConfig>,
    sources: Arc<Vec<Source>>,
    ports: IntakePorts,
}

/// What a request asks for: the route, with its path's values.
enum Route<'a> {
    Create,
    Show(&'a str),
    SourceEvent(&'a str),
    Link {
        program: &'a str,
        recipient: &'a str,
    },
    OpenApi,
}

/// A caller refused before any route runs: answered as problem+json, or
/// as a SOAP fault to a Salesforce Outbound Message.
enum Refused {
    Problem(Problem),
    Soap(Problem),
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

impl Intake {
    pub fn new(config: IntakeConfig, ports: IntakePorts) -> Self {
        let sources = config.sources.iter().cloned().map(Source::new).collect();
        Self {
            config: Arc::new(config),
            sources: Arc::new(sources),
            ports,
        }
    }

    /// The Lambda handler: every outcome is a response, never an `Err`.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        pointsflow_usecases::catalog::refresh(self.ports.programs.as_ref()).await;
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let route = match route(&segments, request.method()) {
            Ok(route) => route,
            Err(problem) => return problem.into_response(),
        };
        // Who calls is established here, once, for every route: each
        // route below receives its source and never authenticates.
        let source = match self.authenticate(&route, &request) {
            Ok(Some(source)) => source,
            Ok(None) => return openapi(),
            Err(Refused::Problem(problem)) => return problem.into_response(),
            Err(Refused::Soap(problem)) => {
                return salesforce_fault(StatusCode::UNAUTHORIZED, problem);
            }
        };
        let result = match route {
            Route::OpenApi => Ok(openapi()),
            Route::SourceEvent(_) => match source.entry.kind {
                SourceKind::Api => self.create(&request, source).await,
                SourceKind::Webhook => self.webhook(&request, source).await,
                SourceKind::SalesforceOutboundMessage => {
                    return self.salesforce(&request, source).await;
                }
            },
            Route::Create => self.create(&request, source).await,
            Route::Show(id) => self.show(source, id).await,
            Route::Link { program, recipient } => {
                self.link(&request, source, program, recipient).await
            }
        };
        result.unwrap_or_else(Problem::into_response)
    }

    /// The source calling `route`, by the credential it takes: on a
    /// source's own URL (`/v1/sources/{source}/events`) the source's kind
    /// decides (a Salesforce token, a webhook's credential or signature, an
    /// api key of that source); every other route takes an api source's
    /// key. `None` for the one public route, the OpenAPI document. A refusal
    /// is the whole answer, and nothing has been read or stored.
    fn authenticate(
        &self,
        route: &Route<'_>,
        request: &Request,
    ) -> Result<Option<&Source>, Refused> {
        let source_id = match route {
            Route::OpenApi => return Ok(None),
            Route::Create | Route::Show(_) | Route::Link { .. } => {
                return auth::api_source(&self.sources, request.headers())
                    .map(Some)
                    .map_err(Refused::Problem);
            }
            Route::SourceEvent(source_id) => source_id,
        };
        // An unknown source and a wrong credential look alike.
        let Some(source) = self.source(source_id) else {
            return Err(match query_param(request, "token") {
                Some(_) => Refused::Soap(Problem::unauthorized()),
                None => Refused::Problem(Problem::unauthorized()),
            });
        };
        match &source.auth {
            SourceAuth::Api(_) => match auth::api_source(&self.sources, request.headers()) {
                Ok(caller) if caller.id() == source.id() => Ok(Some(source)),
                _ => Err(Refused::Problem(Problem::unauthorized())),
            },
            SourceAuth::Webhook(webhook_auth) => {
                // The signature covers the body: bound the work first.
                let body: &[u8] = request.body().as_ref();
                let limit = Self::body_limit(source, self.config.max_body_bytes);
                if body.len() > limit {
                    return Err(Refused::Problem(Problem::payload_too_large(limit)));
                }
                let now = self.ports.clock.now().timestamp();
                auth::verify_webhook(webhook_auth, request.headers(), body, now)
                    .map(|()| Some(source))
                    .map_err(Refused::Problem)
            }
            SourceAuth::Salesforce { tokens, .. } => {
                let token = query_param(request, "token").unwrap_or("");
                if tokens.accepts(token) {
                    Ok(Some(source))
                } else {
                    Err(Refused::Soap(Problem::unauthorized()))
                }
            }
        }
    }

    fn source(&self, id: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.id().as_str() == id)
    }

    /// The source's own body limit, else `default`.
    fn body_limit(source: &Source, default: usize) -> usize {
        source.entry.max_body_bytes.unwrap_or(default)
    }

    /// The canonical request, from an `api` source.
    #[tracing::instrument(name = "intake.create", skip_all, fields(source, request_id))]
    async fn create(&self, request: &Request, source: &Source) -> Result<Response<Body>, Problem> {
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
        let body: &[u8] = request.body().as_ref();
        let now = self.ports.clock.now();
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
        // The mapped field, or else a Standard Webhooks sender's
        // `webhook-id` (checked with the signature).
        let (id_path, event_id) = match (mapping.event_id.as_deref(), &source.auth) {
            (None, SourceAuth::Webhook(WebhookAuth::Standard { .. })) => (
                pointsflow_core::signing::WEBHOOK_ID,
                request
                    .headers()
                    .get(pointsflow_core::signing::WEBHOOK_ID)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim().to_owned()),
            ),
            (path, _) => {
                let path = path.unwrap_or("/id");
                (
                    path,
                    mapping::Fields::get(&value, path).map(|v| v.into_owned()),
                )
            }
        };
        let event_id = event_id.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
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
        let SourceAuth::Salesforce { org_ids, .. } = &source.auth else {
            return salesforce_fault(StatusCode::INTERNAL_SERVER_ERROR, Problem::internal());
        };
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
    async fn show(&self, source: &Source, id: &str) -> Result<Response<Body>, Problem> {
        let stored = self.load(id).await?;
        // Another source's request is not found, rather than forbidden: ids
        // leak nothing.
        if &stored.source != source.id() {
            return Err(not_found(id));
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
            &wire::RequestView::of(request, &entries).for_source(),
        ))
    }
}

impl Intake {
    /// The program `id`, if `source` may submit to it (and link its
    /// recipients); any other is not found, so ids leak nothing.
    fn program_for(&self, source: &Source, id: &str) -> Result<Arc<Program>, Problem> {
        ProgramId::parse(id)
            .ok()
            .and_then(|p| self.ports.programs.program(&p))
            .filter(|p| p.accepts_source(source.id()))
            .ok_or_else(|| Problem::not_found(format!("no program {id} is open to this source")))
    }

    /// `PUT /v1/programs/{program}/members/{recipient}`: links a recipient
    /// who has no link, and releases its requests waiting for enrollment.
    /// The same link again is a repeat (`200`, keeping the partner's
    /// validation of it); another link for a linked recipient is `409`,
    /// changing nothing: only an admin changes a link in force.
    #[tracing::instrument(name = "intake.link", skip_all, fields(source = %source.id(), program = %program, recipient = %recipient))]
    async fn link(
        &self,
        request: &Request,
        source: &Source,
        program: &str,
        recipient: &str,
    ) -> Result<Response<Body>, Problem> {
        let program = self.program_for(source, program)?;
        let body: &[u8] = request.body().as_ref();
        if body.len() > self.config.max_body_bytes {
            return Err(Problem::payload_too_large(self.config.max_body_bytes));
        }
        if !is_json(request) {
            return Err(Problem::unsupported_media_type());
        }
        let parsed: members::LinkBody = wire::parse_json(body)?;
        let link = pointsflow_usecases::link::link_from(
            &program,
            recipient,
            &parsed.member_number,
            &parsed.first_name,
            &parsed.last_name,
        )
        .map_err(|e| Problem::invalid_field(e.pointer, format!("{}: {}", e.pointer, e.problem)))?;
        let ports = LinkPorts {
            enrollments: self.ports.enrollments.as_ref(),
            history: None,
            waiting: self.ports.waiting.as_ref(),
            eligibility: self.ports.eligibility_queue.as_ref(),
        };
        let by = format!("source:{}", source.id());
        match pointsflow_usecases::link::create(ports, link, &by, self.ports.clock.now()).await {
            Ok(linked) => Ok(json(
                if linked.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &members::LinkView::of(&linked.link, linked.released),
            )),
            Err(e @ LinkError::AlreadyLinked { .. }) => Err(Problem::already_linked(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "could not link");
                Err(Problem::unavailable(format!("{e}; send it again")))
            }
        }
    }
}

/// The route `segments` and `method` name, or why none.
fn route<'a>(segments: &[&'a str], method: &Method) -> Result<Route<'a>, Problem> {
    let only = |allowed: Method, allow: &'static str, route: Route<'a>| {
        if method == allowed {
            Ok(route)
        } else {
            Err(Problem::method_not_allowed(allow))
        }
    };
    match segments {
        ["v1", "points-requests"] => only(Method::POST, "POST", Route::Create),
        ["v1", "points-requests", id] => only(Method::GET, "GET", Route::Show(id)),
        ["v1", "sources", source, "events"] => {
            only(Method::POST, "POST", Route::SourceEvent(source))
        }
        ["v1", "programs", program, "members", recipient] => {
            only(Method::PUT, "PUT", Route::Link { program, recipient })
        }
        ["v1", "openapi.json"] => only(Method::GET, "GET", Route::OpenApi),
        _ => Err(Problem::not_found(format!(
            "no route for {method} /{}",
            segments.join("/")
        ))),
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
    soap_response(status, soap::fault(code, &problem.code, &problem.detail))
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
