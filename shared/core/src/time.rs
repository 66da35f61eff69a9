//! Clocks and id sources for production; the replayable ones live with the
//! embedded adapters.

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::ports::{Clock, IdSource};
use crate::values::PartnerReference;

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
