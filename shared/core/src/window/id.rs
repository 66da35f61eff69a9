//! Naming windows and their credits.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{MemberNumber, PartnerId, ProgramId, RequestId};

const WINDOW_TIME: &str = "%Y-%m-%dT%H:%MZ";

/// A window: `{program}@{closing time in UTC, to the minute}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WindowId {
    program: ProgramId,
    closes_at: DateTime<Utc>,
}

impl WindowId {
    /// The window of `program` closing at `at` (seconds are dropped).
    pub fn new(program: &ProgramId, at: DateTime<Utc>) -> Self {
        let minute = at.format(WINDOW_TIME).to_string();
        Self {
            program: program.clone(),
            closes_at: NaiveDateTime::parse_from_str(&minute, WINDOW_TIME)
                .map(|t| t.and_utc())
                .unwrap_or(at),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let (program, time) = raw
            .split_once('@')
            .ok_or_else(|| format!("window '{raw}' is not program@YYYY-MM-DDTHH:MMZ"))?;
        let program = ProgramId::parse(program).map_err(|e| format!("window '{raw}': {e}"))?;
        let closes_at = NaiveDateTime::parse_from_str(time, WINDOW_TIME)
            .map_err(|_| format!("window '{raw}': the time must be YYYY-MM-DDTHH:MMZ"))?
            .and_utc();
        Ok(Self { program, closes_at })
    }

    pub fn program(&self) -> &ProgramId {
        &self.program
    }

    pub fn closes_at(&self) -> DateTime<Utc> {
        self.closes_at
    }
}

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.program, self.closes_at.format(WINDOW_TIME))
    }
}

impl TryFrom<String> for WindowId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<WindowId> for String {
    fn from(w: WindowId) -> String {
        w.to_string()
    }
}

/// One partner credit of a window: all of a member's requests in the window
/// (with consolidation) or one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditId(String);

impl CreditId {
    /// The credit of `member`'s requests at `partner` in `window`; `part`
    /// counts from 1 and only a member with more than
    /// [`MAX_REQUESTS_PER_CREDIT`] requests in a window has a second.
    pub fn consolidated(
        window: &WindowId,
        partner: &PartnerId,
        member: &MemberNumber,
        part: u32,
    ) -> Self {
        match part {
            0 | 1 => Self(format!("{window}/{partner}/{member}")),
            n => Self(format!("{window}/{partner}/{member}/{n}")),
        }
    }

    /// The credit of one request in `window`.
    pub fn single(window: &WindowId, request: &RequestId) -> Self {
        Self(format!("{window}/{request}"))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let (window, rest) = raw
            .split_once('/')
            .ok_or_else(|| format!("credit '{raw}' is not window/..."))?;
        WindowId::parse(window)?;
        if rest.is_empty() || rest.len() > 200 || rest.chars().any(|c| c.is_control()) {
            return Err(format!("credit '{raw}' is malformed"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn window(&self) -> Option<WindowId> {
        self.0
            .split_once('/')
            .and_then(|(w, _)| WindowId::parse(w).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CreditId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<CreditId> for String {
    fn from(c: CreditId) -> String {
        c.0
    }
}

impl fmt::Display for CreditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_ids_round_trip_and_order_by_time() {
        let program = ProgramId::parse("payroll").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-27T18:00:42Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = WindowId::new(&program, at);
        assert_eq!(w.to_string(), "payroll@2026-11-27T18:00Z");
        assert_eq!(WindowId::parse(&w.to_string()).unwrap(), w);
        let later = WindowId::parse("payroll@2026-11-30T17:00Z").unwrap();
        assert!(w < later);
        assert!(WindowId::parse("payroll@2026-11-27 18:00").is_err());
        assert!(WindowId::parse("Payroll@2026-11-27T18:00Z").is_err());
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, "\"payroll@2026-11-27T18:00Z\"");
    }

    #[test]
    fn credit_ids_name_their_window() {
        let w = WindowId::parse("payroll@2026-11-27T18:00Z").unwrap();
        let partner = PartnerId::parse("skyways").unwrap();
        let member = MemberNumber::parse("sky1000001").unwrap();
        let id = CreditId::consolidated(&w, &partner, &member, 1);
        assert_eq!(id.as_str(), "payroll@2026-11-27T18:00Z/skyways/SKY1000001");
        assert_eq!(id.window(), Some(w.clone()));
        assert_eq!(CreditId::parse(id.as_str()).unwrap(), id);
        assert!(
            CreditId::consolidated(&w, &partner, &member, 2)
                .as_str()
                .ends_with("/2")
        );
        assert!(CreditId::parse("nowindow").is_err());
    }
}
