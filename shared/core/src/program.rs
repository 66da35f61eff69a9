//! Programs: who qualifies, how many points, the caps and budget that bound
//! them, and where the points go.

use chrono::{DateTime, Utc};
pub use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use std::borrow::Cow;

use crate::ledger::{CapCharge, CapKey};
use crate::money::Currency;
use crate::partner::Destination;
use crate::reason::{Reason, ReasonCode};
use crate::request::{Award, PointsRequest};
use crate::schedule::WindowCron;
use crate::values::{EventType, MemberNumber, Points, ProgramId, RecipientId, SourceId};

/// What a paused program does with the requests it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenPaused {
    /// Rejected (`program_paused`).
    #[default]
    Reject,
    /// Held (`held`) until the program is active again, then decided.
    Hold,
}

/// What a source event that undoes a qualifying one does (the Opportunity
/// left Closed Won, the recognition was withdrawn): a clawback request for
/// the points the first one earned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUndo {
    /// Waits in `awaiting_approval` for an operator: approving takes the
    /// points back, declining keeps them.
    #[default]
    Flag,
    /// The points are taken back at once.
    Reverse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProgramState {
    #[default]
    Active,
    Paused,
    Ended,
}

/// How a request's points are found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum PointsRule {
    /// The same number of points for every qualifying event; the request names no award.
    Fixed { points: Points },
    /// The points the source asks for, as given.
    Given,
    /// `points` for every `per` of the event's amount, rounded down:
    /// 2 points per 100 turns 12,550.00 into 251.
    Rate {
        points: Points,
        #[serde(with = "rust_decimal::serde::str")]
        per: Decimal,
    },
    /// A fixed number of points by the band the amount falls in: the last
    /// tier whose `from` is at most the amount (amounts below the first
    /// tier earn nothing).
    Tiers { tiers: Vec<Tier> },
}

/// One band of a `tiers` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The smallest amount in the band (inclusive).
    #[serde(with = "rust_decimal::serde::str")]
    pub from: Decimal,
    pub points: Points,
}

/// A condition a request must meet, on one of its fields: `amount`,
/// `currency`, `points`, `source`, `recipient.id`, `event.type`, `event.id`
/// or `attributes.<name>` (a field the source mapped). Either `equals`, or
/// `in`, or numeric bounds (`gt`, `gte`, `lt`, `lte`, which combine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCondition {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, rename = "in", skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_str_opt"
    )]
    pub gt: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_str_opt"
    )]
    pub gte: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_str_opt"
    )]
    pub lt: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "decimal_str_opt"
    )]
    pub lte: Option<Decimal>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// An IANA time zone name, checked against the time zone database.
mod time_zone {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn is_utc(tz: &Tz) -> bool {
        *tz == Tz::UTC
    }

    pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
        let name = String::deserialize(d)?;
        name.trim().parse::<Tz>().map_err(|_| {
            serde::de::Error::custom(format!(
                "'{name}' is not an IANA time zone (e.g. Europe/London, America/New_York, UTC)"
            ))
        })
    }
}

/// Decimal bounds written as strings ("10000.50") so no precision is lost.
mod decimal_str_opt {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    /// A string ("10000.50") or a whole number (10000).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Whole(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Whole(n) => Ok(Some(Decimal::from(n))),
            Raw::Text(text) => {
                text.trim().parse::<Decimal>().map(Some).map_err(|_| {
                    serde::de::Error::custom(format!("'{text}' is not a decimal number"))
                })
            }
        }
    }
}

impl RuleCondition {
    /// The request's value for `field`, as text; `None` when it has none.
    fn value_of<'a>(field: &str, request: &'a PointsRequest) -> Option<Cow<'a, str>> {
        match field {
            "amount" => match &request.award {
                Some(Award::Amount(m)) => Some(Cow::Owned(m.amount().to_string())),
                _ => None,
            },
            "currency" => match &request.award {
                Some(Award::Amount(m)) => Some(Cow::Owned(m.currency().to_string())),
                _ => None,
            },
            "points" => match &request.award {
                Some(Award::Points(p)) => Some(Cow::Owned(p.get().to_string())),
                _ => None,
            },
            "source" => Some(Cow::Borrowed(request.source.as_str())),
            "recipient.id" => Some(Cow::Borrowed(request.recipient.id.as_str())),
            "event.type" => Some(Cow::Borrowed(request.event.kind.as_str())),
            "event.id" => request.event.id.as_deref().map(Cow::Borrowed),
            other => {
                let name = other.strip_prefix("attributes.")?;
                match request.event.attributes.get(name)? {
                    serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                    serde_json::Value::Number(n) => Some(Cow::Owned(n.to_string())),
                    serde_json::Value::Bool(b) => Some(Cow::Owned(b.to_string())),
                    _ => None,
                }
            }
        }
    }

    /// Whether the request meets the condition.
    pub fn holds(&self, request: &PointsRequest) -> bool {
        let Some(value) = Self::value_of(&self.field, request) else {
            return false;
        };
        if let Some(expected) = &self.equals {
            return value == expected.as_str();
        }
        if !self.one_of.is_empty() {
            return self.one_of.iter().any(|v| v.as_str() == value);
        }
        let Ok(n) = value.trim().parse::<Decimal>() else {
            return false;
        };
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
    }

    /// The condition in words, with the request's value.
    pub fn describe(&self, request: &PointsRequest) -> String {
        let wanted = if let Some(e) = &self.equals {
            format!("must be '{e}'")
        } else if !self.one_of.is_empty() {
            format!("must be one of {}", self.one_of.join(", "))
        } else {
            let bounds: Vec<String> = [
                ("more than", self.gt),
                ("at least", self.gte),
                ("less than", self.lt),
                ("at most", self.lte),
            ]
            .iter()
            .filter_map(|(word, b)| b.map(|b| format!("{word} {b}")))
            .collect();
            format!("must be {}", bounds.join(" and "))
        };
        let actual =
            Self::value_of(&self.field, request).map_or("absent".to_owned(), |v| format!("'{v}'"));
        format!("{} {wanted} (it is {actual})", self.field)
    }

    fn problem(&self) -> Option<&'static str> {
        let numeric = [self.gt, self.gte, self.lt, self.lte]
            .iter()
            .any(Option::is_some);
        let kinds = usize::from(self.equals.is_some())
            + usize::from(!self.one_of.is_empty())
            + usize::from(numeric);
        if kinds != 1 {
            return Some("needs exactly one of equals, in, or numeric bounds (gt, gte, lt, lte)");
        }
        let known = matches!(
            self.field.as_str(),
            "amount"
                | "currency"
                | "points"
                | "source"
                | "recipient.id"
                | "event.type"
                | "event.id"
        ) || self
            .field
            .strip_prefix("attributes.")
            .is_some_and(|n| !n.is_empty());
        if !known {
            return Some(
                "field must be amount, currency, points, source, recipient.id, event.type, event.id or attributes.<name>",
            );
        }
        None
    }
}

