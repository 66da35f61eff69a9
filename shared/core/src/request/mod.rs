//! The canonical points request and its state machine. Every change of state
//! goes through [`PointsRequest::transition`], which refuses illegal moves and
//! appends to the request's timeline; nothing overwrites a state silently.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod approving;
mod retrying;
mod reversing;
pub mod status;

pub use retrying::RetryError;
pub use status::{ReversalStep, ReversalStepKind, Status, StatusKind, TimelineEntry};

use crate::approval::Approval;
use crate::delivery::DeliveryState;
use crate::money::Money;
use crate::partner::Destination;
use crate::reason::PersonName;
use crate::reversal::Reversal;
use crate::values::{
    Email, EventType, IdempotencyKey, MemberNumber, PartnerReference, PayloadHash, Points,
    ProgramId, RecipientId, RequestId, SourceId,
};

/// Who receives the points, as the source system knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub id: RecipientId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
}

/// What the source asks for: a points figure, or an amount the program turns into points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Award {
    Points(Points),
    Amount(Money),
}

/// The business event behind a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// The source's event carried no time, so `occurred_at` is the time
    /// pointsflow received it. A retry of the event arrives later; the time
    /// pointsflow filled in is therefore left out of the payload a replay is
    /// compared on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub occurred_at_is_receipt: bool,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn one() -> u8 {
    1
}

fn is_one(n: &u8) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from} to {to}")]
pub struct IllegalTransition {
    pub from: StatusKind,
    pub to: StatusKind,
}

/// The canonical request every source's input becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsRequest {
    pub id: RequestId,
    pub source: SourceId,
    pub idempotency_key: IdempotencyKey,
    pub payload_hash: PayloadHash,
    pub program: ProgramId,
    pub recipient: Recipient,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub award: Option<Award>,
    pub event: SourceEvent,
    pub received_at: DateTime<Utc>,
    pub status: Status,
    /// Set by eligibility: the points the program granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Points>,
    /// Set by eligibility: the member account that will be credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberNumber>,
    /// Set by eligibility: the member's names on the link, for partners
    /// that validate the member before each credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_name: Option<PersonName>,
    /// Set by eligibility: where the points go, as the program said when
    /// they were reserved. Dispatch credits there even if the program's
    /// destination changes later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Set by dispatch before the first partner call; never changed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_reference: Option<PartnerReference>,
    /// The partner's own id for the credit, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_transaction: Option<String>,
    #[serde(default)]
    pub dispatch_attempts: u32,
    /// When dispatch last started a partner call under the reference: a
    /// call may still be in flight until the function's timeout after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_at: Option<DateTime<Utc>>,
    /// The window credit that carries this request to the partner (a
    /// scheduled program's), whose reference it shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<crate::window::CreditId>,
    /// An operator's decision on a request that needed approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// How many different approvers the request needs (two above the
    /// program's second approval threshold), set when it starts waiting.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub approvals_needed: u8,
    /// The first of two approvals, until the second is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_approval: Option<Box<Approval>>,
    /// Set on a clawback: the request whose points this one takes back
    /// (its source undid the event behind it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<RequestId>,
    /// How many times an operator retried the request after it failed or
    /// was rejected: each retry is a new round, with its own reservation
    /// and a new partner reference.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
    /// Set by the resolver when it found the request still in progress an
    /// hour after the one it counts for ([`crate::unsettled`]): from then on
    /// the request is in the `unsettled` index until it settles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stalled: bool,
    /// Reversals of the credit, in the order they were asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reversals: Vec<Reversal>,
    pub timeline: Vec<TimelineEntry>,
    /// Optimistic concurrency: incremented by every store update.
    pub version: u64,
}

/// What a source hands intake, before the request has an id or a state.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    pub source: SourceId,
    pub idempotency_key: IdempotencyKey,
    pub program: ProgramId,
    pub recipient: Recipient,
    pub award: Option<Award>,
    pub event: SourceEvent,
}

impl NewRequest {
    /// The canonical bytes a replay is compared on: independent of JSON key
    /// order and whitespace in the client's body, and of any value pointsflow
    /// filled in itself (a receipt time stands in for a missing event time).
    pub fn canonical_payload(&self) -> Vec<u8> {
        let mut event = serde_json::to_value(&self.event).unwrap_or_default();
        if self.event.occurred_at_is_receipt
            && let Some(fields) = event.as_object_mut()
        {
            fields.remove("occurred_at");
        }
        let value = serde_json::json!({
            "program": self.program,
            "recipient": self.recipient,
            "award": self.award,
            "event": event,
        });
        // serde_json's map is ordered by key, so this serialisation is canonical.
        serde_json::to_vec(&value).unwrap_or_default()
    }

