//! Who may do what. A caller is a source (it submits events and reads its
//! own requests) or an operator with roles; every operator action names the
//! role it needs, and the actions that change what others rely on (a
//! program, someone's member link, a large reversal) need a second operator
//! to confirm them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::values::ParseError;

/// The longest principal kept (an IAM ARN with a session name fits).
const MAX_PRINCIPAL: usize = 512;

/// Who an operator is, in full: the configured id of a key's holder
/// locally (`ops-anna`), the caller's IAM principal deployed
/// (`arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/anna`). Two
/// operators are different when their principals differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal(String);

impl Principal {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > MAX_PRINCIPAL {
            return Err(ParseError::new("principal", "must be 1 to 512 characters"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ParseError::new(
                "principal",
                "whitespace and control characters are not allowed",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Principal {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, ParseError> {
        Self::parse(&raw)
    }
}

impl From<Principal> for String {
    fn from(p: Principal) -> String {
        p.0
    }
}

/// What an operator may do, one grant at a time (an operator holds a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: requests, search, the audit log, reports, windows, proposals, link history.
    Viewer,
    /// Approves or declines requests waiting for approval.
    Approver,
    /// Day to day: resolve, retry, redrive, notify, reconcile, link a
    /// recipient who has no link, reverse up to the program's limit.
    Operator,
    /// Programs, changing or removing a link, reversals above the limit;
    /// each proposed by one admin and confirmed by another.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Approver, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an operator's identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verified {
    /// An operator key of the configuration (the local stack).
    Key,
    /// The caller's IAM principal, as API Gateway's IAM authorization
    /// established it (deployed).
    Iam,
    /// Written by the caller into a direct invocation of the operations
    /// function: whoever may invoke it may write any name.
    Declared,
}

/// An operator, as authenticated: who, how we know, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorIdentity {
    pub principal: Principal,
    pub roles: BTreeSet<Role>,
    pub verified: Verified,
}

impl OperatorIdentity {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// `Ok` when the operator holds `role`, else the refusal to answer with.
    pub fn require(&self, role: Role, action: &str) -> Result<(), Forbidden> {
        if self.has(role) {
            Ok(())
        } else {
            Err(Forbidden {
                principal: self.principal.clone(),
                needs: role,
                action: action.to_owned(),
            })
        }
    }
}

/// An action refused for want of a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {action}: it needs the {needs} role")]
pub struct Forbidden {
    pub principal: Principal,
    pub needs: Role,
    pub action: String,
}

/// An action needing a second operator, attempted by the one who proposed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} proposed this; another operator must confirm it")]
pub struct SameOperator {
    pub principal: Principal,
}

/// Whether `value` matches `pattern` as IAM's `StringLike` does: `*` any
/// run of characters, `?` any one. Operator principals are ARN patterns of
/// this kind, and the template's `LeadingKeys` conditions are too.
pub fn like(pattern: &str, value: &str) -> bool {
    // Iterative wildcard match with one backtrack point: no exponential
    // blow-up, whatever the pattern.
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < v.len() {
        if i < p.len() && (p[i] == '?' || (p[i] != '*' && p[i] == v[j])) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            i += 1;
            mark = j;
        } else if let Some(at) = star {
            i = at + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_principals() {
        let role = "arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/anna";
        assert!(like(
            "arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/*",
            role
        ));
        assert!(like(role, role));
        assert!(!like(
            "arn:aws:sts::123456789012:assumed-role/PointsflowAdmin",
            role
        ));
        assert!(!like(
            "arn:aws:sts::123456789012:assumed-role/Pointsflow*/bob",
            role
        ));
        assert!(like("*", role));
        assert!(!like("arn:aws:iam::*:user/x", role));
        assert!(like("PROGRAM?#*", "PROGRAMS#sales"));
        assert!(!like("PROGRAM?#*", "PROGRAM#sales"));
    }

    #[test]
    fn a_principal_is_visible_text() {
        assert!(Principal::parse("ops-anna").is_ok());
        assert!(Principal::parse("arn:aws:iam::123456789012:user/anna").is_ok());
        assert!(Principal::parse("").is_err());
        assert!(Principal::parse("a b").is_err());
        assert!(Principal::parse(&"x".repeat(513)).is_err());
    }

    #[test]
    fn a_missing_role_is_refused_naming_it() {
        let viewer = OperatorIdentity {
            principal: Principal::parse("ops-view").unwrap(),
            roles: BTreeSet::from([Role::Viewer]),
            verified: Verified::Key,
        };
        assert!(viewer.require(Role::Viewer, "get").is_ok());
        let e = viewer.require(Role::Approver, "approve").unwrap_err();
        assert_eq!(e.needs, Role::Approver);
        assert!(e.to_string().contains("approver"));
    }
}
