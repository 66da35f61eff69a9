//! Typed identifiers and quantities. Each is built only by parsing, so a value
//! of one of these types is valid by construction everywhere it travels.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a raw value could not become a typed one. `field` names what was being
/// parsed so the edge can tell a client exactly which input is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {problem}")]
pub struct ParseError {
    pub what: &'static str,
    pub problem: String,
}

impl ParseError {
    pub fn new(what: &'static str, problem: impl Into<String>) -> Self {
        Self {
            what,
            problem: problem.into(),
        }
    }
}

fn check_len(what: &'static str, s: &str, min: usize, max: usize) -> Result<(), ParseError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(ParseError::new(
            what,
            format!("must be {min} to {max} characters, got {n}"),
        ));
    }
    Ok(())
}

fn is_slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

fn check_slug(what: &'static str, s: &str) -> Result<(), ParseError> {
    check_len(what, s, 1, 64)?;
    if !s.chars().all(is_slug_char) || s.starts_with('-') {
        return Err(ParseError::new(
            what,
            "only lowercase letters, digits, '-' and '_' are allowed, not starting with '-'",
        ));
    }
    Ok(())
}

fn check_visible(what: &'static str, s: &str, max: usize) -> Result<(), ParseError> {
    check_len(what, s, 1, max)?;
    if s.chars().any(|c| c.is_control()) {
        return Err(ParseError::new(what, "control characters are not allowed"));
    }
    if s.trim() != s {
        return Err(ParseError::new(
            what,
            "leading or trailing whitespace is not allowed",
        ));
    }
    Ok(())
}

/// Defines a string newtype whose only constructor is `parse`, with serde that
/// goes through `parse` too, so nothing deserialised skips validation. The
/// text is shared (`Arc<str>`): ids are cloned into every request, entry and
/// message, and a clone should cost a reference count, not an allocation.
macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident, $what:literal, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                let $s = raw;
                $check?;
                Ok(Self(Arc::from(raw)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_value!(
    /// A program's id, e.g. `sales-incentive`.
    ProgramId, "program id", |s| check_slug("program id", s)
);
string_value!(
    /// A source's id (a Salesforce org connection, an HRIS, an API client).
    SourceId, "source id", |s| check_slug("source id", s)
);
string_value!(
    /// An operator's id as configured, e.g. `ops-anna`: who approved, declined or reversed.
    OperatorId, "operator id", |s| check_slug("operator id", s)
);
string_value!(
    /// A partner's id as configured, e.g. `sandbox-air`.
    PartnerId, "partner id", |s| check_slug("partner id", s)
);
string_value!(
    /// The source system's id for the person receiving points (a Salesforce User Id, an employee id).
    RecipientId, "recipient id", |s| check_visible("recipient id", s, 255)
);
string_value!(
    /// The client's key for one business event: the same key is the same request, forever.
    IdempotencyKey, "idempotency key", |s| check_visible("idempotency key", s, 255)
);
string_value!(
    /// The reference we send to the partner with a credit. Fixed before the first
    /// call and reused on every retry and status look-up.
    PartnerReference, "partner reference", |s| {
        check_len("partner reference", s, 1, 64)?;
        if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            Ok(())
        } else {
            Err(ParseError::new("partner reference", "only letters, digits, '-' and '_' are allowed"))
        }
    }
);

impl PartnerReference {
    /// The format every id source uses: `pf` and 32 hex digits.
    pub fn from_number(n: u128) -> Self {
        Self(Arc::from(format!("pf{n:032x}")))
    }
}

string_value!(
    /// An event type as the source names it, e.g. `opportunity.closed_won`.
    EventType, "event type", |s| {
        check_len("event type", s, 1, 128)?;
        if s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')) {
            Ok(())
        } else {
            Err(ParseError::new("event type", "only letters, digits and . _ - : / are allowed"))
        }
    }
);
string_value!(
    /// An email address as given by the source; checked for shape only.
    Email, "email", |s| {
        check_visible("email", s, 254)?;
        match s.split_once('@') {
            Some((local, domain)) if !local.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace) => Ok(()),
            _ => Err(ParseError::new("email", "is not an email address")),
        }
    }
);

/// A member number at a partner program (a frequent-flyer number). Parsing trims
/// whitespace and upper-cases, since members type these by hand, and records
/// the number in [`crate::sightings`], so the logs mask it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberNumber(Arc<str>);

