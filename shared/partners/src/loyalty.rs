//! A connector in the style of airline loyalty commerce platforms: the
//! member is validated with their names first, and the credit is an
//! *order* placed with that validation, under our reference as the order
//! reference. Orders are `pending`, `credited`, `failed` or `reversed`;
//! they are found by our reference, and a credited order can be reversed.
//!
//! Such platforms are not idempotent on the order reference: placing the
//! same order twice credits twice. So this connector says so
//! ([`PartnerConnector::idempotent_on_reference`] is false) and dispatch
//! always looks the reference up before a retry.
//!
//! The contract (paths under the base URL, bearer key, camelCase JSON):
//! `POST /lcp/v1/member-validations` `{memberId, firstName, lastName,
//! loyaltyProgram}` -> `{id, status: valid|invalid, reason?}`;
//! `POST /lcp/v1/orders` `{memberValidation, orderReference, amount,
//! loyaltyProgram}` -> an order; `GET /lcp/v1/orders?orderReference=...` ->
//! `{orders: [...]}`; `POST /lcp/v1/orders/{id}/reversals` `{amount,
//! reason}` -> `{id, orderId, amount}`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, ReversalInstruction,
    ReversalOutcome,
};
use pointsflow_core::ports::PartnerConnector;
use pointsflow_core::reason::{Reason, ReasonCode};
use pointsflow_core::values::{PartnerReference, Points};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::rest::{BuildError, PartnerHttp, RestConnectorConfig, retry_after, transport_detail};
use crate::wire::ErrorBody;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberValidationRequest {
    pub member_id: String,
    pub first_name: String,
    pub last_name: String,
    pub loyalty_program: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationStatus {
    Valid,
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberValidationResponse {
    pub id: String,
    pub status: ValidationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    pub member_validation: String,
    pub order_reference: String,
    pub amount: u64,
    pub loyalty_program: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Credited,
    Failed,
    Reversed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    pub order_reference: String,
    pub status: OrderStatus,
    pub member_id: String,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Points of the order reversed since.
    #[serde(default)]
    pub reversed_amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    pub orders: Vec<Order>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalRequest {
    pub amount: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reversal {
    pub id: String,
    pub order_id: String,
    pub amount: u64,
}

#[derive(Debug, Clone)]
pub struct LoyaltyConnector {
    client: PartnerHttp,
}

/// The reason code for a partner's refusal.
fn refusal(code: &str, message: impl Into<String>) -> Reason {
    Reason::new(ReasonCode::partner(code), message)
}

fn order_outcome(order: &Order) -> CreditOutcome {
    match order.status {
        OrderStatus::Credited | OrderStatus::Reversed => CreditOutcome::Credited {
            transaction: order.id.clone(),
        },
        OrderStatus::Pending => CreditOutcome::Pending {
            transaction: Some(order.id.clone()),
        },
        OrderStatus::Failed => {
            let code = order.failure_code.as_deref().unwrap_or("failed");
            CreditOutcome::Rejected(refusal(
                code,
                format!("the partner failed order {} ({code})", order.id),
            ))
        }
    }
}

/// What an HTTP answer that is not a success says.
enum Failure {
    /// 429: nothing was done.
    Throttled(Duration),
    /// 400, 422: refused for good, with the partner's code and sentence.
    Refused(Reason),
    /// Anything else: unknown.
    Other(String),
}

async fn failure(response: reqwest::Response) -> Failure {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Failure::Throttled(retry_after(response.headers()));
    }
    let body: Option<ErrorBody> = response.json().await.ok();
    let detail = body
        .as_ref()
        .map(|e| format!("HTTP {status} {}: {}", e.code, e.message))
        .unwrap_or_else(|| format!("HTTP {status}"));
    match (status, body) {
        (StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY, Some(e)) => {
            Failure::Refused(refusal(&e.code, e.message))
        }
        (StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY, None) => {
            Failure::Refused(refusal("rejected", detail))
        }
        _ => Failure::Other(detail),
    }
}

impl LoyaltyConnector {
    pub fn new(config: RestConnectorConfig) -> Result<Self, BuildError> {
        Ok(Self {
            client: PartnerHttp::new(config)?,
        })
    }

    /// Sends a call with the key and reads its JSON answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<T, Failure> {
        let response = request
            .bearer_auth(&self.client.config.api_key)
            .timeout(self.client.timeout(timeout))
            .send()
            .await
            .map_err(|e| Failure::Other(transport_detail(&e)))?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        response.json().await.map_err(|e| {
            Failure::Other(format!(
                "an answer that cannot be read: {}",
                pointsflow_outbound::error_text(&e)
            ))
        })
    }

    /// Validates the member with their names; the validation's id to order with.
    async fn validation(
        &self,
        request: &MemberValidationRequest,
        timeout: Option<Duration>,
    ) -> Result<MemberValidationResponse, Failure> {
        let post = self
            .client
            .http
            .post(self.client.url("/lcp/v1/member-validations"))
            .json(request);
        self.call(post, timeout).await
    }

    /// Reverses `points` of a credited order (`transaction` is its id).
    /// Not idempotent: a repeat reverses again, so the trait's `reverse`
    /// looks the order up first.
    pub async fn reverse_order(
        &self,
        transaction: &str,
        points: Points,
        reason: &str,
    ) -> ReversalOutcome {
        let post = self
            .client
            .http
            .post(
                self.client
                    .url(&format!("/lcp/v1/orders/{transaction}/reversals")),
            )
            .json(&ReversalRequest {
                amount: points.get(),
                reason: reason.to_owned(),
            });
        match self.call::<Reversal>(post, None).await {
            Ok(r) => ReversalOutcome::Reversed { reversal: r.id },
            Err(Failure::Refused(reason)) => ReversalOutcome::Refused(reason),
            Err(Failure::Throttled(_)) => ReversalOutcome::NotAttempted {
                reason: "the partner answered 429 (rate limited)".into(),
            },
            Err(Failure::Other(detail)) => ReversalOutcome::Unknown { detail },
        }
    }

    /// The orders placed under our reference.
    async fn orders(
        &self,
        reference: &PartnerReference,
        timeout: Option<Duration>,
    ) -> Result<Vec<Order>, Failure> {
        // A reference is letters, digits, '-' and '_': nothing to encode.
        let get = self.client.http.get(
            self.client
                .url(&format!("/lcp/v1/orders?orderReference={reference}")),
        );
        self.call::<Orders>(get, timeout).await.map(|o| o.orders)
    }
}

fn throttled(retry_after: Duration) -> CreditOutcome {
    CreditOutcome::NotAttempted {
        retry_after,
        reason: "the partner answered 429 (rate limited)".into(),
    }
}

#[async_trait]
impl PartnerConnector for LoyaltyConnector {
    fn idempotent_on_reference(&self) -> bool {
        false
    }

    #[tracing::instrument(skip(self, instruction), fields(reference = %instruction.reference))]
    async fn credit(&self, instruction: &CreditInstruction) -> CreditOutcome {
        let Some(name) = &instruction.member_name else {
            return CreditOutcome::Rejected(Reason::new(
                ReasonCode::MemberNamesMissing,
                "this partner validates the member's names before a credit, and the member link has none",
            ));
        };
        let validation = match self
            .validation(
                &MemberValidationRequest {
                    member_id: instruction.member.to_string(),
                    first_name: name.first_name.clone(),
                    last_name: name.last_name.clone(),
                    loyalty_program: instruction.partner_program.clone(),
                },
                instruction.timeout,
            )
            .await
        {
            Ok(v) if v.status == ValidationStatus::Valid => v,
            Ok(v) => {
                let code = v.reason.unwrap_or_else(|| "member_invalid".into());
                return CreditOutcome::Rejected(refusal(
                    &code,
                    format!(
                        "the partner did not validate member {} ({code})",
                        instruction.member
                    ),
                ));
            }
            // Nothing was ordered: the order is placed at the next attempt
            // (after the look-up every retry makes first).
            Err(Failure::Throttled(after)) => return throttled(after),
            Err(Failure::Refused(reason)) => return CreditOutcome::Rejected(reason),
            Err(Failure::Other(detail)) => return CreditOutcome::Unknown { detail },
        };
        let post = self
            .client
            .http
            .post(self.client.url("/lcp/v1/orders"))
            .json(&OrderRequest {
                member_validation: validation.id,
                order_reference: instruction.reference.to_string(),
                amount: instruction.points.get(),
                loyalty_program: instruction.partner_program.clone(),
            });
        match self.call::<Order>(post, instruction.timeout).await {
            Ok(order) => order_outcome(&order),
            Err(Failure::Throttled(after)) => throttled(after),
            Err(Failure::Refused(reason)) => CreditOutcome::Rejected(reason),
            Err(Failure::Other(detail)) => CreditOutcome::Unknown { detail },
        }
    }

    async fn status(
        &self,
        reference: &PartnerReference,
        timeout: Option<Duration>,
    ) -> CreditOutcome {
        let orders = match self.orders(reference, timeout).await {
            Ok(o) => o,
            Err(Failure::Throttled(after)) => return throttled(after),
            // A look-up that errs says nothing about the order.
            Err(Failure::Refused(reason)) => {
                return CreditOutcome::Unknown {
                    detail: reason.message,
                };
            }
            Err(Failure::Other(detail)) => return CreditOutcome::Unknown { detail },
        };
        if orders.len() > 1 {
            tracing::error!(%reference, orders = orders.len(), "more than one order under one reference");
        }
        // A credited order wins over a failed one placed under the same reference.
        orders
            .iter()
            .find(|o| matches!(o.status, OrderStatus::Credited | OrderStatus::Reversed))
            .or_else(|| orders.iter().find(|o| o.status == OrderStatus::Pending))
            .or_else(|| orders.first())
            .map_or(CreditOutcome::NotFound, order_outcome)
    }

    /// Orders are not idempotent on a reversal: the order is looked up
    /// first, and a reversal its reversed amount already covers is not
    /// asked for again.
    #[tracing::instrument(skip(self, reversal), fields(reference = %reversal.reference, reversal = %reversal.reversal_id))]
    async fn reverse(&self, reversal: &ReversalInstruction) -> ReversalOutcome {
        let orders = match self.orders(&reversal.reference, reversal.timeout).await {
            Ok(o) => o,
            Err(Failure::Throttled(_)) => {
                return ReversalOutcome::NotAttempted {
                    reason: "the partner answered 429 (rate limited)".into(),
                };
            }
            Err(Failure::Refused(reason)) => {
                return ReversalOutcome::Unknown {
                    detail: reason.message,
                };
            }
            Err(Failure::Other(detail)) => return ReversalOutcome::Unknown { detail },
        };
        let Some(order) = orders
            .iter()
            .find(|o| matches!(o.status, OrderStatus::Credited | OrderStatus::Reversed))
        else {
            return ReversalOutcome::Refused(refusal(
                "not_credited",
                format!("no credited order under {}", reversal.reference),
            ));
        };
        let wanted = reversal.reversed_before + reversal.points.get();
        if order.reversed_amount >= wanted {
            return ReversalOutcome::Reversed {
                reversal: format!("{}-{wanted}", order.id),
            };
        }
        if order.reversed_amount != reversal.reversed_before {
            return ReversalOutcome::Refused(refusal(
                "reversed_elsewhere",
                format!(
                    "order {} has {} points reversed, not the {} pointsflow reversed",
                    order.id, order.reversed_amount, reversal.reversed_before
                ),
            ));
        }
        self.reverse_order(&order.id, reversal.points, &reversal.reason)
            .await
    }

    async fn validate_member(&self, check: &MemberCheck) -> MemberCheckOutcome {
        let request = MemberValidationRequest {
            member_id: check.member.to_string(),
            first_name: check.first_name.clone(),
            last_name: check.last_name.clone(),
            loyalty_program: check.partner_program.clone(),
        };
        match self.validation(&request, check.timeout).await {
            Ok(v) if v.status == ValidationStatus::Valid => MemberCheckOutcome::Valid,
            Ok(v) => {
                let code = v.reason.unwrap_or_else(|| "member_invalid".into());
                MemberCheckOutcome::Invalid(refusal(
                    &code,
                    format!(
                        "the partner did not validate member {} ({code})",
                        check.member
                    ),
                ))
            }
            Err(Failure::Refused(reason)) => MemberCheckOutcome::Invalid(reason),
            Err(Failure::Throttled(_)) => MemberCheckOutcome::Unknown {
                detail: "the partner answered 429 (rate limited)".into(),
            },
            Err(Failure::Other(detail)) => MemberCheckOutcome::Unknown { detail },
        }
    }
}
