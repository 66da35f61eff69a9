//! Who is calling: every source's credentials, kept as SHA-256 digests (or,
//! for HMAC, the secrets themselves) and compared in constant time against
//! every candidate, so timing reveals nothing. Every credential is a list:
//! during a rotation the old and the new are both accepted.

use base64::Engine;
use lambda_http::http::HeaderMap;
use pointsflow_config::{SourceEntry, SourceKind, WebhookAuthKind, WebhookSettings};
use pointsflow_core::signing::{self, WebhookSecret};
use pointsflow_core::values::SourceId;
pub use pointsflow_http::{Secrets, authorization};
use subtle::ConstantTimeEq;

use crate::salesforce_id;
use pointsflow_http::Problem;

/// How one source authenticates.
#[derive(Clone)]
pub enum SourceAuth {
    /// `Authorization: Bearer` with one of these keys.
    Api(Secrets),
    /// A `token` query parameter, and an allowed org id in the message.
    Salesforce {
        tokens: Secrets,
        org_ids: Vec<String>,
    },
    Webhook(WebhookAuth),
}

#[derive(Clone)]
pub enum WebhookAuth {
    Bearer(Secrets),
    /// Digests of `user:password`.
    Basic(Secrets),
    Hmac {
        secrets: Vec<Vec<u8>>,
        signature_header: String,
        timestamp_header: String,
        tolerance_seconds: u64,
    },
    /// Standard Webhooks 1.0; `webhook-id` is the event's id when no field
    /// is mapped for it.
    Standard {
        secrets: Vec<WebhookSecret>,
        tolerance_seconds: u64,
    },
}

/// A configured source: its settings and its credentials.
#[derive(Clone)]
pub struct Source {
    pub entry: SourceEntry,
    pub auth: SourceAuth,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.entry.id)
            .field("kind", &self.entry.kind)
            .finish_non_exhaustive()
    }
}

impl Source {
    pub fn new(entry: SourceEntry) -> Self {
        let auth = match entry.kind {
            SourceKind::Api => SourceAuth::Api(Secrets::of(entry.bearer_keys())),
            // Validation guarantees the settings; without them nothing is accepted.
            SourceKind::SalesforceOutboundMessage => SourceAuth::Salesforce {
                tokens: Secrets::of(
                    entry
                        .salesforce
                        .iter()
                        .flat_map(|sf| sf.tokens.iter().map(String::as_str)),
                ),
                org_ids: entry
                    .salesforce
                    .iter()
                    .flat_map(|sf| sf.org_ids.iter())
                    .filter_map(|o| salesforce_id::to_18(o))
                    .collect(),
            },
            SourceKind::Webhook => SourceAuth::Webhook(match &entry.webhook {
                Some(w) => webhook_auth(w),
                None => WebhookAuth::Bearer(Secrets::default()),
            }),
        };
        Self { entry, auth }
    }

    pub fn id(&self) -> &SourceId {
        &self.entry.id
    }
}

fn webhook_auth(w: &WebhookSettings) -> WebhookAuth {
    match w.auth {
        WebhookAuthKind::Bearer => {
            WebhookAuth::Bearer(Secrets::of(w.keys.iter().map(String::as_str)))
        }
        WebhookAuthKind::Basic => {
            let pairs: Vec<String> = w
                .basic
                .iter()
                .map(|c| format!("{}:{}", c.username, c.password))
                .collect();
            WebhookAuth::Basic(Secrets::of(pairs.iter().map(String::as_str)))
        }
        WebhookAuthKind::StandardWebhooks => WebhookAuth::Standard {
            // Validation has parsed each; one that does not parse signs nothing.
            secrets: w
                .secrets
                .iter()
                .filter_map(|s| WebhookSecret::parse(s).ok())
                .collect(),
            tolerance_seconds: w.tolerance_seconds,
        },
        WebhookAuthKind::Hmac => WebhookAuth::Hmac {
            secrets: w.secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
            signature_header: w.signature_header.to_ascii_lowercase(),
            timestamp_header: w.timestamp_header.to_ascii_lowercase(),
            tolerance_seconds: w.tolerance_seconds,
        },
    }
}

/// The api source whose bearer key is presented, looking at every source.
pub fn api_source<'a>(sources: &'a [Source], headers: &HeaderMap) -> Result<&'a Source, Problem> {
    let presented = authorization(headers, "bearer").ok_or_else(Problem::unauthorized)?;
    let mut found = None;
    for s in sources {
        if let SourceAuth::Api(keys) = &s.auth
            && keys.accepts(presented)
        {
            found = Some(s);
        }
    }
    found.ok_or_else(Problem::unauthorized)
}

/// The signature a webhook sender computes: HMAC-SHA256 over
/// `{timestamp}.{body}`, lower-case hex.
pub use pointsflow_core::signing::pointsflow as webhook_signature;

/// Checks a webhook's credentials; `now` is Unix seconds.
pub fn verify_webhook(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Problem> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    match auth {
        WebhookAuth::Standard {
            secrets,
            tolerance_seconds,
        } => signing::verify_standard(
            secrets,
            (
                header(signing::WEBHOOK_ID),
                header(signing::WEBHOOK_TIMESTAMP),
                header(signing::WEBHOOK_SIGNATURE),
            ),
            body,
            now,
            *tolerance_seconds,
        )
        .map_err(|refusal| Problem::bad_signature(refusal.to_string())),
        WebhookAuth::Bearer(keys) => {
            let presented = authorization(headers, "bearer").ok_or_else(Problem::unauthorized)?;
            keys.accepts(presented)
                .then_some(())
                .ok_or_else(Problem::unauthorized)
        }
        WebhookAuth::Basic(pairs) => {
            let presented = authorization(headers, "basic")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(Problem::unauthorized)?;
            pairs
                .accepts(&presented)
                .then_some(())
                .ok_or_else(Problem::unauthorized)
        }
        WebhookAuth::Hmac {
            secrets,
            signature_header,
            timestamp_header,
            tolerance_seconds,
        } => {
            let timestamp = header(timestamp_header).ok_or_else(|| {
                Problem::bad_signature(format!("the {timestamp_header} header is missing"))
            })?;
            let signature = header(signature_header).ok_or_else(|| {
                Problem::bad_signature(format!("the {signature_header} header is missing"))
            })?;
            let at: i64 = timestamp.parse().map_err(|_| {
                Problem::bad_signature(format!("{timestamp_header} must be Unix seconds"))
            })?;
            if at.abs_diff(now) > *tolerance_seconds {
                return Err(Problem::bad_signature(format!(
                    "the signed timestamp is more than {tolerance_seconds} s from now; sign again"
                )));
            }
            let presented = signature.strip_prefix("sha256=").unwrap_or(signature);
            let presented = presented.to_ascii_lowercase();
            let mut ok = 0u8;
            for secret in secrets {
                let expected = webhook_signature(secret, timestamp, body);
                ok |= expected.as_bytes().ct_eq(presented.as_bytes()).unwrap_u8();
            }
            if ok == 1 {
                Ok(())
            } else {
                Err(Problem::bad_signature(
                    "the signature does not match the body and timestamp",
                ))
            }
        }
    }
}