    pub fn into_request(self, received_at: DateTime<Utc>) -> PointsRequest {
        let payload_hash = PayloadHash::of(&self.canonical_payload());
        let id = RequestId::derive(&self.source, &self.idempotency_key);
        PointsRequest {
            id,
            source: self.source,
            idempotency_key: self.idempotency_key,
            payload_hash,
            program: self.program,
            recipient: self.recipient,
            award: self.award,
            event: self.event,
            received_at,
            status: Status::Received,
            points: None,
            member: None,
            member_name: None,
            destination: None,
            partner_reference: None,
            partner_transaction: None,
            dispatch_attempts: 0,
            attempt_at: None,
            credit: None,
            approval: None,
            approvals_needed: 1,
            first_approval: None,
            undoes: None,
            round: 0,
            stalled: false,
            reversals: Vec::new(),
            timeline: vec![TimelineEntry::new(
                StatusKind::Received,
                received_at,
                "accepted",
            )],
            version: 0,
        }
    }
}

impl PointsRequest {
    /// Moves the request to `to` if the table allows it, recording the step.
    pub fn transition(
        &mut self,
        to: Status,
        at: DateTime<Utc>,
        detail: impl Into<String>,
    ) -> Result<(), IllegalTransition> {
        let from = self.status.kind();
        let to_kind = to.kind();
        if !from.can_become(to_kind) {
            return Err(IllegalTransition { from, to: to_kind });
        }
        let reason = to.reason().map(|r| r.code.clone());
        self.status = to;
        self.timeline.push(TimelineEntry {
            reason,
            ..TimelineEntry::new(to_kind, at, detail)
        });
        Ok(())
    }

    pub fn state(&self) -> StatusKind {
        self.status.kind()
    }

    /// Where its credit at the partner stands, for a request reserved or
    /// sent (`None` before it is reserved, and once it is reversed).
    pub fn delivery_state(&self) -> Option<DeliveryState> {
        Some(match self.state() {
            StatusKind::Reserved => DeliveryState::Ready,
            StatusKind::Dispatching => DeliveryState::Sending,
            StatusKind::Unknown => DeliveryState::Unknown,
            StatusKind::PartnerPending => DeliveryState::PartnerPending,
            StatusKind::Credited => DeliveryState::Credited,
            StatusKind::Failed => DeliveryState::Failed,
            StatusKind::Received
            | StatusKind::Rejected
            | StatusKind::AwaitingApproval
            | StatusKind::AwaitingEnrollment
            | StatusKind::Held
            | StatusKind::Scheduled
            | StatusKind::Reversed => return None,
        })
    }

    /// The id of this round's reservation in the ledger.
    pub fn reservation_id(&self) -> crate::ledger::EntryId {
        crate::ledger::EntryId::reservation_in(&self.id, self.round)
    }

    /// The clawback of this request: the source sent `event` for the same
    /// record, and it no longer qualifies (`why`). Its key is this
    /// request's with `:undo`, so the source's retries find it.
    pub fn clawback(
        &self,
        event: SourceEvent,
        why: &str,
        now: DateTime<Utc>,
    ) -> Option<PointsRequest> {
        let key = IdempotencyKey::parse(&format!("{}:undo", self.idempotency_key)).ok()?;
        let mut undo = NewRequest {
            source: self.source.clone(),
            idempotency_key: key,
            program: self.program.clone(),
            recipient: self.recipient.clone(),
            award: None,
            event,
        }
        .into_request(now);
        undo.undoes = Some(self.id.clone());
        if let Some(first) = undo.timeline.first_mut() {
            first.detail = format!(
                "accepted: the source undid the event behind {} ({why})",
                self.id
            );
        }
        Some(undo)
    }

