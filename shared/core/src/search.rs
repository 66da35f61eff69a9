//! What operators' `search` looks for, and whether a request matches.

use serde::{Deserialize, Serialize};

use crate::request::{PointsRequest, Status, StatusKind};
use crate::values::{MemberNumber, ProgramId, RecipientId};

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
}

impl SearchFilter {
    pub fn is_empty(&self) -> bool {
        self == &SearchFilter::default()
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
    }
}
