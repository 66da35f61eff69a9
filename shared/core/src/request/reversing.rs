//! Recording reversals of a credited request and what the partner said of them.

use chrono::{DateTime, Utc};

use super::PointsRequest;
use super::status::{ReversalStep, ReversalStepKind, Status, StatusKind, TimelineEntry};
use crate::reversal::{MAX_REVERSAL_ID_CHARS, Requested, Reversal, ReversalError, ReversalState};
use crate::values::Points;

impl PointsRequest {
    /// The points credited to the member: what a reversal can take back.
    pub fn credited_points(&self) -> u64 {
        match self.state() {
            StatusKind::Credited | StatusKind::Reversed => self.points.map_or(0, Points::get),
            _ => 0,
        }
    }

    /// Points reversed or being reversed (refused reversals do not count).
    pub fn reversed_points(&self) -> u64 {
        self.reversals
            .iter()
            .filter(|r| !matches!(r.state, ReversalState::Refused { .. }))
            .map(|r| r.points.get())
            .sum()
    }

    /// Points taken back for good (the partner and the ledger have them).
    pub fn reversed_done(&self) -> u64 {
        self.reversals
            .iter()
            .filter(|r| matches!(r.state, ReversalState::Done { .. }))
            .map(|r| r.points.get())
            .sum()
    }

    /// Records a reversal of `points` (everything left when `None`) under
    /// `id`. The same id with the same points again is a repeat.
    pub fn request_reversal(
        &mut self,
        id: &str,
        points: Option<Points>,
        reason: &str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Requested, ReversalError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > crate::approval::MAX_REASON_CHARS {
            return Err(ReversalError::Invalid(
                "a reversal needs a reason of 1 to 500 characters",
            ));
        }
        if id.is_empty()
            || id.len() > MAX_REVERSAL_ID_CHARS
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ReversalError::Invalid(
                "a reversal id is 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some(existing) = self.reversals.iter().find(|r| r.id == id) {
            return match points {
                Some(p) if p != existing.points => Err(ReversalError::IdReused {
                    id: id.to_owned(),
                    was: existing.points.get(),
                    now: p.get(),
                }),
                _ => Ok(Requested::Existing(existing.clone())),
            };
        }
        let state = self.state();
        if state != StatusKind::Credited {
            return Err(ReversalError::NotCredited { state });
        }
        let credited = self.credited_points();
        let reversed = self.reversed_points();
        let left = credited.saturating_sub(reversed);
        let requested = points.map_or(left, Points::get);
        let Some(amount) = Points::new(requested)
            .ok()
            .filter(|_| requested > 0 && requested <= left)
        else {
            return Err(ReversalError::ExceedsCredited {
                credited,
                reversed,
                requested,
            });
        };
        let reversal = Reversal {
            id: id.to_owned(),
            points: amount,
            reason: reason.to_owned(),
            by: by.to_owned(),
            at,
            state: ReversalState::Requested,
        };
        self.timeline.push(TimelineEntry {
            reversal: Some(ReversalStep {
                id: id.to_owned(),
                step: ReversalStepKind::Asked,
            }),
            ..TimelineEntry::new(
                state,
                at,
                format!("reversal {id} of {amount} points asked by {by}: {reason}"),
            )
        });
        self.reversals.push(reversal.clone());
        Ok(Requested::New(reversal))
    }

