//! Clocks and id sources for production; the replayable ones live with the
//! embedded adapters.

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::ports::{Clock, IdSource};
use crate::values::PartnerReference;

/// An instant as people write one in a command or a query: an RFC 3339
/// time, or a date (its midnight, UTC).
pub fn parse_instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Random 128-bit partner references, `pf` + 32 hex digits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn partner_reference(&self) -> PartnerReference {
        let n: u128 = rand::rng().random();
        PartnerReference::from_number(n)
    }
}
