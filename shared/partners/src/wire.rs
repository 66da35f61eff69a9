//! The REST/JSON partner contract (documented in docs/partners.md). The
//! connector sends these and the sandbox answers them.

use serde::{Deserialize, Serialize};

/// `POST /v1/credits`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    pub reference: String,
    pub member_number: String,
    pub points: u64,
    pub program: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditStatus {
    Credited,
    Pending,
    Failed,
}

/// A credit as the partner records it: the answer to a credit or a status look-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub reference: String,
    pub transaction_id: String,
    pub status: CreditStatus,
    pub member_number: String,
    pub points: u64,
    pub program: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    /// Points of the credit reversed since.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reversed_points: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `POST /v1/credits/{reference}/reversals`: idempotent on `reversal_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReversalRequest {
    pub reversal_id: String,
    pub points: u64,
    pub reason: String,
}

/// The answer to a reversal (201 new, 200 a repeat of the same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalAnswer {
    pub reversal_id: String,
    pub reference: String,
    pub points: u64,
    /// Every point of the credit reversed so far, this reversal included.
    pub reversed_points: u64,
}

/// Any 4xx/5xx body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// `GET /v1/statement`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub credits: Vec<Credit>,
}

/// `POST /v1/members/validate`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateMemberRequest {
    pub member_number: String,
    pub first_name: String,
    pub last_name: String,
    pub program: String,
}

/// The answer to a member validation (200): valid, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberValidation {
    pub valid: bool,
    /// When not valid: `unknown_member`, `name_mismatch`, `member_closed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
