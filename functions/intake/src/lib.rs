//! The intake function: the points-request HTTP API behind API Gateway.
//!
//! `POST /v1/points-requests` turns a source's JSON into a canonical request,
//! stores it with a conditional put keyed by (source, Idempotency-Key) and
//! queues it for eligibility. `GET /v1/points-requests/{id}` shows a request
//! with its timeline and ledger entries. Every error is problem+json with a
//! stable code, and a refused request changes nothing.

mod auth;
mod problem;
mod wire;

use std::sync::Arc;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use pointsflow_core::ports::{
    Clock, Created, LedgerRead, PipelineMessage, ProgramCatalog, Publish, RequestCreate, RequestGet,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{IdempotencyKey, RequestId, SourceId};
use serde::Serialize;

pub use auth::SourceCredential;
pub use problem::Problem;

/// Bodies above this are refused with 413 before they are parsed.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub sources: Vec<SourceCredential>,
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
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
pub struct Intake {
    config: Arc<IntakeConfig>,
    ports: IntakePorts,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
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
        Self {
            config: Arc::new(config),
            ports,
        }
    }

    /// The Lambda handler: every outcome is a response, never an `Err`.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method().clone();
        let result = match (segments.as_slice(), &method) {
            (["v1", "points-requests"], &Method::POST) => self.create(&request).await,
            (["v1", "points-requests"], _) => Err(Problem::method_not_allowed("POST")),
            (["v1", "points-requests", id], &Method::GET) => self.show(&request, id).await,
            (["v1", "points-requests", _], _) => Err(Problem::method_not_allowed("GET")),
            _ => Err(Problem::not_found(format!("no route for {method} {path}"))),
        };
        result.unwrap_or_else(Problem::into_response)
    }

    fn authenticate(&self, request: &Request) -> Result<SourceId, Problem> {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(Problem::unauthorized)?;
        auth::authenticate(&self.config.sources, presented)
            .cloned()
            .ok_or_else(Problem::unauthorized)
    }

    #[tracing::instrument(name = "intake.create", skip_all, fields(source, request_id))]
    async fn create(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let source = self.authenticate(request)?;
        tracing::Span::current().record("source", source.as_str());
        if !is_json(request) {
            return Err(Problem::unsupported_media_type());
        }
        let body: &[u8] = request.body().as_ref();
        if body.len() > self.config.max_body_bytes {
            return Err(Problem::payload_too_large(self.config.max_body_bytes));
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
        let new = parsed.into_new_request(source.clone(), key)?;
        match self.ports.programs.program(&new.program) {
            Some(p) if p.accepts_source(&source) => {}
            _ => return Err(Problem::unknown_program(&program_raw)),
        }

        let candidate = new.into_request(self.ports.clock.now());
        tracing::Span::current().record("request_id", candidate.id.as_str());
        let created = self.ports.create.create(&candidate).await.map_err(|e| {
            tracing::error!(error = %e, "could not store the request");
            Problem::unavailable(
                "the request could not be stored; retry with the same Idempotency-Key",
            )
        })?;
        match created {
            Created::New => {
                tracing::info!(program = %candidate.program, recipient = %candidate.recipient.id, "accepted");
                self.enqueue(&candidate).await?;
                Ok(accepted(&candidate, false))
            }
            Created::Existing(existing) if existing.payload_hash == candidate.payload_hash => {
                // A replay. If the first attempt stored the request but could
                // not queue it, queue it now: eligibility ignores duplicates.
                if existing.state() == StatusKind::Received {
                    self.enqueue(&existing).await?;
                }
                tracing::info!(state = %existing.state(), "replay of an accepted request");
                Ok(accepted(&existing, true))
            }
            Created::Existing(_) => {
                tracing::warn!("idempotency key reused with a different body; nothing changed");
                Err(Problem::idempotency_key_reused())
            }
        }
    }

    async fn enqueue(&self, request: &PointsRequest) -> Result<(), Problem> {
        let message = PipelineMessage {
            request_id: request.id.clone(),
        };
        self.ports
            .eligibility_queue
            .publish(std::slice::from_ref(&message))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, request_id = %request.id, "could not queue the request");
                Problem::unavailable(
                    "the request was stored but could not be queued; retry with the same Idempotency-Key",
                )
            })
    }

    #[tracing::instrument(name = "intake.show", skip_all, fields(request_id = %id))]
    async fn show(&self, request: &Request, id: &str) -> Result<Response<Body>, Problem> {
        let source = self.authenticate(request)?;
        let not_found = || Problem::not_found(format!("no points request {id}"));
        let id = RequestId::parse(id).map_err(|_| not_found())?;
        let stored = self.ports.get.get(&id).await.map_err(|e| {
            tracing::error!(error = %e, "could not read the request");
            Problem::unavailable("the request could not be read; retry")
        })?;
        // Another source's request is not found, rather than forbidden: ids leak nothing.
        let stored = stored
            .filter(|r| r.source == source)
            .ok_or_else(not_found)?;
        let entries = self.ports.ledger.entries_for(&id).await.map_err(|e| {
            tracing::error!(error = %e, "could not read the ledger");
            Problem::unavailable("the ledger could not be read; retry")
        })?;
        Ok(json(
            StatusCode::OK,
            &wire::RequestView::of(&stored, &entries),
        ))
    }
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
