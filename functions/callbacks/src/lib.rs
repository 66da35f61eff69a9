//! The callbacks function: for each message on the callbacks queue (a
//! request reached a final status), posts the status to the request's
//! source's callback URL, signed with the source's secret:
//!
//! ```text
//! POST {url}
//! content-type: application/json
//! x-pointsflow-timestamp: 1764318000
//! x-pointsflow-signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">
//! x-pointsflow-event-id: pr_…:credited
//!
//! {"event_id": "pr_…:credited", "request_id": "pr_…", "status": "credited", …}
//! ```
//!
//! or, for a source that chose `signature = "standard_webhooks"`, as
//! Standard Webhooks 1.0 has it (the same body):
//!
//! ```text
//! webhook-id: pr_…:credited
//! webhook-timestamp: 1764318000
//! webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"> [v1,… for a retiring secret]
//! ```
//!
//! A 2xx answer is delivery. Anything else (an error, a timeout, no
//! connection) is retried on the queue with capped exponential backoff and
//! full jitter, for up to 72 hours after the status was reached; then the
//! message goes to the dead-letter queue, from which `pointsflow ops redrive
//! --queue callbacks` replays it. Delivery is at least once: receivers
//! dedupe on the event id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use lambda_runtime::LambdaEvent;
use pointsflow_config::{CallbackSettings, CallbackSignature};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{Clock, Redelivery, RequestGet};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::signing::{self, WebhookSecret};
use pointsflow_core::values::SourceId;
use pointsflow_outbound::{Reach, Target};
use pointsflow_runtime::{Backoff, RecordError, SqsHandler, process_batch_with_backoff};
use serde_json::json;

/// Header carrying the Unix time (seconds) the call was signed at.
pub const TIMESTAMP_HEADER: &str = "x-pointsflow-timestamp";
/// Header carrying `sha256=` and the hex HMAC-SHA256 of `{timestamp}.{body}`.
pub const SIGNATURE_HEADER: &str = "x-pointsflow-signature";
/// Header carrying the event's id (`{request}:{status}`): receivers dedupe on it.
pub const EVENT_ID_HEADER: &str = "x-pointsflow-event-id";

/// HMAC-SHA256 of `{timestamp}.{body}` under `secret`, as hex.
pub use pointsflow_core::signing::pointsflow as signature;

/// A source's callback as the function uses it: the URL and the headers
/// that sign a body.
#[derive(Clone)]
struct Receiver {
    url: String,
    signer: Signer,
}

#[derive(Clone)]
enum Signer {
    Pointsflow(String),
    Standard(Vec<WebhookSecret>),
}

