//! Recording an operator's decision on a request waiting for approval.

use chrono::{DateTime, Utc};

use super::PointsRequest;
use super::status::{Status, StatusKind, TimelineEntry};
use crate::access::Principal;
use crate::approval::{Approval, ApprovalDecision, ApprovalError, MAX_REASON_CHARS};
use crate::reason::{Reason, ReasonCode};

impl PointsRequest {
    /// Records an operator's decision. Approving leaves the request waiting
    /// for eligibility to reserve it; declining rejects it (`declined`).
    /// A request that needs two approvers (`approvals_needed`) takes a
    /// first approval, then a second from a different principal; the same
    /// principal twice is refused. The same decision again changes nothing
    /// and returns `Ok(false)`, so an operator's retry is harmless; the
    /// opposite decision is refused.
    pub fn decide_approval(
        &mut self,
        decision: ApprovalDecision,
        by: &Principal,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, ApprovalError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
            return Err(ApprovalError::BadReason(
                "the reason must be at most 500 characters",
            ));
        }
        if decision == ApprovalDecision::Decline && reason.is_none() {
            // Checked first: a decline without a reason is refused even
            // when the request was declined already.
            return Err(ApprovalError::BadReason("a decline needs a reason"));
        }
        if let Some(done) = &self.approval {
            if done.decision == decision {
                return Ok(false);
            }
            return Err(ApprovalError::AlreadyDecided {
                decision: done.decision,
                by: done.by.clone(),
            });
        }
        let state = self.state();
        if state != StatusKind::AwaitingApproval {
            return Err(ApprovalError::NotAwaiting { state });
        }
        let because = reason.map(|r| format!(": {r}")).unwrap_or_default();
        let given = Approval {
            decision,
            by: by.clone(),
            at,
            reason: reason.map(str::to_owned),
        };
        match decision {
            ApprovalDecision::Approve if self.approvals_needed > 1 => match &self.first_approval {
                None => {
                    self.timeline.push(TimelineEntry::new(
                        state,
                        at,
                        format!("first approval by {by}{because}; a second approver must confirm"),
                    ));
                    self.first_approval = Some(Box::new(given));
                    return Ok(true);
                }
                Some(first) if &first.by == by => {
                    return Err(ApprovalError::SameApprover { by: by.clone() });
                }
                Some(first) => self.timeline.push(TimelineEntry::new(
                    state,
                    at,
                    format!(
                        "approved by {by} (second approver, after {}){because}",
                        first.by
                    ),
                )),
            },
            ApprovalDecision::Approve => self.timeline.push(TimelineEntry::new(
                state,
                at,
                format!("approved by {by}{because}"),
            )),
            ApprovalDecision::Decline => {
                let Some(r) = reason else {
                    return Err(ApprovalError::BadReason("a decline needs a reason"));
                };
                let rejected = Status::Rejected {
                    reason: Reason::new(ReasonCode::Declined, format!("declined by {by}: {r}")),
                };
                self.transition(rejected, at, format!("declined by {by}{because}"))
                    .map_err(|_| ApprovalError::NotAwaiting { state })?;
            }
        }
        self.approval = Some(given);
        Ok(true)
    }

    /// Whether an operator declined the request (a decline is final).
    pub fn is_declined(&self) -> bool {
        self.approval
            .as_ref()
            .is_some_and(|a| a.decision == ApprovalDecision::Decline)
    }

    /// Whether the request is approved: by one approver, or by the two it needs.
    pub fn is_approved(&self) -> bool {
        self.approval
            .as_ref()
            .is_some_and(|a| a.decision == ApprovalDecision::Approve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{NewRequest, Recipient, SourceEvent};
    use crate::values::{EventType, IdempotencyKey, ProgramId, RecipientId, SourceId};

    fn waiting() -> PointsRequest {
        let mut r = NewRequest {
            source: SourceId::parse("crm").unwrap(),
            idempotency_key: IdempotencyKey::parse("deal-1").unwrap(),
            program: ProgramId::parse("sales").unwrap(),
            recipient: Recipient {
                id: RecipientId::parse("005A").unwrap(),
                email: None,
            },
            award: None,
            event: SourceEvent {
                kind: EventType::parse("deal.won").unwrap(),
                id: None,
                occurred_at: DateTime::UNIX_EPOCH,
                occurred_at_is_receipt: false,
                attributes: Default::default(),
            },
        }
        .into_request(DateTime::UNIX_EPOCH);
        r.transition(
            Status::AwaitingApproval {
                reason: Reason::new(ReasonCode::ApprovalRequired, "above the threshold"),
            },
            DateTime::UNIX_EPOCH,
            "waiting",
        )
        .unwrap();
        r
    }

    fn anna() -> Principal {
        Principal::parse("ops-anna").unwrap()
    }

    #[test]
    fn an_approval_is_recorded_once_and_a_repeat_changes_nothing() {
        let mut r = waiting();
        let t = DateTime::UNIX_EPOCH;
        assert_eq!(
            r.decide_approval(ApprovalDecision::Approve, &anna(), Some(" ok "), t),
            Ok(true)
        );
        assert!(r.is_approved());
        assert_eq!(r.state(), StatusKind::AwaitingApproval);
        assert_eq!(
            r.timeline.last().unwrap().detail,
            "approved by ops-anna: ok"
        );
        let before = r.clone();
        assert_eq!(
            r.decide_approval(ApprovalDecision::Approve, &anna(), None, t),
            Ok(false)
        );
        assert_eq!(r, before);
        assert_eq!(
            r.decide_approval(ApprovalDecision::Decline, &anna(), Some("no"), t),
            Err(ApprovalError::AlreadyDecided {
                decision: ApprovalDecision::Approve,
                by: anna()
            })
        );
        assert_eq!(r, before);
    }

    #[test]
    fn a_decline_rejects_with_the_operator_and_reason() {
        let mut r = waiting();
        let t = DateTime::UNIX_EPOCH;
        assert_eq!(
            r.decide_approval(ApprovalDecision::Decline, &anna(), None, t),
            Err(ApprovalError::BadReason("a decline needs a reason"))
        );
        assert_eq!(r.state(), StatusKind::AwaitingApproval);
        r.decide_approval(
            ApprovalDecision::Decline,
            &anna(),
            Some("duplicate deal"),
            t,
        )
        .unwrap();
        let reason = r.status.reason().unwrap();
        assert_eq!(reason.code, "declined");
        assert_eq!(reason.message, "declined by ops-anna: duplicate deal");
        assert_eq!(r.approval.as_ref().unwrap().by, anna());
    }

    #[test]
    fn only_a_waiting_request_can_be_decided() {
        let mut r = waiting();
        r.status = Status::Received;
        let e = r
            .decide_approval(
                ApprovalDecision::Approve,
                &anna(),
                None,
                DateTime::UNIX_EPOCH,
            )
            .unwrap_err();
        assert_eq!(e.code(), "not_awaiting_approval");
        let long = "x".repeat(501);
        let mut r = waiting();
        assert_eq!(
            r.decide_approval(
                ApprovalDecision::Approve,
                &anna(),
                Some(&long),
                DateTime::UNIX_EPOCH
            )
            .unwrap_err()
            .code(),
            "invalid_field"
        );
    }
}