impl MemberNumber {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let normalised: String = raw.trim().to_ascii_uppercase();
        check_len("member number", &normalised, 4, 32)?;
        if !normalised.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ParseError::new(
                "member number",
                "only letters and digits are allowed",
            ));
        }
        crate::sightings::remember(&normalised);
        Ok(Self(Arc::from(normalised)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as people other than operators see it, in the logs and
    /// in events: [`last_four`].
    pub fn masked(&self) -> String {
        last_four(&self.0)
    }
}

/// `******1234`: every character but the last four replaced by `*`.
pub fn last_four(s: &str) -> String {
    let len = s.chars().count();
    let shown: String = s.chars().skip(len.saturating_sub(4)).collect();
    format!("{}{shown}", "*".repeat(len.saturating_sub(4)))
}

impl fmt::Display for MemberNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MemberNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MemberNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A points request's id. Derived from (source, idempotency key), so the same
/// business event maps to the same id however often, and however late, it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Arc<str>);

const REQUEST_ID_PREFIX: &str = "pr_";
const REQUEST_ID_HEX: usize = 32;

impl RequestId {
    pub fn derive(source: &SourceId, key: &IdempotencyKey) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(source.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(key.as_str().as_bytes());
        let digest = hasher.finalize();
        Self(Arc::from(format!(
            "{REQUEST_ID_PREFIX}{}",
            hex::encode(&digest[..REQUEST_ID_HEX / 2])
        )))
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let hex_part = raw
            .strip_prefix(REQUEST_ID_PREFIX)
            .ok_or_else(|| ParseError::new("request id", "must start with 'pr_'"))?;
        if hex_part.len() != REQUEST_ID_HEX
            || !hex_part
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(ParseError::new(
                "request id",
                "must be 'pr_' and 32 lowercase hex digits",
            ));
        }
        Ok(Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Points are whole, non-negative quantities. Arithmetic is checked: an
/// overflow is an error, never a wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct Points(u64);

impl<'de> Deserialize<'de> for Points {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The largest points value accepted anywhere: far above any real award, and
/// low enough that sums of many never overflow a u64.
pub const MAX_POINTS: u64 = 1_000_000_000_000;

impl Points {
    pub const ZERO: Points = Points(0);

    pub fn new(value: u64) -> Result<Self, ParseError> {
        if value > MAX_POINTS {
            return Err(ParseError::new(
                "points",
                format!("must be at most {MAX_POINTS}"),
            ));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0.checked_add(other.0).map(Points)
    }

    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).map(Points)
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A SHA-256 of a request's canonical payload: equal hashes mean a replay,
/// different ones an idempotency key reused for another request. Serialised
/// as 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadHash([u8; 32]);

impl PayloadHash {
    pub fn of(canonical: &[u8]) -> Self {
        Self(Sha256::digest(canonical).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl Serialize for PayloadHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PayloadHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&text, &mut bytes)
            .map_err(|_| serde::de::Error::custom("a payload hash is 64 hex digits"))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lowercase_and_refuse_the_rest() {
        assert!(ProgramId::parse("sales-incentive").is_ok());
        assert!(ProgramId::parse("q4_2026").is_ok());
        for bad in ["", "Sales", "sales incentive", "-x", "a/b", &"x".repeat(65)] {
            assert!(ProgramId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn visible_strings_refuse_control_characters_and_padding() {
        assert!(RecipientId::parse("0055g00000AbCdE").is_ok());
        assert!(RecipientId::parse(" 005").is_err());
        assert!(RecipientId::parse("005\n").is_err());
        assert!(RecipientId::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn member_numbers_are_trimmed_and_uppercased() {
        let m = MemberNumber::parse("  sky1000001 ").unwrap();
        assert_eq!(m.as_str(), "SKY1000001");
        assert!(MemberNumber::parse("SKY-1").is_err());
        assert!(MemberNumber::parse("abc").is_err());
    }

    #[test]
    fn request_ids_are_derived_stably_and_round_trip() {
        let source = SourceId::parse("demo").unwrap();
        let key = IdempotencyKey::parse("deal-42").unwrap();
        let a = RequestId::derive(&source, &key);
        let b = RequestId::derive(&source, &key);
        assert_eq!(a, b);
        assert_eq!(RequestId::parse(a.as_str()).unwrap(), a);
        let other = RequestId::derive(&SourceId::parse("other").unwrap(), &key);
        assert_ne!(a, other);
        assert!(RequestId::parse("pr_XYZ").is_err());
        assert!(RequestId::parse("deal-42").is_err());
    }

    #[test]
    fn points_are_bounded_and_checked() {
        assert!(Points::new(MAX_POINTS).is_ok());
        assert!(Points::new(MAX_POINTS + 1).is_err());
        let p = Points::new(5).unwrap();
        assert_eq!(p.checked_sub(Points::new(6).unwrap()), None);
        assert_eq!(p.checked_add(p).unwrap().get(), 10);
    }

    #[test]
    fn serde_goes_through_parse() {
        assert!(serde_json::from_str::<Points>("1000000000001").is_err());
        assert_eq!(serde_json::from_str::<Points>("7").unwrap().get(), 7);
        assert!(serde_json::from_str::<ProgramId>("\"Bad Id\"").is_err());
        assert!(serde_json::from_str::<Email>("\"not-an-email\"").is_err());
        let e: Email = serde_json::from_str("\"a@example.com\"").unwrap();
        assert_eq!(e.as_str(), "a@example.com");
    }
}
