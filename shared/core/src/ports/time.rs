//! The time and new ids, injected so a run can be replayed.

use chrono::{DateTime, Utc};

use crate::values::PartnerReference;

/// The time, injected so a run can be replayed.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// New ids, injected so a run can be replayed.
pub trait IdSource: Send + Sync {
    fn partner_reference(&self) -> PartnerReference;
}
