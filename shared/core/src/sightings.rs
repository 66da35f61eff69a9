//! The member numbers this process has seen, so its logs can mask each one
//! wherever it appears (`pointsflow-runtime`'s masker) without masking
//! every long number. Every member number is a [`MemberNumber`], and every
//! [`MemberNumber`] is made by its `parse` (deserialising one included),
//! which records it here; the configuration's are recorded when it loads.
//!
//! [`MemberNumber`]: crate::values::MemberNumber

use std::collections::HashSet;
use std::sync::{LazyLock, RwLock};

/// At most this many are kept; past it the set starts again (a function
/// instance rarely sees as many, and a line naming a member by field is
/// masked whatever this holds).
pub const MAX_REMEMBERED: usize = 100_000;

static SEEN: LazyLock<RwLock<HashSet<Box<str>>>> = LazyLock::new(RwLock::default);

/// Records `member` as a member number.
pub fn remember(member: &str) {
    if let Ok(seen) = SEEN.read()
        && seen.contains(member)
    {
        return;
    }
    if let Ok(mut seen) = SEEN.write() {
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(member.into());
    }
}

/// Whether `word` is a member number this process has seen.
pub fn is_member_number(word: &str) -> bool {
    SEEN.read().is_ok_and(|seen| seen.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::MemberNumber;

    #[test]
    fn every_parsed_member_number_is_remembered() {
        assert!(!is_member_number("QZX7654321"));
        MemberNumber::parse(" qzx7654321 ").unwrap();
        assert!(is_member_number("QZX7654321"));
        let json = serde_json::to_string("QZX7654322").unwrap();
        let _: MemberNumber = serde_json::from_str(&json).unwrap();
        assert!(is_member_number("QZX7654322"));
    }
}
