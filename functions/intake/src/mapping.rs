//! A source's event, through its field mapping, into a points request: the
//! program (a route or the source's default), the qualifying conditions, the
//! recipient, the award, the event's id, type and time. An event that does
//! not qualify or cannot be mapped still becomes a request, recorded as
//! rejected with the reason, so the source's retries find it and the
//! operator sees it.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use pointsflow_config::{Mapping, SourceEntry};
use pointsflow_core::money::{Currency, Money};
use pointsflow_core::reason::{Reason, ReasonCode};
use pointsflow_core::request::{Award, NewRequest, PointsRequest, Recipient, SourceEvent, Status};
use pointsflow_core::values::{Email, EventType, IdempotencyKey, Points, ProgramId, RecipientId};

use crate::soap::Notification;

/// Where mapped values are read from.
pub trait Fields {
    /// The value at `path`, as text; `None` when absent or nil.
    fn get(&self, path: &str) -> Option<Cow<'_, str>>;
}

impl Fields for Notification {
    fn get(&self, path: &str) -> Option<Cow<'_, str>> {
        self.field(path).map(Cow::Borrowed)
    }
}

impl Fields for serde_json::Value {
    fn get(&self, path: &str) -> Option<Cow<'_, str>> {
        match self.pointer(path)? {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
            serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
            serde_json::Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            _ => None,
        }
    }
}

/// A mapped event, ready to record.
#[derive(Debug)]
pub struct Candidate {
    pub request: PointsRequest,
    /// Why it was rejected at intake, if it was.
    pub rejected: Option<Reason>,
}

/// What identifies the event in the source, besides the mapped fields.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The business key: the same event from the same source always has it.
    pub key: String,
    /// The event's id in the source (a record id, an event id).
    pub event_id: String,
    /// Kept on the request for tracing (e.g. the notification id).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn reason(code: ReasonCode, detail: impl Into<String>) -> Reason {
    Reason::new(code, detail.into())
}

/// The program an event goes to: the first route that matches, else the default.
pub fn program_for(source: &SourceEntry, fields: &dyn Fields) -> Option<ProgramId> {
    source
        .routes
        .iter()
        .find(|r| r.condition().holds(fields.get(&r.field).as_deref()))
        .map(|r| r.program.clone())
        .or_else(|| source.program.clone())
}

