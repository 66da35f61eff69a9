//! Why a request was refused, waits or failed: a stable code, typed here
//! and written as a string only where it leaves (the API, callbacks, the
//! stored request), with a sentence for people.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest partner code kept (`partner_` and the partner's own code).
const MAX_PARTNER_CODE: usize = 64;

/// What a clawback (a source undoing the event behind a credit) could not
/// do: the reversal's refusal, as the clawback's code names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClawbackFailure {
    PartnerRefused,
    LedgerMismatch,
    NotFound,
    ReversalExceedsCredit,
    ReversalIdReused,
    InvalidField,
}

impl ClawbackFailure {
    const ALL: [ClawbackFailure; 6] = [
        ClawbackFailure::PartnerRefused,
        ClawbackFailure::LedgerMismatch,
        ClawbackFailure::NotFound,
        ClawbackFailure::ReversalExceedsCredit,
        ClawbackFailure::ReversalIdReused,
        ClawbackFailure::InvalidField,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ClawbackFailure::PartnerRefused => "clawback_partner_refused",
            ClawbackFailure::LedgerMismatch => "clawback_ledger_mismatch",
            ClawbackFailure::NotFound => "clawback_not_found",
            ClawbackFailure::ReversalExceedsCredit => "clawback_reversal_exceeds_credit",
            ClawbackFailure::ReversalIdReused => "clawback_reversal_id_reused",
            ClawbackFailure::InvalidField => "clawback_invalid_field",
        }
    }
}

macro_rules! codes {
    ($($variant:ident => $code:literal,)*) => {
        /// A reason's stable code. pointsflow's own codes are variants;
        /// a partner's refusal keeps the partner's code (`partner_...`);
        /// a code this version does not know (written by another) is kept
        /// as it is.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ReasonCode {
            $($variant,)*
            Clawback(ClawbackFailure),
            /// A partner's own code, without the `partner_` prefix.
            Partner(String),
            /// A code written by another version, read back as it was.
            Other(String),
        }

        impl ReasonCode {
            /// The code as the API and the stored request write it.
            pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
                match self {
                    $(ReasonCode::$variant => std::borrow::Cow::Borrowed($code),)*
                    ReasonCode::Clawback(f) => std::borrow::Cow::Borrowed(f.as_str()),
                    ReasonCode::Partner(code) => std::borrow::Cow::Owned(format!("partner_{code}")),
                    ReasonCode::Other(code) => std::borrow::Cow::Borrowed(code),
                }
            }

            /// Reads a code back.
            pub fn parse(raw: &str) -> Self {
                match raw {
                    $($code => ReasonCode::$variant,)*
                    other => {
                        if let Some(f) = ClawbackFailure::ALL.iter().find(|f| f.as_str() == other) {
                            return ReasonCode::Clawback(*f);
                        }
                        match other.strip_prefix("partner_") {
                            Some(code) => ReasonCode::partner(code),
                            None => ReasonCode::Other(other.to_owned()),
                        }
                    }
                }
            }
        }
    };
}

codes! {
    // The program's rules.
    ProgramPaused => "program_paused",
    ProgramEnded => "program_ended",
    SourceNotAllowed => "source_not_allowed",
    EventNotQualifying => "event_not_qualifying",
    ConditionNotMet => "condition_not_met",
    PointsBelowMinimum => "points_below_minimum",
    ApprovalRequired => "approval_required",
    CurrencyMismatch => "currency_mismatch",
    AmountRequired => "amount_required",
    PointsRequired => "points_required",
    AwardNotAllowed => "award_not_allowed",
    ZeroPoints => "zero_points",
    PointsTooLarge => "points_too_large",
    BelowFirstTier => "below_first_tier",
    // A source's mapping: a field it cannot read; its qualify rules (the
    // event does not qualify).
    FieldMissing => "field_missing",
    FieldInvalid => "field_invalid",
    NotQualifying => "not_qualifying",
    // Eligibility.
    ProgramUnknown => "program_unknown",
    MemberInvalid => "member_invalid",
    BudgetExhausted => "budget_exhausted",
    DailyCapReached => "daily_cap_reached",
    MonthlyCapReached => "monthly_cap_reached",
    NotEnrolled => "not_enrolled",
    EnrollmentTimedOut => "enrollment_timed_out",
    AwaitingEnrollment => "awaiting_enrollment",
    // Operators.
    Declined => "declined",
    // Clawbacks.
    ClawbackReview => "clawback_review",
    ClawbackReversed => "clawback_reversed",
    NothingToReverse => "nothing_to_reverse",
    // Connectors, before any call.
    MemberNamesMissing => "member_names_missing",
}

impl ReasonCode {
    /// A partner's code: kept to letters, digits and `_`, lower case.
    pub fn partner(code: &str) -> Self {
        let clean: String = code
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(MAX_PARTNER_CODE)
            .collect();
        ReasonCode::Partner(if clean.is_empty() {
            "failed".to_owned()
        } else {
            clean
        })
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl PartialEq<str> for ReasonCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ReasonCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(ReasonCode::parse(&raw))
    }
}

/// A stable, machine-readable reason for a rejection or failure, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

impl Reason {
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A member's names as the partner holds them (from the enrollment link):
/// partners that validate a member before a credit ask for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    pub first_name: String,
    pub last_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_back_as_written() {
        for code in [
            ReasonCode::Declined,
            ReasonCode::BudgetExhausted,
            ReasonCode::Clawback(ClawbackFailure::PartnerRefused),
            ReasonCode::partner("member_closed"),
            ReasonCode::Other("from_a_newer_version".into()),
        ] {
            let json = serde_json::to_string(&code).unwrap();
            let back: ReasonCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code, "{json}");
        }
        assert_eq!(
            ReasonCode::partner("Member Closed!"),
            "partner_member_closed_"
        );
        assert_eq!(
            ReasonCode::parse("partner_x"),
            ReasonCode::Partner("x".into())
        );
        assert_eq!(
            ReasonCode::parse("not_qualifying"),
            ReasonCode::NotQualifying
        );
    }
}
