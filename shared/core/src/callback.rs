//! The message a request's final status sends to its source's callback
//! (see `pointsflow_runtime::callbacks`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::request::{PointsRequest, StatusKind};
use crate::values::RequestId;

/// What the callbacks queue carries: a request reached `state` at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackMessage {
    pub request_id: RequestId,
    pub state: StatusKind,
    pub at: DateTime<Utc>,
}

impl CallbackMessage {
    /// The message for `request` if its last change moved it into a final
    /// status (not a note added to a final status, such as a reversal
    /// asked for).
    pub fn for_final(request: &PointsRequest) -> Option<Self> {
        let state = request.state();
        if !state.is_terminal() {
            return None;
        }
        let mut entries = request.timeline.iter().rev();
        let last = entries.next()?;
        let before = entries.next();
        if last.state != state || before.is_some_and(|b| b.state == state) {
            return None;
        }
        Some(Self {
            request_id: request.id.clone(),
            state,
            at: last.at,
        })
    }

    /// The id receivers dedupe on.
    pub fn event_id(&self) -> String {
        format!("{}:{}", self.request_id, self.state)
    }
}