    /// Records what the partner said of reversal `id`. `Ok(true)` when the
    /// request changed (save it); a reversal settled already is left as it is.
    pub fn settle_reversal(
        &mut self,
        id: &str,
        outcome: ReversalState,
        at: DateTime<Utc>,
    ) -> Result<bool, ReversalError> {
        let Some(reversal) = self.reversals.iter_mut().find(|r| r.id == id) else {
            return Err(ReversalError::Invalid("no reversal with this id"));
        };
        if reversal.state != ReversalState::Requested || outcome == ReversalState::Requested {
            return Ok(false);
        }
        let detail = match &outcome {
            ReversalState::Done { partner_reversal } => format!(
                "reversal {id} of {} points done (partner reversal {partner_reversal})",
                reversal.points
            ),
            ReversalState::Refused { reason } => {
                format!("reversal {id} refused by the partner: {}", reason.message)
            }
            ReversalState::Requested => String::new(),
        };
        let step = ReversalStep {
            id: id.to_owned(),
            step: match outcome {
                ReversalState::Done { .. } => ReversalStepKind::Done,
                _ => ReversalStepKind::Refused,
            },
        };
        reversal.state = outcome;
        if self.state() == StatusKind::Credited && self.reversed_done() >= self.credited_points() {
            self.transition(Status::Reversed, at, detail).map_err(|_| {
                ReversalError::NotCredited {
                    state: StatusKind::Credited,
                }
            })?;
        } else {
            let state = self.state();
            self.timeline.push(TimelineEntry::new(state, at, detail));
        }
        if let Some(line) = self.timeline.last_mut() {
            line.reversal = Some(step);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::{Reason, ReasonCode};
    use crate::request::tests::sample;

    fn credited(points: u64) -> PointsRequest {
        let mut r = sample();
        r.points = Some(Points::new(points).unwrap());
        r.status = Status::Credited;
        r
    }

    fn done(id: &str) -> ReversalState {
        ReversalState::Done {
            partner_reversal: format!("P-{id}"),
        }
    }

    #[test]
    fn partial_reversals_never_exceed_the_credit() {
        let mut r = credited(500);
        let now = Utc::now();
        let p = |n| Some(Points::new(n).unwrap());
        assert!(matches!(
            r.request_reversal("a", p(200), "deal reduced", "ops", now),
            Ok(Requested::New(_))
        ));
        assert!(matches!(
            r.request_reversal("b", p(301), "again", "ops", now),
            Err(ReversalError::ExceedsCredited {
                credited: 500,
                reversed: 200,
                requested: 301
            })
        ));
        // The same id again is a repeat, another amount under it an error.
        assert!(matches!(
            r.request_reversal("a", p(200), "deal reduced", "ops", now),
            Ok(Requested::Existing(_))
        ));
        assert_eq!(
            r.request_reversal("a", p(100), "x", "ops", now)
                .unwrap_err()
                .code(),
            "reversal_id_reused"
        );
        assert!(r.settle_reversal("a", done("a"), now).unwrap());
        assert!(!r.settle_reversal("a", done("a"), now).unwrap());
        assert_eq!(r.state(), StatusKind::Credited);
        // Everything left.
        let Ok(Requested::New(rest)) = r.request_reversal("b", None, "deal lost", "ops", now)
        else {
            panic!("the rest is reversible")
        };
        assert_eq!(rest.points.get(), 300);
        assert!(r.settle_reversal("b", done("b"), now).unwrap());
        assert_eq!(r.state(), StatusKind::Reversed);
        assert_eq!(
            r.request_reversal("c", None, "more", "ops", now)
                .unwrap_err()
                .code(),
            "not_credited"
        );
    }

    #[test]
    fn a_refused_reversal_gives_its_points_back_to_reverse() {
        let mut r = credited(100);
        let now = Utc::now();
        r.request_reversal("a", None, "deal lost", "ops", now)
            .unwrap();
        let refused = ReversalState::Refused {
            reason: Reason::new(ReasonCode::partner("points_spent"), "spent"),
        };
        assert!(r.settle_reversal("a", refused, now).unwrap());
        assert_eq!(r.state(), StatusKind::Credited);
        assert_eq!(r.reversed_points(), 0);
        assert!(
            r.request_reversal("b", None, "deal lost", "ops", now)
                .is_ok()
        );
    }

    #[test]
    fn only_credited_requests_with_a_reason_and_a_good_id_are_reversed() {
        let now = Utc::now();
        let mut r = sample();
        assert_eq!(
            r.request_reversal("a", None, "x", "ops", now)
                .unwrap_err()
                .code(),
            "not_credited"
        );
        let mut r2 = credited(10);
        for (id, reason) in [("", "x"), ("a b", "x"), ("a", " "), (&"x".repeat(65), "x")] {
            assert_eq!(
                r2.request_reversal(id, None, reason, "ops", now)
                    .unwrap_err()
                    .code(),
                "invalid_field"
            );
        }
        assert!(r2.reversals.is_empty());
        assert_eq!(r.reversals.len(), 0);
    }
}
