//! The JSON API's bodies and how they become domain values. Each parse error
//! names the field as a JSON pointer.

use chrono::{DateTime, Utc};
use pointsflow_core::approval::Approval;
use pointsflow_core::ledger::Entry;
use pointsflow_core::money::{Currency, Money};
use pointsflow_core::reason::Reason;
use pointsflow_core::request::{
    Award, NewRequest, PointsRequest, Recipient, SourceEvent, Status, StatusKind, TimelineEntry,
};
use pointsflow_core::values::{
    Email, EventType, IdempotencyKey, MemberNumber, ParseError, PartnerReference, Points,
    ProgramId, RecipientId, RequestId, SourceId,
};
use pointsflow_core::window::CreditId;
use serde::{Deserialize, Serialize};

use pointsflow_http::Problem;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    program: String,
    recipient: RecipientBody,
    #[serde(default)]
    points: Option<u64>,
    #[serde(default)]
    amount: Option<AmountBody>,
    event: EventBody,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientBody {
    id: String,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    /// A decimal string ("12500.00"); a JSON number is accepted too.
    value: serde_json::Value,
    currency: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    occurred_at: String,
    #[serde(default)]
    attributes: serde_json::Map<String, serde_json::Value>,
}

fn field<T>(pointer: &str, parsed: Result<T, ParseError>) -> Result<T, Problem> {
    parsed.map_err(|e| Problem::invalid_field(pointer, format!("{pointer}: {}", e.problem)))
}

/// Parses the body text: 400 if it is not JSON, 422 naming the field if it
/// is JSON of the wrong shape.
pub fn parse_body(bytes: &[u8]) -> Result<CreateBody, Problem> {
    parse_json(bytes)
}

/// A JSON object body as `T`: 400 if it is not JSON, 422 naming the field
/// (a JSON pointer) if it has the wrong shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::malformed_json(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Problem::invalid_field("", "the body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let pointer = if path == "." {
            String::new()
        } else {
            format!("/{}", path.replace('.', "/"))
        };
        let inner = e.into_inner().to_string();
        // serde names a missing field only in its message; point at the field itself.
        let pointer = match inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((missing, _)) => format!("{pointer}/{missing}"),
            None => pointer,
        };
        Problem::invalid_field(pointer.clone(), format!("{pointer}: {inner}"))
    })
}

impl CreateBody {
    pub fn program_raw(&self) -> &str {
        &self.program
    }

    pub fn into_new_request(
        self,
        source: SourceId,
        key: IdempotencyKey,
    ) -> Result<NewRequest, Problem> {
        let program = field("/program", ProgramId::parse(&self.program))?;
        let recipient = Recipient {
            id: field("/recipient/id", RecipientId::parse(&self.recipient.id))?,
            email: match self.recipient.email.as_deref() {
                Some(e) => Some(field("/recipient/email", Email::parse(e))?),
                None => None,
            },
        };
        let award = match (self.points, self.amount) {
            (Some(_), Some(_)) => {
                return Err(Problem::invalid_field(
                    "/points",
                    "give either points or amount, not both",
                ));
            }
            (Some(p), None) => {
                if p == 0 {
                    return Err(Problem::invalid_field(
                        "/points",
                        "/points: must be greater than 0",
                    ));
                }
                Some(Award::Points(field("/points", Points::new(p))?))
            }
            (None, Some(a)) => {
                let currency = field("/amount/currency", Currency::parse(&a.currency))?;
                let text = match &a.value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(Problem::invalid_field(
                            "/amount/value",
                            "/amount/value: must be a decimal string such as \"12500.00\"",
                        ));
                    }
                };
                Some(Award::Amount(field(
                    "/amount/value",
                    Money::parse(&text, currency),
                )?))
            }
            (None, None) => None,
        };
        let occurred_at = DateTime::parse_from_rfc3339(&self.event.occurred_at)
            .map_err(|_| {
                Problem::invalid_field(
                    "/event/occurred_at",
                    "/event/occurred_at: must be an RFC 3339 time, e.g. 2026-11-27T16:00:00Z",
                )
            })?
            .with_timezone(&Utc);
        if let Some(id) = &self.event.id
            && (id.is_empty() || id.chars().count() > 255 || id.chars().any(char::is_control))
        {
            return Err(Problem::invalid_field(
                "/event/id",
                "/event/id: must be 1 to 255 characters without control characters",
            ));
        }
        let event = SourceEvent {
            kind: field("/event/type", EventType::parse(&self.event.kind))?,
            id: self.event.id,
            occurred_at,
            occurred_at_is_receipt: false,
            attributes: self.event.attributes,
        };
        Ok(NewRequest {
            source,
            idempotency_key: key,
            program,
            recipient,
            award,
            event,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
}

pub fn link(id: &RequestId) -> String {
    format!("/v1/points-requests/{id}")
}

/// The 202 answer: the same for the first acceptance and every replay.
/// An event a source sent that did not qualify is `rejected`, with why.
#[derive(Debug, Serialize)]
pub struct Accepted<'a> {
    pub id: &'a RequestId,
    pub status: StatusKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a Reason>,
    pub program: &'a ProgramId,
    pub accepted_at: DateTime<Utc>,
    pub links: Links,
}

