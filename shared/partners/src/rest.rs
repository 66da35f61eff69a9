//! A REST/JSON partner connector over the contract in [`crate::wire`]. Partners
//! that speak it are idempotent on our reference: a repeated credit returns
//! the original outcome, so a retry after a timeout is safe.

use std::time::Duration;

use async_trait::async_trait;
use pointsflow_core::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, ReversalInstruction,
    ReversalOutcome,
};
use pointsflow_core::ports::{PartnerConnector, StatementError};
use pointsflow_core::reason::{Reason, ReasonCode};
use pointsflow_core::values::PartnerReference;
use pointsflow_outbound::{Reach, Target};
use reqwest::StatusCode;

use crate::wire::{
    Credit, CreditRequest, CreditStatus, ErrorBody, MemberValidation, ReversalAnswer,
    ReversalRequest, Statement, ValidateMemberRequest,
};
use pointsflow_core::reconcile::{StatementLine, StatementStatus};

#[derive(Debug, Clone)]
pub struct RestConnectorConfig {
    /// e.g. `https://partner.example/api`; paths are appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer ...`.
    pub api_key: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Where the stack runs: deployed, only `https` (`pointsflow-outbound`).
    pub reach: Reach,
}

#[derive(Debug, Clone)]
pub struct RestConnector {
    client: PartnerHttp,
}

/// An HTTP client for one partner: its base URL, key and timeouts. Each
/// call's timeout is the configured one or what the caller has left, the
/// shorter.
#[derive(Debug, Clone)]
pub(crate) struct PartnerHttp {
    pub config: RestConnectorConfig,
    /// The base URL, parsed once: parsing a host (IDNA processing) on
    /// every call cost more than the rest of building the request.
    base: reqwest::Url,
    pub http: reqwest::Client,
}

impl PartnerHttp {
    pub fn new(config: RestConnectorConfig) -> Result<Self, BuildError> {
        let base = pointsflow_outbound::check(&config.base_url, config.reach, Target::Partner)
            .map_err(|e| BuildError::Url(format!("{:?} {e}", config.base_url)))?;
        let http = pointsflow_outbound::client_builder(config.reach, Target::Partner)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { config, base, http })
    }

    /// `path` (and its query, after a `?`) appended to the base URL's path.
    pub fn url(&self, path: &str) -> reqwest::Url {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        url.set_query(query);
        url
    }

    pub fn timeout(&self, requested: Option<Duration>) -> Duration {
        requested.map_or(self.config.request_timeout, |t| {
            t.min(self.config.request_timeout)
        })
    }
}

/// A 429's `Retry-After` (whole seconds), 1 s when absent.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
}

/// What a transport failure was, for an `Unknown` outcome.
pub(crate) fn transport_detail(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    format!("{kind}: {}", pointsflow_outbound::error_text(e))
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("the base URL {0}")]
    Url(String),
}

impl RestConnector {
    pub fn new(config: RestConnectorConfig) -> Result<Self, BuildError> {
        Ok(Self {
            client: PartnerHttp::new(config)?,
        })
    }
}

fn credit_outcome(credit: Credit) -> CreditOutcome {
    match credit.status {
        CreditStatus::Credited => CreditOutcome::Credited {
            transaction: credit.transaction_id,
        },
        CreditStatus::Pending => CreditOutcome::Pending {
            transaction: Some(credit.transaction_id),
        },
        CreditStatus::Failed => {
            let code = credit.failure_code.unwrap_or_else(|| "failed".into());
            CreditOutcome::Rejected(Reason::new(
                ReasonCode::partner(&code),
                format!("the partner failed the credit ({code})"),
            ))
        }
    }
}

/// Which call an answer belongs to: a refusal means something only for a credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Credit,
    LookUp,
}

/// A partner's answer, read: refused by its rate limit (`429`: nothing was
/// done), or a status with its body.
enum Answer {
    Throttled(std::time::Duration),
    Read(StatusCode, Vec<u8>),
    Unreadable(String),
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Answer::Throttled(retry_after(response.headers()));
    }
    match response.bytes().await {
        Ok(body) => Answer::Read(status, body.to_vec()),
        Err(e) => Answer::Unreadable(format!(
            "HTTP {status}, body unreadable: {}",
            pointsflow_outbound::error_text(&e)
        )),
    }
}