impl Signer {
    fn of(settings: &CallbackSettings) -> Result<Self, String> {
        Ok(match settings.signature {
            CallbackSignature::Pointsflow => Signer::Pointsflow(settings.secret.clone()),
            CallbackSignature::StandardWebhooks => Signer::Standard(
                settings
                    .signing_secrets()
                    .into_iter()
                    .map(WebhookSecret::parse)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// The headers that sign `body`, sent as event `id` at `timestamp`.
    fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
        match self {
            Signer::Pointsflow(secret) => {
                let at = timestamp.to_string();
                let signed = signature(secret.as_bytes(), &at, body);
                vec![
                    (TIMESTAMP_HEADER, at),
                    (SIGNATURE_HEADER, format!("sha256={signed}")),
                    (EVENT_ID_HEADER, id.to_owned()),
                ]
            }
            Signer::Standard(secrets) => vec![
                (signing::WEBHOOK_ID, id.to_owned()),
                (signing::WEBHOOK_TIMESTAMP, timestamp.to_string()),
                (
                    signing::WEBHOOK_SIGNATURE,
                    signing::standard_signatures(secrets, id, timestamp, body),
                ),
            ],
        }
    }
}

/// How long one call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("source {id}'s callback.url {problem}")]
    Url {
        id: SourceId,
        problem: pointsflow_outbound::UrlError,
    },
    #[error("source {id}'s callback.secret {problem}")]
    Secret { id: SourceId, problem: String },
}

/// How callbacks are retried: capped exponential backoff with full jitter,
/// until a status is `give_up_after` old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub backoff: Backoff,
    pub give_up_after: Duration,
}

#[derive(Clone)]
pub struct CallbacksPorts {
    pub get: Arc<dyn RequestGet>,
    /// The callbacks queue, for retries after a backoff.
    pub redelivery: Arc<dyn Redelivery>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
pub struct Callbacks {
    ports: CallbacksPorts,
    targets: Arc<HashMap<SourceId, Receiver>>,
    http: reqwest::Client,
    retries: Retries,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks").finish_non_exhaustive()
    }
}

/// The JSON a receiver gets for `request` reaching `message.state`.
pub fn payload(request: &PointsRequest, message: &CallbackMessage) -> serde_json::Value {
    let reason = (request.state() == message.state)
        .then(|| request.status.reason())
        .flatten();
    json!({
        "event_id": message.event_id(),
        "request_id": request.id,
        "source": request.source,
        "source_record": request.event.id,
        "idempotency_key": request.idempotency_key,
        "program": request.program,
        "recipient": request.recipient.id,
        "status": message.state,
        "reason": reason,
        "points": request.points,
        "points_reversed": request.reversed_done(),
        "partner_reference": request.partner_reference,
        "undoes": request.undoes,
        "at": message.at,
    })
}

impl Callbacks {
    /// Fails when the HTTP client cannot be built (its TLS roots): a
    /// function without one must not start.
    /// Every callback URL is checked for `reach` (`pointsflow-outbound`):
    /// deployed, HTTPS to a public host only, and the client's resolver
    /// refuses private addresses on every connection. No redirect is
    /// followed.
    pub fn new(
        reach: Reach,
        ports: CallbacksPorts,
        targets: HashMap<SourceId, CallbackSettings>,
        retries: Retries,
    ) -> Result<Self, BuildError> {
        let mut receivers = HashMap::with_capacity(targets.len());
        for (source, target) in targets {
            pointsflow_outbound::check(&target.url, reach, Target::Callback).map_err(|e| {
                BuildError::Url {
                    id: source.clone(),
                    problem: e,
                }
            })?;
            let signer = Signer::of(&target).map_err(|problem| BuildError::Secret {
                id: source.clone(),
                problem,
            })?;
            receivers.insert(
                source,
                Receiver {
                    url: target.url,
                    signer,
                },
            );
        }
        let http = pointsflow_outbound::client_builder(reach, Target::Callback)
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            ports,
            targets: Arc::new(receivers),
            http,
            retries,
        })
    }

    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        Ok(process_batch_with_backoff(
            "callbacks",
            event.payload,
            self.retries.backoff,
            self.ports.redelivery.as_ref(),
            |m: CallbackMessage| async move { self.deliver(&m).await },
        )
        .await)
    }

    #[tracing::instrument(name = "callback", skip_all, fields(request_id = %message.request_id, state = %message.state, program, source_record))]
    async fn deliver(&self, message: &CallbackMessage) -> Result<(), RecordError> {
        let request =
            pointsflow_runtime::load_request(self.ports.get.as_ref(), &message.request_id).await?;
        let Some(target) = self.targets.get(&request.source) else {
            tracing::debug!(source = %request.source, "the source has no callback");
            return Ok(());
        };
        let body = serde_json::to_vec(&payload(&request, message))
            .map_err(|e| RecordError::Poison(e.to_string()))?;
        let timestamp = self.ports.clock.now().timestamp();
        let mut call = self
            .http
            .post(&target.url)
            .header("content-type", "application/json");
        for (name, value) in target.signer.headers(&message.event_id(), timestamp, &body) {
            call = call.header(name, value);
        }
        let sent = call.body(body).send().await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(status = %r.status(), "status delivered");
                return Ok(());
            }
            Ok(r) => format!("the receiver answered {}", r.status()),
            Err(e) => format!(
                "the receiver could not be reached: {}",
                pointsflow_outbound::error_text(&e)
            ),
        };
        let age = (self.ports.clock.now() - message.at)
            .to_std()
            .unwrap_or_default();
        pointsflow_runtime::metrics::put(
            ("Source", request.source.as_str()),
            &[(
                "CallbackFailures",
                1.0,
                pointsflow_runtime::metrics::Unit::Count,
            )],
        );
        if age > self.retries.give_up_after {
            return Err(RecordError::Poison(format!(
                "{failure}; given up after {} hours: replay it from the dead-letter queue",
                self.retries.give_up_after.as_secs() / 3_600
            )));
        }
        Err(RecordError::Retry(failure))
    }
}

impl SqsHandler for Callbacks {
    async fn handle_batch(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        self.handle(event).await
    }
}
