//! What dispatch asks of a partner and what it can hear back.

use serde::{Deserialize, Serialize};

use crate::reason::{PersonName, Reason};
use crate::values::{MemberNumber, PartnerId, PartnerReference, Points};

/// Where a program's points are credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub partner: PartnerId,
    /// The program's code at the partner (e.g. the airline's scheme code).
    pub partner_program: String,
}

/// One credit to one member, under our reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditInstruction {
    pub reference: PartnerReference,
    pub member: MemberNumber,
    /// The member's names, for partners that validate before crediting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_name: Option<PersonName>,
    pub points: Points,
    /// The program's code at the partner.
    pub partner_program: String,
    /// How long the call may take, at most (bounded by the invocation's remaining time).
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
}

/// Every answer a partner call can have. Only `Credited` and `Rejected` are
/// final; the ambiguous ones keep the reservation pending and the reference fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutcome {
    /// The partner credited the points.
    Credited { transaction: String },
    /// The partner accepted the credit and will settle it later.
    Pending { transaction: Option<String> },
    /// The partner refused for good: nothing was credited.
    Rejected(Reason),
    /// The partner has no record of the reference (status look-ups only).
    NotFound,
    /// Timeout, 5xx, connection failure: the credit may or may not have happened.
    Unknown { detail: String },
    /// The call was not made, or the partner refused it before doing
    /// anything (its rate limit, 429; pointsflow's own rate limit or an
    /// open circuit): ask again after `retry_after`.
    NotAttempted {
        retry_after: std::time::Duration,
        reason: String,
    },
}

/// A reversal of points a credit gave: all of them or part, under our own
/// id for the reversal (a partner that keeps it answers a repeat with the
/// first answer; one that does not is asked what it reversed already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalInstruction {
    /// The credit's reference (ours, fixed before it was first sent).
    pub reference: PartnerReference,
    /// The partner's id for the credit, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// Our id for this reversal, unique within the credit.
    pub reversal_id: String,
    pub points: Points,
    /// The points of this credit our earlier reversals took back: with
    /// them, a partner that cannot look a reversal up by our id tells
    /// whether this one happened already.
    pub reversed_before: u64,
    pub reason: String,
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
}

/// What a reversal came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversalOutcome {
    /// The points are taken back (now, or by an earlier attempt with this id).
    Reversed { reversal: String },
    /// Refused for good: more than the credit gave, a credit that is not
    /// credited, an unknown reference. Nothing changed at the partner.
    Refused(Reason),
    /// No answer (timeout, 5xx): ask again with the same id.
    Unknown { detail: String },
    /// Not sent (a rate limit, an open circuit): ask again later.
    NotAttempted { reason: String },
}

/// A member validation: does the partner know this member number with these
/// names, in this program?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCheck {
    pub member: MemberNumber,
    pub first_name: String,
    pub last_name: String,
    pub partner_program: String,
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
}

/// The partner's answer to a member validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberCheckOutcome {
    Valid,
    /// Unknown member, names that do not match, a closed account: the
    /// partner's code and sentence.
    Invalid(Reason),
    /// No answer (timeout, 5xx): ask again later.
    Unknown {
        detail: String,
    },
}

/// A person's name as partners compare it: letters and digits only, upper
/// case, Latin accents removed, so `  José  O'Brien-Smith` and
/// `JOSE OBRIENSMITH` are the same name.
pub fn normalise_name(name: &str) -> String {
    name.chars()
        .flat_map(char::to_uppercase)
        .map(|c| match c {
            'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' => 'A',
            'Ç' | 'Ć' | 'Č' => 'C',
            'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => 'E',
            'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' => 'I',
            'Ñ' | 'Ń' | 'Ň' => 'N',
            'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' => 'O',
            'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' => 'U',
            'Ý' | 'Ÿ' => 'Y',
            'Š' | 'Ś' => 'S',
            'Ž' | 'Ź' | 'Ż' => 'Z',
            'Ł' => 'L',
            'Ř' => 'R',
            other => other,
        })
        .filter(|c| c.is_alphanumeric())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::normalise_name;

    #[test]
    fn names_compare_without_case_spacing_punctuation_or_accents() {
        assert_eq!(normalise_name("  José  O'Brien-Smith "), "JOSEOBRIENSMITH");
        assert_eq!(normalise_name("jose obriensmith"), "JOSEOBRIENSMITH");
        assert_eq!(normalise_name("Łukasz Żółć"), "LUKASZZOLC");
        assert_ne!(normalise_name("Ada"), normalise_name("Adam"));
    }
}
