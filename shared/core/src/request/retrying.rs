//! An operator's retry of a failed or rejected request: a new round.

use chrono::{DateTime, Utc};

use super::PointsRequest;
use super::status::{Status, StatusKind, TimelineEntry};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("the request is {state}: {why}")]
    NotRetryable {
        state: StatusKind,
        why: &'static str,
    },
    #[error("a retry needs a reason of 1 to 500 characters")]
    BadReason,
}

impl RetryError {
    pub fn code(&self) -> &'static str {
        match self {
            RetryError::NotRetryable { .. } => "not_retryable",
            RetryError::BadReason => "invalid_field",
        }
    }
}

impl PointsRequest {
    /// An operator's retry of a request that failed (the partner refused
    /// for good: nothing credited, its reservation voided) or was rejected,
    /// once the cause is fixed: it is received again, in a new round,
    /// decided by eligibility from the start, reserved anew and sent under
    /// a new partner reference. A declined request, a clawback, and a
    /// request whose outcome is not known are not retried.
    pub fn retry(
        &mut self,
        by: &crate::access::Principal,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), RetryError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > crate::approval::MAX_REASON_CHARS {
            return Err(RetryError::BadReason);
        }
        let state = self.state();
        let retryable = match &self.status {
            Status::Failed { .. } => true,
            Status::Rejected { .. } => !self.is_declined() && self.undoes.is_none(),
            _ => false,
        };
        if !retryable {
            return Err(RetryError::NotRetryable {
                state,
                why: match state {
                    StatusKind::Rejected => "a declined request or a clawback is final",
                    StatusKind::Unknown | StatusKind::PartnerPending | StatusKind::Dispatching => {
                        "its outcome at the partner is not settled: resolve it instead"
                    }
                    _ => "only a failed or rejected request is retried",
                },
            });
        }
        self.round += 1;
        self.status = Status::Received;
        self.points = None;
        self.member = None;
        self.member_name = None;
        self.destination = None;
        self.partner_reference = None;
        self.partner_transaction = None;
        self.dispatch_attempts = 0;
        self.attempt_at = None;
        self.credit = None;
        self.timeline.push(TimelineEntry::new(
            StatusKind::Received,
            at,
            format!("retried by {by} (round {}): {reason}", self.round + 1),
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::{Reason, ReasonCode};
    use crate::request::tests::sample;
    use crate::values::PartnerReference;

    #[test]
    fn a_retry_starts_a_new_round_from_received() {
        let by = crate::access::Principal::parse("ops").unwrap();
        let mut r = sample();
        r.status = Status::Failed {
            reason: Reason::new(ReasonCode::partner("member_closed"), "closed"),
        };
        r.partner_reference = Some(PartnerReference::from_number(7));
        let first = r.reservation_id();
        r.retry(&by, "reopened", Utc::now()).unwrap();
        assert_eq!((r.state(), r.round), (StatusKind::Received, 1));
        assert_eq!(r.partner_reference, None, "a new round, a new reference");
        assert_ne!(r.reservation_id(), first);
        assert_eq!(
            r.retry(&by, "again", Utc::now()).unwrap_err().code(),
            "not_retryable"
        );
        let mut declined = sample();
        declined.status = Status::Rejected {
            reason: Reason::new(ReasonCode::Declined, "no"),
        };
        declined.approval = Some(crate::approval::Approval {
            decision: crate::approval::ApprovalDecision::Decline,
            by: by.clone(),
            at: Utc::now(),
            reason: Some("no".into()),
        });
        assert_eq!(
            declined.retry(&by, "x", Utc::now()).unwrap_err().code(),
            "not_retryable"
        );
        let mut unknown = sample();
        unknown.status = Status::Unknown;
        assert!(unknown.retry(&by, "x", Utc::now()).is_err());
        let mut rejected = sample();
        rejected.status = Status::Rejected {
            reason: Reason::new(ReasonCode::NotEnrolled, "no link"),
        };
        assert_eq!(
            rejected.retry(&by, " ", Utc::now()).unwrap_err().code(),
            "invalid_field"
        );
        assert!(rejected.retry(&by, "linked", Utc::now()).is_ok());
    }
}
