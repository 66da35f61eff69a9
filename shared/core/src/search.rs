//! What operators' `search` looks for, and whether a request matches.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::request::{PointsRequest, Status, StatusKind};
use crate::values::{MemberNumber, ProgramId, RecipientId};

/// The longest period a search may name.
pub const MAX_PERIOD_DAYS: i64 = 31;

/// What `search` looks for: every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    /// The source system's record id (`event.id`), e.g. an Opportunity id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<RecipientId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusKind>,
    /// A scheduled program's window, `{program}@YYYY-MM-DDTHH:MMZ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramId>,
    /// A period, `[from, to)`, on when a request was sent to the partner
    /// (received, for one never sent): what a search by state or program
    /// alone reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

/// What a search reads first, before it checks the rest of the filter:
/// each is a key the store can look up, so a search reads what it finds
/// and never the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    SourceRecord(&'a str),
    Recipient(&'a RecipientId),
    Window(&'a str),
    Member(&'a MemberNumber),
    Period(DateTime<Utc>, DateTime<Utc>),
}

impl SearchFilter {
    pub fn is_empty(&self) -> bool {
        self == &SearchFilter::default()
    }

    /// The key a search starts from: the source record, the recipient, the
    /// window, the member, else the period.
    pub fn lookup(&self) -> Option<Lookup<'_>> {
        if let Some(r) = &self.source_record {
            return Some(Lookup::SourceRecord(r));
        }
        if let Some(r) = &self.recipient {
            return Some(Lookup::Recipient(r));
        }
        if let Some(w) = &self.window {
            return Some(Lookup::Window(w));
        }
        if let Some(m) = &self.member {
            return Some(Lookup::Member(m));
        }
        match (self.from, self.to) {
            (Some(from), Some(to)) => Some(Lookup::Period(from, to)),
            _ => None,
        }
    }

    /// Refuses a search that names no key to start from, or a period that
    /// is not one.
    pub fn check(&self) -> Result<(), String> {
        match (self.from, self.to) {
            (None, None) => {}
            (Some(from), Some(to)) if from >= to => return Err("to: must be after from".into()),
            (Some(from), Some(to)) if to - from > Duration::days(MAX_PERIOD_DAYS) => {
                return Err(format!("to: a period is at most {MAX_PERIOD_DAYS} days"));
            }
            (Some(_), Some(_)) => {}
            _ => return Err("from and to: give both, or neither".into()),
        }
        if self.lookup().is_none() {
            return Err(
                "search needs one of source_record, recipient, window, member, or a period \
                 (from and to) to narrow status or program"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn matches(&self, r: &PointsRequest) -> bool {
        let window = match &r.status {
            Status::Scheduled { window } => Some(window.as_str()),
            _ => r
                .credit
                .as_ref()
                .and_then(|c| c.as_str().split_once('/'))
                .map(|(w, _)| w),
        };
        self.source_record
            .as_deref()
            .is_none_or(|s| r.event.id.as_deref() == Some(s))
            && self.recipient.as_ref().is_none_or(|x| &r.recipient.id == x)
            && self
                .member
                .as_ref()
                .is_none_or(|m| r.member.as_ref() == Some(m))
            && self.status.is_none_or(|s| r.state() == s)
            && self.window.as_deref().is_none_or(|w| window == Some(w))
            && self.program.as_ref().is_none_or(|p| &r.program == p)
            && self
                .from
                .is_none_or(|from| crate::reconcile::period_time(r) >= from)
            && self
                .to
                .is_none_or(|to| crate::reconcile::period_time(r) < to)
    }
}
