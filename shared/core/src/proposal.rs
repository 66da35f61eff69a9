//! A second pair of eyes: a change others rely on (a program's revision,
//! changing or removing someone's member link, a reversal above the
//! program's limit) is proposed by one operator and takes effect only when
//! a different operator with the role it needs confirms it by id. Both
//! identities stay on the proposal and in the audit log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{Principal, Role, SameOperator};
use crate::enrollment::MemberLink;
use crate::program::Program;
use crate::values::{MemberNumber, Points, ProgramId, RecipientId, RequestId};

/// A proposal's id: `prop_` and 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProposalId(String);

impl ProposalId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let hex = raw
            .strip_prefix("prop_")
            .ok_or_else(|| format!("proposal '{raw}' does not start with prop_"))?;
        if hex.len() != 32
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("proposal '{raw}' is not prop_ and 32 hex digits"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A new id from 128 random bits.
    pub fn from_bits(bits: u128) -> Self {
        Self(format!("prop_{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProposalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ProposalId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<ProposalId> for String {
    fn from(p: ProposalId) -> String {
        p.0
    }
}

/// What a proposal would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Apply a program revision (the one read, plus one).
    ProgramRevision { program: Program, revision: u64 },
    /// Link a recipient who is linked already to another member account.
    LinkChange {
        link: MemberLink,
        previous: MemberNumber,
    },
    /// Remove a recipient's link: its requests then wait for a new one.
    LinkRemoval {
        program: ProgramId,
        recipient: RecipientId,
        previous: MemberNumber,
    },
    /// Take back more points than an operator alone may.
    Reversal {
        request_id: RequestId,
        reversal_id: String,
        points: Option<Points>,
        reason: String,
    },
}

impl Change {
    /// The role the proposer and the confirmer each need.
    pub fn role(&self) -> Role {
        Role::Admin
    }

    /// One line for lists and the audit log.
    pub fn describe(&self) -> String {
        match self {
            Change::ProgramRevision { program, revision } => {
                format!("program {} revision {revision}", program.id)
            }
            Change::LinkChange { link, previous } => format!(
                "link {} in {} from {previous} to {}",
                link.recipient, link.program, link.member
            ),
            Change::LinkRemoval {
                program,
                recipient,
                previous,
            } => format!("remove the link of {recipient} in {program} (to {previous})"),
            Change::Reversal {
                request_id, points, ..
            } => match points {
                Some(p) => format!("reverse {p} points of {request_id}"),
                None => format!("reverse what is left of {request_id}"),
            },
        }
    }
}

/// Where a proposal stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProposalState {
    Proposed,
    /// Confirmed by a second operator and carried out.
    Confirmed {
        by: Principal,
        at: DateTime<Utc>,
    },
    /// Withdrawn (by its proposer or another admin) before it took effect.
    Withdrawn {
        by: Principal,
        at: DateTime<Utc>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub change: Change,
    pub reason: String,
    pub proposed_by: Principal,
    pub proposed_at: DateTime<Utc>,
    #[serde(flatten)]
    pub state: ProposalState,
    #[serde(skip)]
    pub version: u64,
}

/// Why a proposal cannot be confirmed or withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error(transparent)]
    SameOperator(#[from] SameOperator),
    #[error("proposal {id} is {state} already")]
    Closed { id: ProposalId, state: &'static str },
}

impl ProposalError {
    pub fn code(&self) -> &'static str {
        match self {
            ProposalError::SameOperator(_) => "four_eyes",
            ProposalError::Closed { .. } => "proposal_closed",
        }
    }
}

impl Proposal {
    pub fn new(
        id: ProposalId,
        change: Change,
        reason: &str,
        by: &Principal,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            change,
            reason: reason.trim().to_owned(),
            proposed_by: by.clone(),
            proposed_at: at,
            state: ProposalState::Proposed,
            version: 0,
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            ProposalState::Proposed => "proposed",
            ProposalState::Confirmed { .. } => "confirmed",
            ProposalState::Withdrawn { .. } => "withdrawn",
        }
    }

    /// Whether `by` may confirm it: another operator than its proposer, and
    /// it is still open. Confirmed by `by` already is a repeat (`Ok(false)`).
    pub fn check_confirmer(&self, by: &Principal) -> Result<bool, ProposalError> {
        match &self.state {
            ProposalState::Confirmed { by: done, .. } if done == by => return Ok(false),
            ProposalState::Proposed => {}
            _ => {
                return Err(ProposalError::Closed {
                    id: self.id.clone(),
                    state: self.state_name(),
                });
            }
        }
        if &self.proposed_by == by {
            return Err(SameOperator {
                principal: by.clone(),
            }
            .into());
        }
        Ok(true)
    }

    /// Marks it confirmed by `by`, before its change is carried out, so
    /// that nobody can withdraw it while the change is being made.
    pub fn confirmed(&mut self, by: &Principal, at: DateTime<Utc>) {
        self.state = ProposalState::Confirmed { by: by.clone(), at };
    }

    /// Opens it again: its change could not be made (the target moved
    /// meanwhile, the partner refused), so it took no effect.
    pub fn reopen(&mut self) {
        self.state = ProposalState::Proposed;
    }

    /// Withdraws it, if it is still open.
    pub fn withdraw(
        &mut self,
        by: &Principal,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ProposalError> {
        if self.state != ProposalState::Proposed {
            return Err(ProposalError::Closed {
                id: self.id.clone(),
                state: self.state_name(),
            });
        }
        self.state = ProposalState::Withdrawn {
            by: by.clone(),
            at,
            reason: reason.trim().to_owned(),
        };
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.state == ProposalState::Proposed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reversal() -> Proposal {
        Proposal::new(
            ProposalId::from_bits(7),
            Change::Reversal {
                request_id: RequestId::parse("pr_00000000000000000000000000000001").unwrap(),
                reversal_id: "r1".into(),
                points: None,
                reason: "deal lost".into(),
            },
            "deal lost",
            &Principal::parse("ops-anna").unwrap(),
            DateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn only_another_operator_confirms_and_only_once() {
        let anna = Principal::parse("ops-anna").unwrap();
        let bo = Principal::parse("ops-bo").unwrap();
        let mut p = reversal();
        assert_eq!(p.check_confirmer(&anna).unwrap_err().code(), "four_eyes");
        assert_eq!(p.check_confirmer(&bo), Ok(true));
        p.confirmed(&bo, DateTime::UNIX_EPOCH);
        assert_eq!(p.check_confirmer(&bo), Ok(false), "a repeat");
        assert_eq!(
            p.check_confirmer(&Principal::parse("ops-cy").unwrap())
                .unwrap_err()
                .code(),
            "proposal_closed"
        );
        assert!(p.withdraw(&anna, "x", DateTime::UNIX_EPOCH).is_err());
    }

    #[test]
    fn ids_are_prefixed_hex() {
        let id = ProposalId::from_bits(255);
        assert_eq!(ProposalId::parse(id.as_str()), Ok(id));
        assert!(ProposalId::parse("prop_xyz").is_err());
        assert!(ProposalId::parse("pr_00000000000000000000000000000001").is_err());
    }
}
