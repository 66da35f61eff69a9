//! The sandbox's loyalty-commerce endpoints ([`pointsflow_partners::loyalty`]): member
//! validations with names, orders placed with a validation (not idempotent
//! on the order reference: placing the same order twice credits twice, as
//! such platforms do), orders found by reference, and reversals. Orders
//! share the sandbox's members, magic amounts, misbehaviour and ledger, so
//! statements, stats and `credited_by_member` count them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Decision, Sandbox, decide, error};
use pointsflow_core::partner::normalise_name;
use pointsflow_partners::loyalty::{
    MemberValidationRequest, MemberValidationResponse, Order, OrderRequest, OrderStatus, Orders,
    Reversal, ReversalRequest, ValidationStatus,
};
use pointsflow_partners::wire::{Credit, CreditRequest, CreditStatus};

fn poisoned() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "lock poisoned",
    )
}

/// Orders are kept under `{order reference}/{n}`, the `n`th order placed
/// with that reference.
fn order_key(reference: &str, n: usize) -> String {
    format!("{reference}/{n}")
}

fn to_order(key: &str, credit: &Credit, reversed: u64) -> Order {
    let reference = key.rsplit_once('/').map_or(key, |(r, _)| r);
    Order {
        id: credit.transaction_id.clone(),
        order_reference: reference.to_owned(),
        status: match credit.status {
            CreditStatus::Pending => OrderStatus::Pending,
            CreditStatus::Failed => OrderStatus::Failed,
            CreditStatus::Credited if reversed > 0 => OrderStatus::Reversed,
            CreditStatus::Credited => OrderStatus::Credited,
        },
        member_id: credit.member_number.clone(),
        amount: credit.points,
        failure_code: credit.failure_code.clone(),
        created_at: credit.created_at,
        reversed_amount: reversed,
    }
}

/// `POST /lcp/v1/member-validations`.
pub(super) async fn member_validation(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Json(req): Json<MemberValidationRequest>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let number = req.member_id.trim().to_ascii_uppercase();
    let reason = match state.members.get_key_value(number.as_str()) {
        None => Some("unknown_member"),
        Some((_, m))
            if normalise_name(&m.first_name) != normalise_name(&req.first_name)
                || normalise_name(&m.last_name) != normalise_name(&req.last_name) =>
        {
            Some("name_mismatch")
        }
        Some(_) => None,
    };
    let Ok(mut ledger) = state.ledger.lock() else {
        return poisoned();
    };
    let id = format!("MV{:010}", ledger.validations.len() + 1);
    if reason.is_none()
        && let Some((member, _)) = state.members.get_key_value(number.as_str())
    {
        ledger.validations.insert(id.clone().into(), member.clone());
    }
    drop(ledger);
    let answer = MemberValidationResponse {
        id,
        status: if reason.is_none() {
            ValidationStatus::Valid
        } else {
            ValidationStatus::Invalid
        },
        reason: reason.map(str::to_owned),
    };
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `POST /lcp/v1/orders`: every call places a new order.
pub(super) async fn place_order(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Json(req): Json<OrderRequest>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let key = {
        let Ok(ledger) = state.ledger.lock() else {
            return poisoned();
        };
        let Some(member) = ledger
            .validations
            .get(req.member_validation.as_str())
            .cloned()
        else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_member_validation",
                "no valid member validation with this id",
            );
        };
        let placed = ledger
            .references
            .range::<str, _>((
                std::ops::Bound::Excluded(format!("{}/", req.order_reference).as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(&format!("{}/", req.order_reference)))
            .count();
        (order_key(&req.order_reference, placed + 1), member)
    };
    let (key, member) = key;
    let credit = CreditRequest {
        reference: key.clone(),
        member_number: member.to_string(),
        points: req.amount,
        program: req.loyalty_program,
    };
    match decide(&state, credit) {
        Decision::Answer(status, credit) => {
            (status, Json(to_order(&key, &credit, 0))).into_response()
        }
        Decision::Slow(credit) => {
            tokio::time::sleep(state.config.slow_response).await;
            (StatusCode::CREATED, Json(to_order(&key, &credit, 0))).into_response()
        }
        Decision::Fail(response) => response,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrdersQuery {
    order_reference: String,
}

/// `GET /lcp/v1/orders?orderReference=...`: the orders placed with it (a
/// pending one settles when looked up, as with the REST contract).
pub(super) async fn orders(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Query(query): Query<OrdersQuery>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let Ok(mut ledger) = state.ledger.lock() else {
        return poisoned();
    };
    let prefix = format!("{}/", query.order_reference);
    let keys: Vec<String> = ledger
        .references
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .map(|k| k.to_string())
        .collect();
    let mut orders = Vec::new();
    for key in keys {
        ledger.settle(&key);
        if let Some(recorded) = ledger
            .references
            .get(key.as_str())
            .and_then(|r| r.credit.as_deref())
        {
            let credit = super::to_wire(&key, recorded);
            orders.push(to_order(&key, &credit, recorded.reversed));
        }
    }
    drop(ledger);
    Json(Orders { orders }).into_response()
}

/// `POST /lcp/v1/orders/{id}/reversals`: reverses points of a credited
/// order, never more than it credited.
pub(super) async fn reverse(
    State(state): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<ReversalRequest>,
) -> Response {
    if let Some(refused) = state.refuse(&headers).await {
        return refused;
    }
    let Some(transaction) = id.strip_prefix("SBX").and_then(|n| n.parse::<u64>().ok()) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such order");
    };
    let Ok(mut ledger) = state.ledger.lock() else {
        return poisoned();
    };
    let Some(recorded) = ledger
        .references
        .values_mut()
        .filter_map(|r| r.credit.as_deref_mut())
        .find(|c| c.transaction == transaction)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such order");
    };
    if recorded.status != CreditStatus::Credited {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_credited",
            "only a credited order can be reversed",
        );
    }
    if req.amount == 0 || recorded.reversed + req.amount > recorded.points {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reversal_exceeds_credit",
            format!(
                "{} of {} points are reversed already; {} more would exceed the credit",
                recorded.reversed, recorded.points, req.amount
            ),
        );
    }
    recorded.reversed += req.amount;
    let reversal = Reversal {
        id: format!("RV{transaction:010}-{}", recorded.reversed),
        order_id: id,
        amount: req.amount,
    };
    drop(ledger);
    (StatusCode::CREATED, Json(reversal)).into_response()
}
