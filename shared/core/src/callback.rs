//! The message a request's final status sends to its source's callback
//! (see `pointsflow_runtime::callbacks`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::request::{PointsRequest, StatusKind};
use crate::values::RequestId;

/// What the callbacks queue carries: a request reached `state` at `at`,
/// on the timeline line whose event has id `event_id` (`{request}:{n}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackMessage {
    pub request_id: RequestId,
    pub state: StatusKind,
    pub at: DateTime<Utc>,
    /// The event's id; `None` for a message queued before callbacks were
    /// queued from the events (its id is then `{request}:{state}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl CallbackMessage {
    /// The callbacks of the lines `after` has that `before` (the same
    /// request as stored before the write, `None` for its creation) did
    /// not, and that moved it into a final status (not a note added to a
    /// final status, such as a reversal asked for): what the events
    /// function queues for a source with a callback.
    pub fn of_write(before: Option<&PointsRequest>, after: &PointsRequest) -> Vec<Self> {
        let from = before.map_or(0, |b| b.timeline.len());
        (from..after.timeline.len())
            .filter_map(|i| Self::of_line(after, i))
            .collect()
    }

    /// The callback of the line that moved `request` into its current
    /// final status, if it is in one (what an operator's `notify` sends
    /// again, under the same id).
    pub fn latest(request: &PointsRequest) -> Option<Self> {
        (0..request.timeline.len())
            .rev()
            .filter_map(|i| Self::of_line(request, i))
            .find(|m| m.state == request.state())
    }

    fn of_line(request: &PointsRequest, i: usize) -> Option<Self> {
        let line = request.timeline.get(i)?;
        let previous = i.checked_sub(1).map(|p| request.timeline[p].state);
        if !line.state.is_terminal() || previous == Some(line.state) {
            return None;
        }
        Some(Self {
            request_id: request.id.clone(),
            state: line.state,
            at: line.at,
            event_id: Some(crate::events::event_id(&request.id, i)),
        })
    }

    /// The id receivers dedupe on: the event's.
    pub fn event_id(&self) -> String {
        self.event_id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.request_id, self.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Status;
    use crate::request::tests::sample;
    use crate::values::Points;

    #[test]
    fn a_final_status_is_called_back_under_its_lines_event_id() {
        let mut r = sample();
        r.points = Some(Points::new(300).unwrap());
        let at = chrono::DateTime::UNIX_EPOCH;
        for to in [Status::Reserved, Status::Dispatching] {
            r.transition(to, at, "step").unwrap();
        }
        let sent = r.clone();
        assert!(CallbackMessage::of_write(None, &sent).is_empty());
        r.transition(Status::Credited, at, "credited").unwrap();
        let credited = CallbackMessage::of_write(Some(&sent), &r);
        assert_eq!(credited.len(), 1);
        assert_eq!(credited[0].state, StatusKind::Credited);
        assert_eq!(credited[0].event_id(), format!("{}:4", r.id));
        // The whole history, written at once, calls back the same.
        assert_eq!(CallbackMessage::of_write(None, &r), credited);
        assert_eq!(CallbackMessage::latest(&r).as_ref(), credited.first());

        // A reversal asked for is a note on the final status: no callback.
        let before = r.clone();
        r.request_reversal("r-1", None, "deal lost", "ops", at)
            .unwrap();
        assert!(CallbackMessage::of_write(Some(&before), &r).is_empty());
        assert_eq!(CallbackMessage::latest(&r).as_ref(), credited.first());

        // A message queued before event ids keeps its old id.
        let old: CallbackMessage = serde_json::from_value(serde_json::json!({
            "request_id": r.id, "state": "credited", "at": at
        }))
        .unwrap();
        assert_eq!(old.event_id(), format!("{}:credited", r.id));
    }
}
