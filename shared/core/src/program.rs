//! Programs: who qualifies, how many points, the caps and budget that bound
//! them, and where the points go.

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::request::{Award, Reason};
use crate::values::{EventType, PartnerId, Points, ProgramId, SourceId};

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
}

/// When credits are sent to the partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransferMode {
    /// Each request is credited as soon as it is eligible.
    Realtime,
    /// Requests are held and sent at windows given by a cron expression in a
    /// time zone, optionally one credit per member per window.
    Scheduled {
        cron: String,
        time_zone: String,
        #[serde(default)]
        consolidate: bool,
    },
}

/// Where a program's points are credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub partner: PartnerId,
    /// The program's code at the partner (e.g. the airline's scheme code).
    pub partner_program: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub id: ProgramId,
    pub name: String,
    #[serde(default)]
    pub state: ProgramState,
    /// Sources allowed to submit to this program; empty means any configured source.
    #[serde(default)]
    pub sources: Vec<SourceId>,
    /// Event types that earn points, e.g. `opportunity.closed_won`; empty means any.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    pub currency: Currency,
    pub points: PointsRule,
    #[serde(default)]
    pub monthly_cap_per_recipient: Option<Points>,
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
}

impl AwardError {
    pub fn reason(&self) -> Reason {
        let code = match self {
            AwardError::CurrencyMismatch { .. } => "currency_mismatch",
            AwardError::AmountRequired => "amount_required",
            AwardError::PointsRequired => "points_required",
            AwardError::AwardNotAllowed => "award_not_allowed",
            AwardError::ZeroPoints => "zero_points",
            AwardError::TooLarge => "points_too_large",
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

/// The calendar month a cap applies to, in UTC: `2026-11`.
pub fn cap_period(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
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
        if self.monthly_cap_per_recipient.is_some_and(Points::is_zero) {
            return Err(err(
                "monthly_cap_per_recipient",
                "must be greater than 0 (leave it out for no cap)",
            ));
        }
        if let TransferMode::Scheduled {
            cron, time_zone, ..
        } = &self.transfer
        {
            if cron.trim().is_empty() {
                return Err(err("transfer.cron", "must not be empty"));
            }
            if time_zone.trim().is_empty() {
                return Err(err("transfer.time_zone", "must not be empty"));
            }
        }
        Ok(())
    }

    pub fn is_active(&self) -> bool {
        self.state == ProgramState::Active
    }

    pub fn accepts_source(&self, source: &SourceId) -> bool {
        self.sources.is_empty() || self.sources.contains(source)
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

    #[test]
    fn cap_period_is_the_utc_month() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(cap_period(at), "2026-11");
    }
}