async fn read(response: reqwest::Response, call: Call) -> CreditOutcome {
    let (status, body) = match answer(response).await {
        // The partner's rate limit: refused before anything was done.
        Answer::Throttled(retry_after) => {
            return CreditOutcome::NotAttempted {
                retry_after,
                reason: "the partner answered 429 (rate limited)".into(),
            };
        }
        Answer::Unreadable(detail) => return CreditOutcome::Unknown { detail },
        Answer::Read(status, body) => (status, body),
    };
    if status.is_success() {
        return match serde_json::from_slice::<Credit>(&body) {
            Ok(credit) => credit_outcome(credit),
            Err(e) => CreditOutcome::Unknown {
                detail: format!("HTTP {status} with an unreadable body: {e}"),
            },
        };
    }
    let error: Option<ErrorBody> = serde_json::from_slice(&body).ok();
    let detail = error
        .as_ref()
        .map(|e| format!("HTTP {status} {}: {}", e.code, e.message))
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        StatusCode::NOT_FOUND if call == Call::LookUp => CreditOutcome::NotFound,
        // A look-up that errs says nothing about the credit: only a settled
        // `failed` credit (a 200 above) may void a reservation.
        _ if call == Call::LookUp => CreditOutcome::Unknown { detail },
        // Definitive refusals: the partner says what is wrong and credited nothing.
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            let (code, message) = error
                .map(|e| (e.code, e.message))
                .unwrap_or_else(|| ("rejected".into(), detail.clone()));
            CreditOutcome::Rejected(Reason::new(ReasonCode::partner(&code), message))
        }
        // Everything else (401/403 from a credential problem, 409, 5xx) is
        // retried under the same reference; nothing is given up on.
        _ => CreditOutcome::Unknown { detail },
    }
}

fn transport_error(e: &reqwest::Error) -> CreditOutcome {
    CreditOutcome::Unknown {
        detail: transport_detail(e),
    }
}

#[async_trait]
impl PartnerConnector for RestConnector {
    fn idempotent_on_reference(&self) -> bool {
        true
    }

