//! Delivering one credit at a partner, exactly once in effect: the state
//! machine a real-time request and a scheduled window's credit share.
//!
//! A delivery has a partner reference fixed before its first call and kept
//! for every retry and look-up. An attempt is counted (and saved) before
//! the call it stands for, so two deliveries of the same message cannot
//! both call; an answer that is not final keeps the reference and the
//! reservation, and the next attempt looks the reference up before it
//! credits again at a partner that does not recognise repeats, once any
//! call that may still be in flight has had time to land.
//!
//! ```text
//! ready ──credit──> sending ──credited──> credited
//!                      │    ──refused───> failed
//!                      │    ──pending───> partner_pending ──look-up──> credited | failed
//!                      └────lost────────> unknown ──retry (look-up first)──> ...
//! ```

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::partner::CreditOutcome;
use crate::reason::Reason;

/// How long a partner call may be in flight after it started: twice the
/// dispatch function's timeout (30 s in the template), so a call that
/// started is over, one way or the other, once it has passed. A partner
/// that does not recognise a repeated reference may commit what a call
/// asked for some time after receiving it (its `commit_within_ms`): the
/// lease before a look-up is then this plus that.
pub const ATTEMPT_LEASE: Duration = Duration::from_secs(60);

/// Where a credit at the partner stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// Its reference is fixed (or about to be) and no call was made.
    Ready,
    /// A call was made, or was about to be: its outcome is not recorded.
    Sending,
    /// A call's answer was lost (a timeout, a 5xx): the credit may or may
    /// not have happened.
    Unknown,
    /// The partner accepted the credit and settles it later.
    PartnerPending,
    Credited,
    Failed,
}

impl DeliveryState {
    pub fn is_settled(&self) -> bool {
        matches!(self, DeliveryState::Credited | DeliveryState::Failed)
    }
}

/// Which partner call comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Credit under the reference.
    Credit,
    /// Ask what the partner knows of the reference; credit only if it
    /// knows nothing (a partner that does not recognise a repeat).
    LookUpThenCredit,
    /// Only ask: the partner has the credit and settles it.
    LookUp,
}

/// What a delivery does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Make `call`; with `count`, count (and save) the attempt first.
    Call { call: Call, count: bool },
    /// A call under the reference may still be in flight at a partner that
    /// does not recognise repeats: try again after this long.
    Wait(Duration),
    /// Settled: only what depends on the outcome (the ledger, a window
    /// credit's requests) may be left to do.
    Settled,
}

/// What is left of the lease on a partner call started at `started`, at a
/// partner that commits a call up to `commit_within` after receiving it:
/// the call may reach the partner until [`ATTEMPT_LEASE`] has passed, and
/// be committed up to `commit_within` later.
pub fn lease_left(
    started: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    commit_within: Duration,
) -> Option<Duration> {
    let lease = ATTEMPT_LEASE.saturating_add(commit_within);
    let over = started? + TimeDelta::from_std(lease).ok()?;
    (over > now).then(|| (over - now).to_std().unwrap_or_default())
}

/// The next step of a delivery in `state` whose last call started at
/// `attempt_at` (none once its outcome was recorded), at a partner that
/// does (`idempotent`) or does not answer a repeated reference with its
/// first outcome, and commits what a call asked for up to `commit_within`
/// after receiving it ([`lease_left`]).
pub fn next(
    state: &DeliveryState,
    idempotent: bool,
    commit_within: Duration,
    attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Next {
    match state {
        DeliveryState::Credited | DeliveryState::Failed => Next::Settled,
        DeliveryState::PartnerPending => Next::Call {
            call: Call::LookUp,
            count: false,
        },
        DeliveryState::Ready => Next::Call {
            call: Call::Credit,
            count: true,
        },
        DeliveryState::Sending | DeliveryState::Unknown if idempotent => Next::Call {
            call: Call::Credit,
            count: true,
        },
        // A look-up while another delivery's call is still in flight would
        // find nothing and credit again.
        DeliveryState::Sending | DeliveryState::Unknown => {
            match lease_left(attempt_at, now, commit_within) {
                Some(wait) => Next::Wait(wait),
                None => Next::Call {
                    call: Call::LookUpThenCredit,
                    count: true,
                },
            }
        }
    }
}

/// What a partner's answer makes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The partner credited the points: settled.
    Credited { transaction: String },
    /// The partner refused for good: settled, nothing credited.
    Failed { reason: Reason },
    /// The partner accepted the credit and settles it later: `partner_pending`.
    Pending { transaction: Option<String> },
    /// The answer was lost: `unknown`, retried under the same reference.
    Unknown { detail: String },
    /// A look-up of a pending credit that still does not know: nothing changes.
    StillPending { detail: String },
    /// No call was made: nothing changes; try again after `retry_after`.
    NotAttempted {
        retry_after: Duration,
        reason: String,
    },
}

impl Outcome {
    /// The state the delivery is in after this outcome, when it changes.
    pub fn state(&self) -> Option<DeliveryState> {
        match self {
            Outcome::Credited { .. } => Some(DeliveryState::Credited),
            Outcome::Failed { .. } => Some(DeliveryState::Failed),
            Outcome::Pending { .. } => Some(DeliveryState::PartnerPending),
            Outcome::Unknown { .. } => Some(DeliveryState::Unknown),
            Outcome::StillPending { .. } | Outcome::NotAttempted { .. } => None,
        }
    }
}