/// When credits are sent to the partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransferMode {
    /// Each request is credited as soon as it is eligible.
    Realtime,
    /// Requests are held and sent at windows given by a five-field cron
    /// expression (minute hour day-of-month month day-of-week, e.g.
    /// `0 18 * * FRI`) in a time zone, so a window at 18:00 Europe/London
    /// stays at 18:00 local time across daylight-saving changes; optionally
    /// one credit per member per window.
    Scheduled {
        cron: String,
        #[serde(with = "time_zone")]
        time_zone: Tz,
        #[serde(default)]
        consolidate: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub id: ProgramId,
    pub name: String,
    #[serde(default)]
    pub state: ProgramState,
    /// Whether a paused program rejects or holds its requests.
    #[serde(default, skip_serializing_if = "is_default")]
    pub when_paused: WhenPaused,
    /// Whether a source event undoing a credited one takes its points back
    /// at once (`reverse`) or waits for an operator (`flag`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_undo: OnUndo,
    /// The sources that may submit to this program, and create a member
    /// link for a recipient who has none in it. Every program names its
    /// sources: the configuration check refuses a program that names none.
    #[serde(default)]
    pub sources: Vec<SourceId>,
    /// Event types that earn points, e.g. `opportunity.closed_won`; empty means any.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    pub currency: Currency,
    pub points: PointsRule,
    /// Conditions every request must meet, checked in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RuleCondition>,
    /// Fewer points than this: rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_points_per_request: Option<Points>,
    /// More points than this: reduced to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points_per_request: Option<Points>,
    /// Points one recipient may earn in a calendar month of the program's time zone.
    #[serde(default)]
    pub monthly_cap_per_recipient: Option<Points>,
    /// A request for a recipient with no member link waits this many hours
    /// in `awaiting_enrollment` (linking the recipient releases it), then is
    /// rejected (`enrollment_timed_out`); absent: rejected at once (`not_enrolled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_enrollment_hours: Option<u32>,
    /// Requests for more points than this wait in `awaiting_approval` for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_threshold: Option<Points>,
    /// Requests for more points than this need two different approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_approval_threshold: Option<Points>,
    /// The most points an operator may take back in one reversal; a larger
    /// one is proposed by one admin and confirmed by another. Absent: zero
    /// (every operator reversal needs two admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal_limit: Option<Points>,
    /// Events on the bus show the member number credited in full; by
    /// default only its last four characters, as the logs do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub events_show_member: bool,
    /// When the budget's available points fall below this, each reservation
    /// reports it (the metric `BudgetLow` and its alarm); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_alert_below: Option<Points>,
    /// Points one recipient may earn in a calendar day of the program's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_cap_per_recipient: Option<Points>,
    /// The IANA time zone the program's days and months follow (`Europe/London`); UTC when absent.
    #[serde(default, with = "time_zone", skip_serializing_if = "time_zone::is_utc")]
    pub time_zone: Tz,
    /// The shape of member numbers at the partner; absent: any 4 to 32
    /// letters and digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_format: Option<MemberFormat>,
    pub budget: Points,
    pub destination: Destination,
    pub transfer: TransferMode,
}

/// A program-level refusal: the request is well-formed but this program says no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwardError {
    #[error("the amount is in {given}, but the program pays on amounts in {expected}")]
    CurrencyMismatch { given: Currency, expected: Currency },
    #[error("the program gives points for an amount, and the request gave none")]
    AmountRequired,
    #[error("the program takes the points from the request, and the request gave none")]
    PointsRequired,
    #[error("the program grants a fixed award; the request must not name points or an amount")]
    AwardNotAllowed,
    #[error("the award comes to 0 points")]
    ZeroPoints,
    #[error("the award is larger than the largest points value accepted")]
    TooLarge,
    #[error("the amount is below the program's first tier")]
    BelowFirstTier,
}