    #[tracing::instrument(skip(self, instruction), fields(reference = %instruction.reference))]
    async fn credit(&self, instruction: &CreditInstruction) -> CreditOutcome {
        let body = CreditRequest {
            reference: instruction.reference.to_string(),
            member_number: instruction.member.to_string(),
            points: instruction.points.get(),
            program: instruction.partner_program.clone(),
        };
        let sent = self
            .client
            .http
            .post(self.client.url("/v1/credits"))
            .bearer_auth(&self.client.config.api_key)
            .timeout(self.client.timeout(instruction.timeout))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) => read(response, Call::Credit).await,
            Err(e) => transport_error(&e),
        }
    }

    #[tracing::instrument(skip(self, check), fields(member = %check.member))]
    async fn validate_member(&self, check: &MemberCheck) -> MemberCheckOutcome {
        let body = ValidateMemberRequest {
            member_number: check.member.to_string(),
            first_name: check.first_name.clone(),
            last_name: check.last_name.clone(),
            program: check.partner_program.clone(),
        };
        let sent = self
            .client
            .http
            .post(self.client.url("/v1/members/validate"))
            .bearer_auth(&self.client.config.api_key)
            .timeout(self.client.timeout(check.timeout))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return MemberCheckOutcome::Unknown {
                    detail: format!("member validation: {}", pointsflow_outbound::error_text(&e)),
                };
            }
        };
        let status = response.status();
        if status != StatusCode::OK {
            return MemberCheckOutcome::Unknown {
                detail: format!("member validation answered {status}"),
            };
        }
        match response.json::<MemberValidation>().await {
            Ok(v) if v.valid => MemberCheckOutcome::Valid,
            Ok(v) => MemberCheckOutcome::Invalid(Reason::new(
                ReasonCode::partner(v.code.as_deref().unwrap_or("member_invalid")),
                v.message
                    .unwrap_or_else(|| "the partner does not accept this member".into()),
            )),
            Err(e) => MemberCheckOutcome::Unknown {
                detail: format!("member validation: unreadable answer: {e}"),
            },
        }
    }

    #[tracing::instrument(skip(self, reversal), fields(reference = %reversal.reference, reversal = %reversal.reversal_id))]
    async fn reverse(&self, reversal: &ReversalInstruction) -> ReversalOutcome {
        let body = ReversalRequest {
            reversal_id: reversal.reversal_id.clone(),
            points: reversal.points.get(),
            reason: reversal.reason.clone(),
        };
        let sent = self
            .client
            .http
            .post(
                self.client
                    .url(&format!("/v1/credits/{}/reversals", reversal.reference)),
            )
            .bearer_auth(&self.client.config.api_key)
            .timeout(self.client.timeout(reversal.timeout))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return ReversalOutcome::Unknown {
                    detail: transport_detail(&e),
                };
            }
        };
        let (status, body) = match answer(response).await {
            Answer::Throttled(_) => {
                return ReversalOutcome::NotAttempted {
                    reason: "the partner answered 429 (rate limited)".into(),
                };
            }
            Answer::Unreadable(detail) => return ReversalOutcome::Unknown { detail },
            Answer::Read(status, body) => (status, body),
        };
        if status.is_success() {
            return match serde_json::from_slice::<ReversalAnswer>(&body) {
                Ok(a) => ReversalOutcome::Reversed {
                    reversal: a.reversal_id,
                },
                Err(e) => ReversalOutcome::Unknown {
                    detail: format!("HTTP {status} with an unreadable body: {e}"),
                },
            };
        }
        let error: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        match (status, error) {
            (
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY,
                Some(e),
            ) => ReversalOutcome::Refused(Reason::new(ReasonCode::partner(&e.code), e.message)),
            (_, e) => ReversalOutcome::Unknown {
                detail: e.map_or_else(
                    || format!("HTTP {status}"),
                    |e| format!("HTTP {status} {}: {}", e.code, e.message),
                ),
            },
        }
    }

    async fn statement(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<StatementLine>, StatementError> {
        let response = self
            .client
            .http
            // RFC 3339 in UTC with `Z`: nothing in it needs encoding.
            .get(self.client.url(&format!(
                "/v1/statement?from={}&to={}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            )))
            .bearer_auth(&self.client.config.api_key)
            .timeout(
                self.client
                    .config
                    .request_timeout
                    .max(Duration::from_secs(60)),
            )
            .send()
            .await
            .map_err(|e| StatementError::Unavailable(transport_detail(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(StatementError::Unavailable(format!(
                "the partner answered {status}"
            )));
        }
        let statement: Statement = response.json().await.map_err(|e| {
            StatementError::Unavailable(format!(
                "unreadable answer: {}",
                pointsflow_outbound::error_text(&e)
            ))
        })?;
        Ok(statement
            .credits
            .into_iter()
            .map(|c| StatementLine {
                status: match c.status {
                    CreditStatus::Credited => StatementStatus::Credited,
                    CreditStatus::Pending => StatementStatus::Pending,
                    CreditStatus::Failed => StatementStatus::Failed,
                },
                reference: c.reference,
                transaction: c.transaction_id,
                member: c.member_number,
                points: c.points,
                reversed: c.reversed_points,
                created_at: c.created_at,
            })
            .collect())
    }

    #[tracing::instrument(skip(self))]
    async fn status(
        &self,
        reference: &PartnerReference,
        timeout: Option<Duration>,
    ) -> CreditOutcome {
        let sent = self
            .client
            .http
            .get(self.client.url(&format!("/v1/credits/{reference}")))
            .timeout(self.client.timeout(timeout))
            .bearer_auth(&self.client.config.api_key)
            .send()
            .await;
        match sent {
            Ok(response) => read(response, Call::LookUp).await,
            Err(e) => transport_error(&e),
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    fn http(base: &str) -> PartnerHttp {
        PartnerHttp::new(RestConnectorConfig {
            base_url: base.into(),
            api_key: "k".into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            reach: Reach::Local,
        })
        .unwrap()
    }

    #[test]
    fn a_call_s_url_is_the_base_s_path_and_the_call_s_own() {
        let h = http("https://partner.example/api/");
        assert_eq!(
            h.url("/v1/credits").as_str(),
            "https://partner.example/api/v1/credits"
        );
        assert_eq!(
            h.url("/lcp/v1/orders?orderReference=pf 1&x=y").as_str(),
            "https://partner.example/api/lcp/v1/orders?orderReference=pf%201&x=y"
        );
        let h = http("http://127.0.0.1:8080");
        assert_eq!(
            h.url("/v1/credits/pf1").as_str(),
            "http://127.0.0.1:8080/v1/credits/pf1"
        );
    }
}