    /// When the request entered `state` last, if ever.
    pub fn entered(&self, state: StatusKind) -> Option<DateTime<Utc>> {
        self.timeline
            .iter()
            .rev()
            .find(|e| e.state == state)
            .map(|e| e.at)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::reason::{Reason, ReasonCode};

    pub(crate) fn sample() -> PointsRequest {
        NewRequest {
            source: SourceId::parse("demo").unwrap(),
            idempotency_key: IdempotencyKey::parse("deal-1").unwrap(),
            program: ProgramId::parse("sales-incentive").unwrap(),
            recipient: Recipient {
                id: RecipientId::parse("0055g00000AAAA1").unwrap(),
                email: None,
            },
            award: Some(Award::Amount(
                Money::parse("12500", Currency::parse("USD").unwrap()).unwrap(),
            )),
            event: SourceEvent {
                kind: EventType::parse("opportunity.closed_won").unwrap(),
                id: Some("0065g00000XYZ12".into()),
                occurred_at: DateTime::UNIX_EPOCH,
                occurred_at_is_receipt: false,
                attributes: serde_json::Map::new(),
            },
        }
        .into_request(DateTime::UNIX_EPOCH)
    }

    fn status_of(kind: StatusKind) -> Status {
        let reason = Reason::new(ReasonCode::parse("test"), "test");
        match kind {
            StatusKind::Received => Status::Received,
            StatusKind::Rejected => Status::Rejected { reason },
            StatusKind::AwaitingApproval => Status::AwaitingApproval {
                reason: reason.clone(),
            },
            StatusKind::AwaitingEnrollment => Status::AwaitingEnrollment {
                reason: reason.clone(),
            },
            StatusKind::Held => Status::Held { reason },
            StatusKind::Reserved => Status::Reserved,
            StatusKind::Scheduled => Status::Scheduled { window: "w".into() },
            StatusKind::Dispatching => Status::Dispatching,
            StatusKind::Credited => Status::Credited,
            StatusKind::PartnerPending => Status::PartnerPending,
            StatusKind::Unknown => Status::Unknown,
            StatusKind::Failed => Status::Failed { reason },
            StatusKind::Reversed => Status::Reversed,
        }
    }

    const LEGAL: &[(StatusKind, StatusKind)] = {
        use StatusKind::*;
        &[
            (Received, Rejected),
            (Received, AwaitingApproval),
            (Received, AwaitingEnrollment),
            (AwaitingEnrollment, Rejected),
            (AwaitingEnrollment, AwaitingApproval),
            (AwaitingEnrollment, Reserved),
            (AwaitingEnrollment, Held),
            (Received, Held),
            (Held, Rejected),
            (Held, AwaitingApproval),
            (Held, AwaitingEnrollment),
            (Held, Reserved),
            (Received, Reserved),
            (AwaitingApproval, Reserved),
            (AwaitingApproval, Rejected),
            (Reserved, Scheduled),
            (Reserved, Dispatching),
            (Scheduled, Dispatching),
            (Dispatching, Credited),
            (Dispatching, PartnerPending),
            (Dispatching, Unknown),
            (Dispatching, Failed),
            (PartnerPending, Credited),
            (PartnerPending, Failed),
            (PartnerPending, PartnerPending),
            (Unknown, Credited),
            (Unknown, Failed),
            (Unknown, PartnerPending),
            (Unknown, Unknown),
            (Credited, Reversed),
        ]
    };

    #[test]
    fn every_pair_of_states_follows_the_table() {
        for from in StatusKind::ALL {
            for to in StatusKind::ALL {
                let mut request = sample();
                request.status = status_of(from);
                let before = request.clone();
                let result = request.transition(status_of(to), DateTime::UNIX_EPOCH, "t");
                if LEGAL.contains(&(from, to)) {
                    assert!(result.is_ok(), "{from} -> {to} should be legal");
                    assert_eq!(request.state(), to);
                    assert_eq!(request.timeline.len(), before.timeline.len() + 1);
                } else {
                    assert_eq!(result, Err(IllegalTransition { from, to }));
                    assert_eq!(request, before, "{from} -> {to} changed the request");
                }
            }
        }
    }

    #[test]
    fn terminal_states_only_lead_to_reversal() {
        for from in StatusKind::ALL.into_iter().filter(|k| k.is_terminal()) {
            let exits: Vec<_> = StatusKind::ALL
                .into_iter()
                .filter(|to| from.can_become(*to))
                .collect();
            assert!(
                exits.is_empty() || exits == [StatusKind::Reversed],
                "{from}: {exits:?}"
            );
        }
    }

    #[test]
    fn the_timeline_keeps_every_step() {
        let mut r = sample();
        let t = DateTime::UNIX_EPOCH;
        r.transition(Status::Reserved, t, "reserved 250").unwrap();
        r.transition(Status::Dispatching, t, "calling partner")
            .unwrap();
        r.transition(Status::Unknown, t, "timeout").unwrap();
        r.transition(Status::Credited, t, "credited").unwrap();
        let states: Vec<_> = r.timeline.iter().map(|e| e.state).collect();
        use StatusKind::*;
        assert_eq!(states, [Received, Reserved, Dispatching, Unknown, Credited]);
    }

    #[test]
    fn canonical_payload_ignores_source_and_key() {
        let a = sample();
        let mut b = sample();
        b.idempotency_key = IdempotencyKey::parse("other").unwrap();
        assert_eq!(a.payload_hash, b.payload_hash);
    }

    #[test]
    fn requests_round_trip_through_json() {
        let mut r = sample();
        r.transition(
            Status::Rejected {
                reason: Reason::new(ReasonCode::BudgetExhausted, "no budget left"),
            },
            DateTime::UNIX_EPOCH,
            "no budget",
        )
        .unwrap();
        let json = serde_json::to_string(&r).unwrap();
        let back: PointsRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