fn occurred_at(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // Salesforce dates (CloseDate) and HRIS dates: the start of that day, UTC.
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn award(mapping: &Mapping, fields: &dyn Fields) -> Result<Award, Reason> {
    if let Some(path) = &mapping.points {
        let text = fields
            .get(path)
            .ok_or_else(|| reason(ReasonCode::FieldMissing, format!("{path} is missing")))?;
        let n: u64 = text.trim().parse().map_err(|_| {
            reason(
                ReasonCode::FieldInvalid,
                format!("{path} must be a whole number of points, not '{text}'"),
            )
        })?;
        if n == 0 {
            return Err(reason(
                ReasonCode::FieldInvalid,
                format!("{path} must be greater than 0"),
            ));
        }
        let points = Points::new(n)
            .map_err(|e| reason(ReasonCode::FieldInvalid, format!("{path}: {}", e.problem)))?;
        return Ok(Award::Points(points));
    }
    let path = mapping.amount.as_deref().unwrap_or("amount");
    let text = fields
        .get(path)
        .ok_or_else(|| reason(ReasonCode::FieldMissing, format!("{path} is missing")))?;
    let currency_text = mapping
        .currency_field
        .as_deref()
        .and_then(|f| fields.get(f))
        .map(|c| c.into_owned());
    let currency = match (currency_text, mapping.currency) {
        (Some(c), _) => Currency::parse(&c).map_err(|e| {
            reason(
                ReasonCode::FieldInvalid,
                format!("currency '{c}': {}", e.problem),
            )
        })?,
        (None, Some(c)) => c,
        (None, None) => return Err(reason(ReasonCode::FieldMissing, "the currency is missing")),
    };
    let money = Money::parse(text.trim(), currency)
        .map_err(|e| reason(ReasonCode::FieldInvalid, format!("{path}: {}", e.problem)))?;
    Ok(Award::Amount(money))
}

/// Maps one event for `program` (the caller's [`program_for`], which is
/// also part of the business key). `now` is the time of receipt.
pub fn map_event(
    source: &SourceEntry,
    fields: &dyn Fields,
    program: ProgramId,
    origin: Origin,
    now: DateTime<Utc>,
) -> Result<Candidate, String> {
    let mapping = source
        .mapping
        .as_ref()
        .ok_or_else(|| format!("source {} has no mapping", source.id))?;
    let key = IdempotencyKey::parse(&origin.key)
        .map_err(|e| format!("business key '{}': {}", origin.key, e.problem))?;
    let kind = EventType::parse(&mapping.event_type).map_err(|e| e.problem.to_string())?;

    let mut problems: Vec<Reason> = Vec::new();
    for condition in &source.qualify {
        let value = fields.get(&condition.field);
        if !condition.holds(value.as_deref()) {
            problems.push(reason(
                ReasonCode::NotQualifying,
                format!(
                    "{} (it is {})",
                    condition.describe(),
                    value.map_or("empty".to_owned(), |v| format!("'{v}'"))
                ),
            ));
        }
    }
    let recipient_text = fields.get(&mapping.recipient);
    let recipient_id = match recipient_text.as_deref().map(RecipientId::parse) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            problems.push(reason(
                ReasonCode::FieldInvalid,
                format!("{}: {}", mapping.recipient, e.problem),
            ));
            unknown_recipient()?
        }
        None => {
            problems.push(reason(
                ReasonCode::FieldMissing,
                format!("{} is missing", mapping.recipient),
            ));
            unknown_recipient()?
        }
    };
    let email = mapping
        .recipient_email
        .as_deref()
        .and_then(|p| fields.get(p))
        .and_then(|e| Email::parse(&e).ok());
    let award = match award(mapping, fields) {
        Ok(a) => Some(a),
        Err(r) => {
            problems.push(r);
            None
        }
    };
    // `None`: the event carries no time of its own, and the receipt time
    // stands in (kept out of the replay comparison).
    let occurred = match mapping.occurred_at.as_deref() {
        None => None,
        Some(path) => match fields.get(path).as_deref().map(occurred_at) {
            Some(Some(t)) => Some(t),
            Some(None) => {
                problems.push(reason(
                    ReasonCode::FieldInvalid,
                    format!("{path} must be an RFC 3339 time or a date (YYYY-MM-DD)"),
                ));
                None
            }
            None => None,
        },
    };
    let mut attributes = origin.attributes;
    for path in &mapping.attributes {
        if let Some(v) = fields.get(path) {
            let name = path.trim_start_matches('/').replace('/', ".");
            attributes.insert(name, serde_json::Value::String(v.into_owned()));
        }
    }
    let new = NewRequest {
        source: source.id.clone(),
        idempotency_key: key,
        program,
        recipient: Recipient {
            id: recipient_id,
            email,
        },
        award,
        event: SourceEvent {
            kind,
            id: Some(origin.event_id),
            occurred_at: occurred.unwrap_or(now),
            occurred_at_is_receipt: occurred.is_none(),
            attributes,
        },
    };
    let mut request = new.into_request(now);
    let rejected = problems.into_iter().next();
    if let Some(r) = &rejected {
        let detail = format!("rejected at intake: {}", r.message);
        request
            .transition(Status::Rejected { reason: r.clone() }, now, detail)
            .map_err(|e| e.to_string())?;
    }
    Ok(Candidate { request, rejected })
}

fn unknown_recipient() -> Result<RecipientId, String> {
    RecipientId::parse("unknown").map_err(|e| e.problem.to_string())
}