impl AwardError {
    pub fn reason(&self) -> Reason {
        let code = match self {
            AwardError::CurrencyMismatch { .. } => ReasonCode::CurrencyMismatch,
            AwardError::AmountRequired => ReasonCode::AmountRequired,
            AwardError::PointsRequired => ReasonCode::PointsRequired,
            AwardError::AwardNotAllowed => ReasonCode::AwardNotAllowed,
            AwardError::ZeroPoints => ReasonCode::ZeroPoints,
            AwardError::TooLarge => ReasonCode::PointsTooLarge,
            AwardError::BelowFirstTier => ReasonCode::BelowFirstTier,
        };
        Reason::new(code, self.to_string())
    }
}

impl PointsRule {
    /// The points an award is worth under this rule, rounding down.
    pub fn points_for(
        &self,
        award: Option<&Award>,
        currency: Currency,
    ) -> Result<Points, AwardError> {
        let points = match (self, award) {
            (PointsRule::Fixed { points }, None) => *points,
            (PointsRule::Fixed { .. }, Some(_)) => return Err(AwardError::AwardNotAllowed),
            (PointsRule::Given, Some(Award::Points(p))) => *p,
            (PointsRule::Given, _) => return Err(AwardError::PointsRequired),
            (PointsRule::Rate { .. }, None | Some(Award::Points(_))) => {
                return Err(AwardError::AmountRequired);
            }
            (PointsRule::Tiers { .. }, None | Some(Award::Points(_))) => {
                return Err(AwardError::AmountRequired);
            }
            (PointsRule::Tiers { tiers }, Some(Award::Amount(money))) => {
                if money.currency() != currency {
                    return Err(AwardError::CurrencyMismatch {
                        given: money.currency(),
                        expected: currency,
                    });
                }
                match tiers.iter().rev().find(|t| t.from <= money.amount()) {
                    Some(t) => t.points,
                    None => return Err(AwardError::BelowFirstTier),
                }
            }
            (PointsRule::Rate { points, per }, Some(Award::Amount(money))) => {
                if money.currency() != currency {
                    return Err(AwardError::CurrencyMismatch {
                        given: money.currency(),
                        expected: currency,
                    });
                }
                let raw = money
                    .amount()
                    .checked_mul(Decimal::from(points.get()))
                    .and_then(|v| v.checked_div(*per))
                    .ok_or(AwardError::TooLarge)?
                    .floor();
                let whole = raw.to_u64().ok_or(AwardError::TooLarge)?;
                Points::new(whole).map_err(|_| AwardError::TooLarge)?
            }
        };
        if points.is_zero() {
            return Err(AwardError::ZeroPoints);
        }
        Ok(points)
    }
}

/// Which characters a member number may hold after its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberCharacters {
    Digits,
    #[default]
    Alphanumeric,
}

/// The check digit a partner's member numbers end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckDigit {
    #[default]
    None,
    /// The Luhn (mod 10) digit over every digit before it.
    Luhn,
    /// The remainder of the number before it divided by 7.
    Mod7,
}

/// The shape of member numbers at a program's partner, checked when a
/// recipient is linked, so a mistyped number is refused then, not at the
/// first credit. Numbers are trimmed and upper-cased first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFormat {
    /// Lengths include the prefix and the check digit.
    pub min_length: usize,
    pub max_length: usize,
    #[serde(default)]
    pub characters: MemberCharacters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default)]
    pub check_digit: CheckDigit,
}

fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

impl MemberFormat {
    /// The member number in its normal form, or why it is not one.
    pub fn normalise(&self, raw: &str) -> Result<MemberNumber, String> {
        let number = raw.trim().to_ascii_uppercase();
        let body = match &self.prefix {
            Some(prefix) => number
                .strip_prefix(prefix.to_ascii_uppercase().as_str())
                .ok_or_else(|| format!("must start with {prefix}"))?,
            None => number.as_str(),
        };
        let length = number.chars().count();
        if length < self.min_length || length > self.max_length {
            return Err(if self.min_length == self.max_length {
                format!("must be {} characters long, not {length}", self.min_length)
            } else {
                format!(
                    "must be {} to {} characters long, not {length}",
                    self.min_length, self.max_length
                )
            });
        }
        let allowed = match self.characters {
            MemberCharacters::Digits => body.chars().all(|c| c.is_ascii_digit()),
            MemberCharacters::Alphanumeric => body.chars().all(|c| c.is_ascii_alphanumeric()),
        };
        if !allowed {
            return Err(match self.characters {
                MemberCharacters::Digits => "may hold only digits after its prefix".to_owned(),
                MemberCharacters::Alphanumeric => {
                    "may hold only letters and digits after its prefix".to_owned()
                }
            });
        }
        let digits: Option<Vec<u32>> = body.chars().map(|c| c.to_digit(10)).collect();
        let valid = match (self.check_digit, digits) {
            (CheckDigit::None, _) => true,
            (_, None) => return Err("must be digits to carry a check digit".to_owned()),
            (CheckDigit::Luhn, Some(d)) => luhn_valid(&d),
            (CheckDigit::Mod7, Some(d)) => match d.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    let value = rest
                        .iter()
                        .fold(0u64, |acc, &x| (acc * 10 + u64::from(x)) % 7);
                    value == u64::from(*last)
                }
                _ => false,
            },
        };
        if !valid {
            return Err("its check digit is wrong (a mistyped number?)".to_owned());
        }
        MemberNumber::parse(&number).map_err(|e| e.problem)
    }

    fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.min_length == 0 || self.min_length > self.max_length {
            return Some((
                "member_format.min_length",
                "must be at least 1 and at most max_length",
            ));
        }
        if self.max_length > 32 {
            return Some(("member_format.max_length", "must be at most 32"));
        }
        if self
            .prefix
            .as_deref()
            .is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Some(("member_format.prefix", "must be letters and digits"));
        }
        None
    }
}