/// What `outcome`, the answer to a call made in `state`, makes of the
/// delivery. A look-up that finds nothing of a credit the partner said was
/// pending is not a refusal: the outcome stays unknown.
pub fn after(state: &DeliveryState, outcome: CreditOutcome) -> Outcome {
    let pending = *state == DeliveryState::PartnerPending;
    match outcome {
        CreditOutcome::Credited { transaction } => Outcome::Credited { transaction },
        CreditOutcome::Rejected(reason) => Outcome::Failed { reason },
        CreditOutcome::Pending { transaction } => Outcome::Pending { transaction },
        CreditOutcome::NotAttempted {
            retry_after,
            reason,
        } => Outcome::NotAttempted {
            retry_after,
            reason,
        },
        CreditOutcome::Unknown { detail } if pending => Outcome::StillPending { detail },
        CreditOutcome::NotFound if pending => Outcome::StillPending {
            detail: "the partner has no record of a credit it reported pending".into(),
        },
        CreditOutcome::Unknown { detail } => Outcome::Unknown { detail },
        CreditOutcome::NotFound => Outcome::Unknown {
            detail: "the partner answered a credit with not-found".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::ReasonCode;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(s)
    }

    #[test]
    fn a_first_call_credits_and_is_counted() {
        for idempotent in [true, false] {
            assert_eq!(
                next(
                    &DeliveryState::Ready,
                    idempotent,
                    Duration::ZERO,
                    None,
                    t(0)
                ),
                Next::Call {
                    call: Call::Credit,
                    count: true
                }
            );
        }
    }

    #[test]
    fn a_retry_looks_up_first_at_a_partner_that_does_not_recognise_repeats() {
        for state in [DeliveryState::Sending, DeliveryState::Unknown] {
            assert_eq!(
                next(&state, true, Duration::ZERO, Some(t(0)), t(1)),
                Next::Call {
                    call: Call::Credit,
                    count: true
                },
                "an idempotent partner answers a repeat with the first outcome"
            );
            assert_eq!(
                next(&state, false, Duration::ZERO, Some(t(0)), t(10)),
                Next::Wait(Duration::from_secs(50)),
                "a call in flight is waited for"
            );
            assert_eq!(
                next(&state, false, Duration::ZERO, Some(t(0)), t(60)),
                Next::Call {
                    call: Call::LookUpThenCredit,
                    count: true
                }
            );
            assert_eq!(
                next(&state, false, Duration::ZERO, None, t(1)),
                Next::Call {
                    call: Call::LookUpThenCredit,
                    count: true
                },
                "no call in flight once an outcome was recorded"
            );
        }
    }

    /// A partner that commits an order up to ten minutes after receiving
    /// the call is not looked up (and ordered from again) before the call
    /// can have reached it and ten minutes have passed.
    #[test]
    fn the_look_up_waits_for_the_partners_commitment() {
        let ten_minutes = Duration::from_secs(600);
        let unknown = DeliveryState::Unknown;
        assert_eq!(
            next(&unknown, false, ten_minutes, Some(t(0)), t(120)),
            Next::Wait(Duration::from_secs(540))
        );
        assert!(matches!(
            next(&unknown, false, ten_minutes, Some(t(0)), t(660)),
            Next::Call {
                call: Call::LookUpThenCredit,
                ..
            }
        ));
    }

    #[test]
    fn a_pending_credit_is_only_looked_up_and_a_settled_one_never_called() {
        for idempotent in [true, false] {
            assert_eq!(
                next(
                    &DeliveryState::PartnerPending,
                    idempotent,
                    Duration::ZERO,
                    Some(t(0)),
                    t(1)
                ),
                Next::Call {
                    call: Call::LookUp,
                    count: false
                }
            );
            for settled in [DeliveryState::Credited, DeliveryState::Failed] {
                assert_eq!(
                    next(&settled, idempotent, Duration::ZERO, None, t(0)),
                    Next::Settled
                );
            }
        }
    }

    #[test]
    fn outcomes_move_a_delivery_as_the_table_says() {
        let sending = DeliveryState::Sending;
        let pending = DeliveryState::PartnerPending;
        let refused = Reason::new(ReasonCode::partner("member_closed"), "closed");
        assert_eq!(
            after(
                &sending,
                CreditOutcome::Credited {
                    transaction: "T".into()
                }
            )
            .state(),
            Some(DeliveryState::Credited)
        );
        assert_eq!(
            after(&pending, CreditOutcome::Rejected(refused.clone())),
            Outcome::Failed { reason: refused }
        );
        assert_eq!(
            after(&sending, CreditOutcome::Pending { transaction: None }).state(),
            Some(DeliveryState::PartnerPending)
        );
        assert_eq!(
            after(&pending, CreditOutcome::Pending { transaction: None }).state(),
            Some(DeliveryState::PartnerPending)
        );
        for lost in [
            CreditOutcome::Unknown {
                detail: "timeout".into(),
            },
            CreditOutcome::NotFound,
        ] {
            assert_eq!(
                after(&sending, lost.clone()).state(),
                Some(DeliveryState::Unknown)
            );
            assert_eq!(after(&pending, lost).state(), None, "still pending");
        }
        let not_now = CreditOutcome::NotAttempted {
            retry_after: Duration::from_secs(3),
            reason: "circuit open".into(),
        };
        assert_eq!(after(&sending, not_now).state(), None);
    }
}