impl<'a> Accepted<'a> {
    pub fn of(request: &'a PointsRequest) -> Self {
        // Rejected at intake: the rejection is recorded at the time of receipt.
        let at_intake = request
            .timeline
            .get(1)
            .is_some_and(|t| t.state == StatusKind::Rejected && t.at == request.received_at);
        let reason = match &request.status {
            pointsflow_core::request::Status::Rejected { reason } if at_intake => Some(reason),
            _ => None,
        };
        Self {
            id: &request.id,
            status: if reason.is_some() {
                StatusKind::Rejected
            } else {
                StatusKind::Received
            },
            reason,
            program: &request.program,
            accepted_at: request.received_at,
            links: Links {
                this: link(&request.id),
            },
        }
    }
}

/// `GET /v1/points-requests/{id}`.
#[derive(Debug, Serialize)]
pub struct RequestView<'a> {
    pub id: &'a RequestId,
    pub status: StatusKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a Reason>,
    pub program: &'a ProgramId,
    pub recipient: &'a Recipient,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub award: Option<&'a Award>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Points>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_number: Option<&'a MemberNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_reference: Option<&'a PartnerReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_transaction: Option<&'a str>,
    /// The scheduled window the request is held for or was sent in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The window credit that carries it (with its requests, one partner credit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit: Option<&'a CreditId>,
    pub event: &'a SourceEvent,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<&'a Approval>,
    pub timeline: &'a [TimelineEntry],
    pub ledger: &'a [Entry],
    pub links: Links,
}

/// Replaces `secret` with `masked` in every string of `value`.
fn mask_strings(value: &mut serde_json::Value, secret: &str, masked: &str) {
    match value {
        serde_json::Value::String(s) if s.contains(secret) => *s = s.replace(secret, masked),
        serde_json::Value::Array(items) => {
            for item in items {
                mask_strings(item, secret, masked);
            }
        }
        serde_json::Value::Object(fields) => {
            for field in fields.values_mut() {
                mask_strings(field, secret, masked);
            }
        }
        _ => {}
    }
}

impl<'a> RequestView<'a> {
    /// The view as its source reads it: the member number the request is
    /// credited to shows its last four characters only, wherever it
    /// appears (the field, the ledger's account names, a window credit's
    /// id, the timeline), so a source's key cannot read the number linked
    /// to a recipient it names.
    pub fn for_source(&self) -> serde_json::Value {
        let mut view = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(member) = self.member_number {
            let masked = pointsflow_runtime::masking::member_number(member.as_str());
            mask_strings(&mut view, member.as_str(), &masked);
        }
        view
    }

    pub fn of(request: &'a PointsRequest, ledger: &'a [Entry]) -> Self {
        Self {
            id: &request.id,
            status: request.state(),
            reason: request.status.reason(),
            program: &request.program,
            recipient: &request.recipient,
            award: request.award.as_ref(),
            points: request.points,
            member_number: request.member.as_ref(),
            partner_reference: request.partner_reference.as_ref(),
            partner_transaction: request.partner_transaction.as_deref(),
            window: match &request.status {
                Status::Scheduled { window } => Some(window.clone()),
                _ => request
                    .credit
                    .as_ref()
                    .and_then(CreditId::window)
                    .map(|w| w.to_string()),
            },
            credit: request.credit.as_ref(),
            event: &request.event,
            received_at: request.received_at,
            approval: request.approval.as_ref(),
            timeline: &request.timeline,
            ledger,
            links: Links {
                this: link(&request.id),
            },
        }
    }
}