/// What a program's rules grant one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    pub points: Points,
    /// Set when a rule changed the points (e.g. the per-request maximum).
    pub note: Option<String>,
}

/// A scheduled program's transfer window: the requests decided before it
/// closes are sent together when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// `{program}@{closing time, UTC}`, e.g. `payroll@2026-11-27T18:00Z`.
    pub id: String,
    pub closes_at: DateTime<Utc>,
}

/// Which cap a charge is: the recipient's day or month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSpan {
    Day,
    Month,
}

impl CapSpan {
    /// The span of a cap key's period (`2026-11-27` or `2026-11`).
    pub fn of(key: &CapKey) -> Self {
        if key.period.len() > 7 {
            CapSpan::Day
        } else {
            CapSpan::Month
        }
    }
}

/// A configuration error that names the program and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("program {program}: {field}: {problem}")]
pub struct ProgramConfigError {
    pub program: String,
    pub field: &'static str,
    pub problem: String,
}

impl Program {
    /// Checks what serde cannot: relations between fields.
    pub fn validate(&self) -> Result<(), ProgramConfigError> {
        let err = |field, problem: &str| ProgramConfigError {
            program: self.id.to_string(),
            field,
            problem: problem.to_owned(),
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty"));
        }
        if self.sources.is_empty() {
            return Err(err(
                "sources",
                "must name the sources that may submit to the program (and link its recipients)",
            ));
        }
        if let (Some(first), Some(second)) =
            (self.approval_threshold, self.second_approval_threshold)
            && second < first
        {
            return Err(err(
                "second_approval_threshold",
                "must be at least approval_threshold (a second approver adds to the first)",
            ));
        }
        if self.destination.partner_program.trim().is_empty() {
            return Err(err("destination.partner_program", "must not be empty"));
        }
        match &self.points {
            PointsRule::Fixed { points } if points.is_zero() => {
                return Err(err("points.points", "must be greater than 0"));
            }
            PointsRule::Rate { points, .. } if points.is_zero() => {
                return Err(err("points.points", "must be greater than 0"));
            }
            PointsRule::Rate { per, .. } if *per <= Decimal::ZERO => {
                return Err(err("points.per", "must be greater than 0"));
            }
            _ => {}
        }
        if let PointsRule::Tiers { tiers } = &self.points {
            if tiers.is_empty() {
                return Err(err("points.tiers", "needs at least one tier"));
            }
            if tiers.iter().any(|t| t.points.is_zero()) {
                return Err(err("points.tiers.points", "must be greater than 0"));
            }
            if tiers.iter().any(|t| t.from < Decimal::ZERO) {
                return Err(err("points.tiers.from", "must not be negative"));
            }
            if tiers.windows(2).any(|w| w[0].from >= w[1].from) {
                return Err(err(
                    "points.tiers.from",
                    "tiers must be in increasing order of from",
                ));
            }
        }
        for c in &self.conditions {
            if let Some(problem) = c.problem() {
                return Err(err("conditions", problem));
            }
        }
        if let Some((field, problem)) = self.member_format.as_ref().and_then(MemberFormat::problem)
        {
            return Err(err(field, problem));
        }
        if self.min_points_per_request.is_some_and(Points::is_zero) {
            return Err(err(
                "min_points_per_request",
                "must be greater than 0 (leave it out for no minimum)",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_points_per_request, self.max_points_per_request)
            && min > max
        {
            return Err(err(
                "max_points_per_request",
                "must be at least min_points_per_request",
            ));
        }
        if self.max_points_per_request.is_some_and(Points::is_zero) {
            return Err(err("max_points_per_request", "must be greater than 0"));
        }
        if self
            .wait_for_enrollment_hours
            .is_some_and(|h| !(1..=8760).contains(&h))
        {
            return Err(err(
                "wait_for_enrollment_hours",
                "must be 1 to 8760 (a year); leave it out to reject at once",
            ));
        }
        if self
            .budget_alert_below
            .is_some_and(|below| below.is_zero() || below > self.budget)
        {
            return Err(err(
                "budget_alert_below",
                "must be greater than 0 and at most the budget (leave it out for no alert)",
            ));
        }
        if self.approval_threshold.is_some_and(Points::is_zero) {
            return Err(err(
                "approval_threshold",
                "must be greater than 0 (leave it out for no approvals)",
            ));
        }
        if self.daily_cap_per_recipient.is_some_and(Points::is_zero) {
            return Err(err(
                "daily_cap_per_recipient",
                "must be greater than 0 (leave it out for no cap)",
            ));
        }
        if let (Some(day), Some(month)) =
            (self.daily_cap_per_recipient, self.monthly_cap_per_recipient)
            && day > month
        {
            return Err(err(
                "daily_cap_per_recipient",
                "must not be more than monthly_cap_per_recipient",
            ));
        }
        if self.monthly_cap_per_recipient.is_some_and(Points::is_zero) {
            return Err(err(
                "monthly_cap_per_recipient",
                "must be greater than 0 (leave it out for no cap)",
            ));
        }
        if let TransferMode::Scheduled { cron, .. } = &self.transfer
            && let Err(problem) = WindowCron::parse(cron).and_then(|c| {
                c.next_after(&DateTime::<Utc>::UNIX_EPOCH)
                    .map(|_| ())
                    .map_err(|_| format!("'{cron}' never fires"))
            })
        {
            return Err(ProgramConfigError {
                program: self.id.to_string(),
                field: "transfer.cron",
                problem,
            });
        }
        Ok(())
    }

    /// The program's rules for one request, in their documented order:
    /// state, source, event type, conditions, points, then
    /// the per-request minimum and maximum. Enrollment, the cap and the
    /// budget come after, at the ledger. A refusal names the rule and why.
    pub fn evaluate(&self, request: &PointsRequest) -> Result<Evaluated, Reason> {
        match self.state {
            ProgramState::Active => {}
            ProgramState::Paused => {
                return Err(Reason::new(
                    ReasonCode::ProgramPaused,
                    format!("program {} is paused", self.id),
                ));
            }
            ProgramState::Ended => {
                return Err(Reason::new(
                    ReasonCode::ProgramEnded,
                    format!("program {} has ended", self.id),
                ));
            }
        }
        if !self.accepts_source(&request.source) {
            return Err(Reason::new(
                ReasonCode::SourceNotAllowed,
                format!(
                    "source {} may not submit to program {}",
                    request.source, self.id
                ),
            ));
        }
        if !self.accepts_event(&request.event.kind) {
            return Err(Reason::new(
                ReasonCode::EventNotQualifying,
                format!(
                    "program {} does not give points for {} events",
                    self.id, request.event.kind
                ),
            ));
        }
        for (i, c) in self.conditions.iter().enumerate() {
            if !c.holds(request) {
                return Err(Reason::new(
                    ReasonCode::ConditionNotMet,
                    format!(
                        "condition {} of program {}: {}",
                        i + 1,
                        self.id,
                        c.describe(request)
                    ),
                ));
            }
        }
        let earned = self
            .points
            .points_for(request.award.as_ref(), self.currency)
            .map_err(|e| e.reason())?;
        if let Some(min) = self.min_points_per_request
            && earned < min
        {
            return Err(Reason::new(
                ReasonCode::PointsBelowMinimum,
                format!(
                    "{earned} points is below program {}'s minimum of {min} per request",
                    self.id
                ),
            ));
        }
        Ok(match self.max_points_per_request {
            Some(max) if earned > max => Evaluated {
                points: max,
                note: Some(format!(
                    "{earned} points reduced to the maximum of {max} per request"
                )),
            },
            _ => Evaluated {
                points: earned,
                note: None,
            },
        })
    }

    /// The window a request decided at `at` is held for: the first time the
    /// program's cron fires after `at`, in its time zone. `None` for a
    /// real-time program.
    pub fn window_after(&self, at: DateTime<Utc>) -> Result<Option<Window>, String> {
        let TransferMode::Scheduled {
            cron, time_zone, ..
        } = &self.transfer
        else {
            return Ok(None);
        };
        let local = at.with_timezone(time_zone);
        let next = WindowCron::parse(cron)?
            .next_after(&local)
            .map_err(|e| format!("the cron expression never fires after {at}: {e}"))?
            .with_timezone(&Utc);
        Ok(Some(Window {
            id: format!("{}@{}", self.id, next.format("%Y-%m-%dT%H:%MZ")),
            closes_at: next,
        }))
    }

    /// The caps a reservation for `recipient` charges, for the day and month
    /// of `at` in the program's time zone: `2026-11-27` and `2026-11`.
    pub fn cap_charges(&self, recipient: &RecipientId, at: DateTime<Utc>) -> Vec<CapCharge> {
        let local = at.with_timezone(&self.time_zone).date_naive();
        let key = |period: String| CapKey {
            program: self.id.clone(),
            recipient: recipient.clone(),
            period,
        };
        let day = self.daily_cap_per_recipient.map(|limit| CapCharge {
            key: key(local.format("%Y-%m-%d").to_string()),
            limit,
        });
        let month = self.monthly_cap_per_recipient.map(|limit| CapCharge {
            key: key(local.format("%Y-%m").to_string()),
            limit,
        });
        day.into_iter().chain(month).collect()
    }

    /// Why a request for `points` must wait for an operator, if it must.
    pub fn needs_approval(&self, points: Points) -> Option<Reason> {
        let threshold = self.approval_threshold?;
        (points > threshold).then(|| {
            Reason::new(
                ReasonCode::ApprovalRequired,
                format!(
                    "{points} points is above program {}'s approval threshold of {threshold}; an operator must approve or decline",
                    self.id
                ),
            )
        })
    }

    pub fn is_active(&self) -> bool {
        self.state == ProgramState::Active
    }

    pub fn accepts_source(&self, source: &SourceId) -> bool {
        self.sources.contains(source)
    }

    /// How many different approvers a request for `points` needs, once it
    /// needs approval at all.
    pub fn approvals_needed(&self, points: Points) -> u8 {
        match self.second_approval_threshold {
            Some(threshold) if points > threshold => 2,
            _ => 1,
        }
    }

    pub fn accepts_event(&self, kind: &EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn rate(points: u64, per: i64) -> PointsRule {
        PointsRule::Rate {
            points: Points::new(points).unwrap(),
            per: Decimal::from(per),
        }
    }

    fn money(s: &str) -> Award {
        Award::Amount(Money::parse(s, usd()).unwrap())
    }

    #[test]
    fn rate_rounds_down() {
        let r = rate(2, 100);
        assert_eq!(
            r.points_for(Some(&money("12550.00")), usd()).unwrap().get(),
            251
        );
        assert_eq!(
            r.points_for(Some(&money("12599.99")), usd()).unwrap().get(),
            251
        );
        assert_eq!(r.points_for(Some(&money("100")), usd()).unwrap().get(), 2);
        assert_eq!(
            r.points_for(Some(&money("49.99")), usd()),
            Err(AwardError::ZeroPoints)
        );
    }

    #[test]
    fn rate_refuses_other_currencies_and_bare_points() {
        let r = rate(2, 100);
        let eur = Award::Amount(Money::parse("100", Currency::parse("EUR").unwrap()).unwrap());
        assert!(matches!(
            r.points_for(Some(&eur), usd()),
            Err(AwardError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            r.points_for(Some(&Award::Points(Points::new(5).unwrap())), usd()),
            Err(AwardError::AmountRequired)
        );
    }

    #[test]
    fn rate_never_overflows() {
        let r = rate(1_000_000_000_000, 1);
        assert_eq!(
            r.points_for(Some(&money("1000000000000")), usd()),
            Err(AwardError::TooLarge)
        );
    }

    #[test]
    fn fixed_gives_its_points_only() {
        let r = PointsRule::Fixed {
            points: Points::new(500).unwrap(),
        };
        assert_eq!(r.points_for(None, usd()).unwrap().get(), 500);
        let given = PointsRule::Given;
        let p = Points::new(42).unwrap();
        assert_eq!(given.points_for(Some(&Award::Points(p)), usd()), Ok(p));
        assert_eq!(
            given.points_for(None, usd()),
            Err(AwardError::PointsRequired)
        );
        assert_eq!(
            r.points_for(Some(&money("10")), usd()),
            Err(AwardError::AwardNotAllowed)
        );
    }

    fn periods(p: &Program, at: &str) -> Vec<String> {
        let at = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
        p.cap_charges(&RecipientId::parse("005A").unwrap(), at)
            .into_iter()
            .map(|c| c.key.period)
            .collect()
    }

    /// The test program with another transfer mode, checked.
    fn with_transfer(transfer: &str) -> Result<Program, String> {
        let mut p = program_with(r#"points = { rule = "given" }"#);
        let table: toml::Table =
            toml::from_str(&format!("t = {transfer}")).map_err(|e| e.to_string())?;
        p.transfer = table["t"]
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_owned())?;
        p.validate().map_err(|e| e.to_string())?;
        Ok(p)
    }

    fn window(p: &Program, at: &str) -> String {
        let at = DateTime::parse_from_rfc3339(at)
            .unwrap()
            .with_timezone(&Utc);
        p.window_after(at).unwrap().unwrap().id
    }

    #[test]
    fn windows_fire_at_local_time_across_daylight_saving() {
        let weekly = with_transfer(
            r#"{ mode = "scheduled", cron = "0 18 * * FRI", time_zone = "Europe/London" }"#,
        )
        .unwrap();
        assert_eq!(
            window(&weekly, "2026-11-27T10:00:00Z"),
            "sales@2026-11-27T18:00Z"
        );
        // At the closing instant the window is closed: the next one.
        assert_eq!(
            window(&weekly, "2026-11-27T18:00:00Z"),
            "sales@2026-12-04T18:00Z"
        );
        // British Summer Time starts on 28 March 2027: 18:00 local is 17:00 UTC.
        assert_eq!(
            window(&weekly, "2027-03-26T19:00:00Z"),
            "sales@2027-04-02T17:00Z"
        );
        // Payroll: the 15th and the last day of the month.
        let payroll = with_transfer(
            r#"{ mode = "scheduled", cron = "0 17 15,L * *", time_zone = "Asia/Kolkata" }"#,
        )
        .unwrap();
        // 17:00 in Kolkata (UTC+5:30) is 11:30 UTC.
        assert_eq!(
            window(&payroll, "2026-11-20T00:00:00Z"),
            "sales@2026-11-30T11:30Z"
        );
        assert_eq!(
            window(&payroll, "2026-11-30T12:00:00Z"),
            "sales@2026-12-15T11:30Z"
        );
        assert_eq!(
            window(&payroll, "2027-02-16T00:00:00Z"),
            "sales@2027-02-28T11:30Z"
        );
        assert_eq!(
            program_with(r#"points = { rule = "given" }"#).window_after(Utc::now()),
            Ok(None)
        );
    }

    #[test]
    fn caps_follow_the_calendar_of_the_program_time_zone() {
        let utc = program_with(
            "points = { rule = \"given\" }\ndaily_cap_per_recipient = 100\nmonthly_cap_per_recipient = 1000",
        );
        assert_eq!(
            periods(&utc, "2026-11-30T23:59:59Z"),
            ["2026-11-30", "2026-11"]
        );
        let tokyo = program_with(
            "points = { rule = \"given\" }\ndaily_cap_per_recipient = 100\nmonthly_cap_per_recipient = 1000\ntime_zone = \"Asia/Tokyo\"",
        );
        // 15:00 UTC on 30 November is already 1 December in Tokyo (UTC+9).
        assert_eq!(
            periods(&tokyo, "2026-11-30T14:59:59Z"),
            ["2026-11-30", "2026-11"]
        );
        assert_eq!(
            periods(&tokyo, "2026-11-30T15:00:00Z"),
            ["2026-12-01", "2026-12"]
        );
        let new_york = program_with(
            "points = { rule = \"given\" }\nmonthly_cap_per_recipient = 1000\ntime_zone = \"America/New_York\"",
        );
        // 02:00 UTC on 1 December is still 30 November in New York (UTC-5).
        assert_eq!(periods(&new_york, "2026-12-01T02:00:00Z"), ["2026-11"]);
        assert!(
            periods(
                &program_with("points = { rule = \"given\" }"),
                "2026-12-01T02:00:00Z"
            )
            .is_empty()
        );
    }

    fn program_with(extra: &str) -> Program {
        let text = format!(
            r#"
id = "sales"
name = "Sales"
currency = "USD"
budget = 1000000
transfer = {{ mode = "realtime" }}
destination = {{ partner = "air", partner_program = "SKY" }}
{sources}
{extra}
"#,
            sources = if extra.contains("sources") {
                ""
            } else {
                r#"sources = ["salesforce"]"#
            }
        );
        let p: Program = toml::from_str(&text).unwrap();
        p.validate().unwrap();
        p
    }

    fn request(award: Option<Award>, attributes: serde_json::Value) -> PointsRequest {
        use crate::request::{NewRequest, Recipient, SourceEvent};
        use crate::values::{IdempotencyKey, RecipientId};
        NewRequest {
            source: SourceId::parse("salesforce").unwrap(),
            idempotency_key: IdempotencyKey::parse("k").unwrap(),
            program: ProgramId::parse("sales").unwrap(),
            recipient: Recipient {
                id: RecipientId::parse("0055g00000DemoAA1").unwrap(),
                email: None,
            },
            award,
            event: SourceEvent {
                kind: EventType::parse("opportunity.closed_won").unwrap(),
                id: Some("0065g00000Q4zXyAAB".into()),
                occurred_at: chrono::DateTime::UNIX_EPOCH,
                occurred_at_is_receipt: false,
                attributes: attributes.as_object().cloned().unwrap_or_default(),
            },
        }
        .into_request(chrono::DateTime::UNIX_EPOCH)
    }

    #[test]
    fn tiers_pick_the_band_the_amount_falls_in() {
        let p = program_with(
            r#"points = { rule = "tiers", tiers = [{ from = "0.01", points = 100 }, { from = "10000", points = 500 }, { from = "50000.00", points = 2000 }] }"#,
        );
        let at = |amount: &str| {
            p.evaluate(&request(Some(money(amount)), serde_json::json!({})))
                .map(|e| e.points.get())
                .map_err(|r| r.code)
        };
        assert_eq!(at("0.00"), Err(ReasonCode::BelowFirstTier));
        assert_eq!(at("0.01"), Ok(100));
        assert_eq!(at("9999.99"), Ok(100));
        assert_eq!(at("10000.00"), Ok(500));
        assert_eq!(at("49999.99"), Ok(500));
        assert_eq!(at("50000"), Ok(2000));
        assert_eq!(at("1000000"), Ok(2000));
        let eur = Award::Amount(Money::parse("60000", Currency::parse("EUR").unwrap()).unwrap());
        assert_eq!(
            p.evaluate(&request(Some(eur), serde_json::json!({})))
                .unwrap_err()
                .code,
            "currency_mismatch"
        );
    }

    #[test]
    fn conditions_compare_strings_sets_and_numbers() {
        let p = program_with(
            r#"points = { rule = "rate", points = 2, per = "100" }
conditions = [
  { field = "attributes.stage", equals = "Closed Won" },
  { field = "attributes.type", in = ["New Business", "Upsell"] },
  { field = "amount", gte = 10000, lt = "1000000.00" },
]"#,
        );
        let ok = serde_json::json!({"stage": "Closed Won", "type": "Upsell"});
        assert_eq!(
            p.evaluate(&request(Some(money("10000.00")), ok.clone()))
                .unwrap()
                .points
                .get(),
            200
        );
        let below = p
            .evaluate(&request(Some(money("9999.99")), ok.clone()))
            .unwrap_err();
        assert_eq!(below.code, "condition_not_met");
        assert!(below.message.contains("condition 3"), "{}", below.message);
        assert!(
            below.message.contains(
                "amount must be at least 10000 and less than 1000000.00 (it is '9999.99')"
            ),
            "{}",
            below.message
        );
        let renewal = serde_json::json!({"stage": "Closed Won", "type": "Renewal"});
        let r = p
            .evaluate(&request(Some(money("20000")), renewal))
            .unwrap_err();
        assert!(r.message.contains("condition 2"), "{}", r.message);
        let r = p
            .evaluate(&request(Some(money("20000")), serde_json::json!({})))
            .unwrap_err();
        assert!(
            r.message
                .contains("attributes.stage must be 'Closed Won' (it is absent)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn minimum_refuses_and_maximum_reduces() {
        let p = program_with(
            r#"points = { rule = "given" }
min_points_per_request = 10
max_points_per_request = 5000"#,
        );
        let given = |n: u64| {
            p.evaluate(&request(
                Some(Award::Points(Points::new(n).unwrap())),
                serde_json::json!({}),
            ))
        };
        assert_eq!(given(9).unwrap_err().code, "points_below_minimum");
        assert_eq!(given(10).unwrap().points.get(), 10);
        assert_eq!(
            given(5000).unwrap(),
            Evaluated {
                points: Points::new(5000).unwrap(),
                note: None
            }
        );
        let reduced = given(5001).unwrap();
        assert_eq!(reduced.points.get(), 5000);
        assert!(
            reduced
                .note
                .unwrap()
                .contains("5001 points reduced to the maximum of 5000")
        );
    }

    #[test]
    fn rules_run_in_the_documented_order() {
        // Paused comes before the event type, which comes before conditions.
        let mut p = program_with(
            r#"points = { rule = "given" }
event_types = ["recognition.awarded"]
conditions = [{ field = "points", lte = 10 }]"#,
        );
        let r = request(
            Some(Award::Points(Points::new(50).unwrap())),
            serde_json::json!({}),
        );
        assert_eq!(p.evaluate(&r).unwrap_err().code, "event_not_qualifying");
        p.state = ProgramState::Paused;
        assert_eq!(p.evaluate(&r).unwrap_err().code, "program_paused");
        p.state = ProgramState::Active;
        p.event_types.clear();
        assert_eq!(p.evaluate(&r).unwrap_err().code, "condition_not_met");
    }

    #[test]
    fn bad_rules_name_their_field() {
        let bad = |extra: &str| {
            let text = format!(
                "id = \"sales\"\nname = \"Sales\"\ncurrency = \"USD\"\nbudget = 1\nsources = [\"crm\"]\ntransfer = {{ mode = \"realtime\" }}\ndestination = {{ partner = \"air\", partner_program = \"SKY\" }}\n{extra}"
            );
            toml::from_str::<Program>(&text)
                .map_err(|e| e.to_string())
                .and_then(|p| p.validate().map_err(|e| e.to_string()))
                .unwrap_err()
        };
        assert!(bad(r#"points = { rule = "tiers", tiers = [] }"#).contains("points.tiers"));
        let none = toml::from_str::<Program>(
            "id = \"sales\"\nname = \"Sales\"\ncurrency = \"USD\"\nbudget = 1\npoints = { rule = \"given\" }\ntransfer = { mode = \"realtime\" }\ndestination = { partner = \"air\", partner_program = \"SKY\" }",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(none.contains("sales") && none.contains("sources"), "{none}");
        assert!(bad(r#"points = { rule = "tiers", tiers = [{ from = "100", points = 5 }, { from = "50", points = 9 }] }"#).contains("points.tiers.from"));
        assert!(
            bad("points = { rule = \"given\" }\nconditions = [{ field = \"amount\" }]")
                .contains("conditions")
        );
        assert!(bad("points = { rule = \"given\" }\nconditions = [{ field = \"stage\", equals = \"x\" }]").contains("attributes.<name>"));
        assert!(bad("points = { rule = \"given\" }\nconditions = [{ field = \"amount\", gte = \"ten\" }]").contains("not a decimal"));
        assert!(bad("points = { rule = \"given\" }\nmin_points_per_request = 50\nmax_points_per_request = 10").contains("max_points_per_request"));
        let tz = bad("points = { rule = \"given\" }\ntime_zone = \"Mars/Olympus\"");
        assert!(
            tz.contains("time_zone") && tz.contains("'Mars/Olympus' is not an IANA time zone"),
            "{tz}"
        );
        let cron =
            with_transfer(r#"{ mode = "scheduled", cron = "every friday", time_zone = "UTC" }"#)
                .unwrap_err();
        assert!(
            cron.starts_with("program sales: transfer.cron: 'every friday' is not a five-field"),
            "{cron}"
        );
        let seconds =
            with_transfer(r#"{ mode = "scheduled", cron = "0 0 18 * * FRI", time_zone = "UTC" }"#)
                .unwrap_err();
        assert!(seconds.contains("transfer.cron"), "{seconds}");
        let never =
            with_transfer(r#"{ mode = "scheduled", cron = "0 0 30 2 *", time_zone = "UTC" }"#)
                .unwrap_err();
        assert!(never.ends_with("'0 0 30 2 *' never fires"), "{never}");
        let zone =
            with_transfer(r#"{ mode = "scheduled", cron = "0 18 * * FRI", time_zone = "London" }"#)
                .unwrap_err();
        assert!(zone.contains("'London' is not an IANA time zone"), "{zone}");
        assert_eq!(
            bad("points = { rule = \"given\" }\ndaily_cap_per_recipient = 0"),
            "program sales: daily_cap_per_recipient: must be greater than 0 (leave it out for no cap)"
        );
        assert_eq!(
            bad(
                "points = { rule = \"given\" }\ndaily_cap_per_recipient = 500\nmonthly_cap_per_recipient = 100"
            ),
            "program sales: daily_cap_per_recipient: must not be more than monthly_cap_per_recipient"
        );
    }

    #[test]
    fn member_numbers_are_normalised_and_checked() {
        let f = MemberFormat {
            min_length: 10,
            max_length: 10,
            characters: MemberCharacters::Digits,
            prefix: None,
            check_digit: CheckDigit::Luhn,
        };
        // 7992739871 + Luhn digit 3.
        assert_eq!(
            f.normalise(" 79927398713 ").unwrap_err(),
            "must be 10 characters long, not 11"
        );
        let f = MemberFormat {
            min_length: 11,
            max_length: 11,
            ..f
        };
        assert_eq!(
            f.normalise(" 79927398713 ").unwrap().as_str(),
            "79927398713"
        );
        assert_eq!(
            f.normalise("79927398710").unwrap_err(),
            "its check digit is wrong (a mistyped number?)"
        );
        assert_eq!(
            f.normalise("7992739871A").unwrap_err(),
            "may hold only digits after its prefix"
        );
        let sky = MemberFormat {
            min_length: 10,
            max_length: 12,
            characters: MemberCharacters::Digits,
            prefix: Some("SKY".into()),
            check_digit: CheckDigit::Mod7,
        };
        // 1000000 mod 7 = 1.
        assert_eq!(
            sky.normalise("sky10000001").unwrap().as_str(),
            "SKY10000001"
        );
        assert_eq!(
            sky.normalise("SKY10000002").unwrap_err(),
            "its check digit is wrong (a mistyped number?)"
        );
        assert_eq!(
            sky.normalise("ABC10000001").unwrap_err(),
            "must start with SKY"
        );
        assert_eq!(
            sky.normalise("SKY1").unwrap_err(),
            "must be 10 to 12 characters long, not 4"
        );
    }
}
