//! The events another system may follow of a points request: one for each
//! line of its timeline that changes its state or records a step of a
//! reversal, derived from the request as it was before and after one write,
//! so that whoever reads the store's own change records (the outbox) makes
//! exactly these, and a second reading makes identical ones.
//!
//! Each event has a stable id, `{request id}:{sequence}`, where `sequence`
//! is the line's place in the timeline counted from 1: the same on every
//! re-send, in order within a request (neither a table's stream across
//! items nor an event bus keeps order, so a consumer orders by it). Its
//! `detail` is documented as JSON Schema in `docs/events.schema.json`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::reason::{Reason, ReasonCode};
use crate::request::{PointsRequest, ReversalStepKind, Status, StatusKind, TimelineEntry};
use crate::reversal::Reversal;
use crate::values::{
    IdempotencyKey, PartnerId, PartnerReference, ProgramId, RecipientId, RequestId, SourceId,
};

/// The `source` of every event.
pub const SOURCE: &str = "pointsflow";

/// What happened: an event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum DetailType {
    #[serde(rename = "Points Request Received")]
    Received,
    #[serde(rename = "Points Request Rejected")]
    Rejected,
    /// A clawback's request ended having taken the points back.
    #[serde(rename = "Points Clawed Back")]
    ClawedBack,
    #[serde(rename = "Points Awaiting Approval")]
    AwaitingApproval,
    #[serde(rename = "Points Awaiting Enrollment")]
    AwaitingEnrollment,
    #[serde(rename = "Points Request Held")]
    Held,
    #[serde(rename = "Points Reserved")]
    Reserved,
    #[serde(rename = "Points Scheduled")]
    Scheduled,
    #[serde(rename = "Points Credited")]
    Credited,
    #[serde(rename = "Points Failed")]
    Failed,
    #[serde(rename = "Points Reversal Requested")]
    ReversalRequested,
    #[serde(rename = "Points Reversed")]
    Reversed,
    #[serde(rename = "Points Reversal Refused")]
    ReversalRefused,
}

impl DetailType {
    pub const ALL: [DetailType; 13] = [
        DetailType::Received,
        DetailType::Rejected,
        DetailType::ClawedBack,
        DetailType::AwaitingApproval,
        DetailType::AwaitingEnrollment,
        DetailType::Held,
        DetailType::Reserved,
        DetailType::Scheduled,
        DetailType::Credited,
        DetailType::Failed,
        DetailType::ReversalRequested,
        DetailType::Reversed,
        DetailType::ReversalRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::Received => "Points Request Received",
            DetailType::Rejected => "Points Request Rejected",
            DetailType::ClawedBack => "Points Clawed Back",
            DetailType::AwaitingApproval => "Points Awaiting Approval",
            DetailType::AwaitingEnrollment => "Points Awaiting Enrollment",
            DetailType::Held => "Points Request Held",
            DetailType::Reserved => "Points Reserved",
            DetailType::Scheduled => "Points Scheduled",
            DetailType::Credited => "Points Credited",
            DetailType::Failed => "Points Failed",
            DetailType::ReversalRequested => "Points Reversal Requested",
            DetailType::Reversed => "Points Reversed",
            DetailType::ReversalRefused => "Points Reversal Refused",
        }
    }
}

impl std::fmt::Display for DetailType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an event shows the member number in full or, as the logs do,
/// only its last four characters (`******1234`), the default: a program
/// opts in when its consumers need the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberNumbers {
    #[default]
    Masked,
    Shown,
}

/// The reversal an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReversalDetail {
    pub id: String,
    pub points: u64,
    pub reason: String,
    /// An operator's id, or `source:<source id>` for a clawback.
    pub by: String,
    /// The partner's id for the reversal, once done.
    pub partner_reversal: Option<String>,
    /// The partner's reason, when it refused.
    pub refusal: Option<Reason>,
}

/// An event's `detail`: every key is always present (`null` when it does
/// not apply), as `docs/events.schema.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// `{request id}:{sequence}`: a consumer de-duplicates on it.
    pub event_id: String,
    /// The line's place in the request's timeline, from 1.
    pub sequence: u32,
    /// The request's state after this line.
    pub state: StatusKind,
    pub at: DateTime<Utc>,
    pub request_id: RequestId,
    /// 0, or how many times an operator retried the request.
    pub round: u32,
    pub source: SourceId,
    pub source_record: Option<String>,
    pub idempotency_key: IdempotencyKey,
    pub program: ProgramId,
    pub recipient: RecipientId,
    pub points: Option<u64>,
    pub partner: Option<PartnerId>,
    pub partner_program: Option<String>,
    /// Masked unless the program shows member numbers in events.
    pub member: Option<String>,
    pub partner_reference: Option<PartnerReference>,
    pub partner_transaction: Option<String>,
    /// The transfer window a scheduled request waits for.
    pub window: Option<String>,
    /// Why it was rejected, failed, or waits; `null` otherwise.
    pub reason: Option<Reason>,
    pub reversal: Option<ReversalDetail>,
    /// Points taken back so far by reversals the partner has done.
    pub points_reversed: u64,
    /// For a clawback: the request whose points it takes back.
    pub undoes: Option<RequestId>,
}

/// One event: its `detail-type`, its time and its `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub detail_type: DetailType,
    pub time: DateTime<Utc>,
    pub detail: Detail,
}

impl Event {
    pub fn id(&self) -> &str {
        &self.detail.event_id
    }

    /// `detail` as the JSON a bus carries.
    pub fn detail_json(&self) -> String {
        // A struct of strings, numbers and options always serialises.
        serde_json::to_string(&self.detail).unwrap_or_default()
    }

    /// The event as an EventBridge rule's target receives it, from a bus
    /// in `account` and `region`. EventBridge gives each event it takes an
    /// `id` of its own; the event's stable id stays in `detail.event_id`.
    pub fn envelope(&self, id: &str, account: &str, region: &str) -> serde_json::Value {
        serde_json::json!({
            "version": "0",
            "id": id,
            "detail-type": self.detail_type.as_str(),
            "source": SOURCE,
            "account": account,
            "time": self.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": region,
            "resources": [],
            "detail": self.detail,
        })
    }
}

/// The id of the event of line `i` (from 0) of request `id`'s timeline.
pub fn event_id(id: &RequestId, i: usize) -> String {
    format!("{id}:{}", i + 1)
}

/// One write of a points request, as the store's change records tell it:
/// the request before (`None` when the write created it) and after, and
/// where the record is in the store's record of changes (a DynamoDB
/// stream's sequence number), so a failed record can be retried from.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub position: String,
    pub before: Option<PointsRequest>,
    pub after: PointsRequest,
}

/// The events of the lines `after` has that `before` (the same request as
/// stored before the write, `None` for its creation) did not.
pub fn request_events(
    before: Option<&PointsRequest>,
    after: &PointsRequest,
    members: MemberNumbers,
) -> Vec<Event> {
    let from = before.map_or(0, |b| b.timeline.len());
    (from..after.timeline.len())
        .filter_map(|i| {
            let line = &after.timeline[i];
            let previous = i.checked_sub(1).map(|p| after.timeline[p].state);
            let detail_type = detail_type(after, line, previous)?;
            Some(Event {
                detail_type,
                time: line.at,
                detail: detail(after, i, line, members),
            })
        })
        .collect()
}

/// The kind of event a timeline line is, if any: a reversal's step, or a
/// change of state that another party may act on (`dispatching`,
/// `unknown` and `partner_pending` are the pipeline's own progress).
fn detail_type(
    request: &PointsRequest,
    line: &TimelineEntry,
    previous: Option<StatusKind>,
) -> Option<DetailType> {
    if let Some(step) = &line.reversal {
        return Some(match step.step {
            ReversalStepKind::Asked => DetailType::ReversalRequested,
            ReversalStepKind::Done => DetailType::Reversed,
            ReversalStepKind::Refused => DetailType::ReversalRefused,
        });
    }
    if previous == Some(line.state) && line.state != StatusKind::Received {
        return None;
    }
    Some(match line.state {
        StatusKind::Received => DetailType::Received,
        StatusKind::Rejected
            if request.undoes.is_some()
                && request
                    .status
                    .reason()
                    .is_some_and(|r| r.code == ReasonCode::ClawbackReversed) =>
        {
            DetailType::ClawedBack
        }
        StatusKind::Rejected => DetailType::Rejected,
        StatusKind::AwaitingApproval => DetailType::AwaitingApproval,
        StatusKind::AwaitingEnrollment => DetailType::AwaitingEnrollment,
        StatusKind::Held => DetailType::Held,
        StatusKind::Reserved => DetailType::Reserved,
        StatusKind::Scheduled => DetailType::Scheduled,
        StatusKind::Credited => DetailType::Credited,
        StatusKind::Failed => DetailType::Failed,
        StatusKind::Reversed => DetailType::Reversed,
        StatusKind::Dispatching | StatusKind::Unknown | StatusKind::PartnerPending => return None,
    })
}

/// Line `i`'s detail. Every field is what the request's history up to
/// that line fixed, so the events of a line are the same whether they are
/// made from the write that added it or rebuilt from the request much
/// later (`resend_events`): points and member once decided (awaiting
/// approval, reserved or scheduled), the partner once reserved, the
/// partner's reference once sent, its transaction once credited (each in
/// the line's own round: an operator's retry starts again from
/// `received`), the reason the line itself records, the points reversed by
/// the reversals done by then. (What a later round, or a relink while
/// waiting for approval, changes of the points, member, partner or
/// reference shows in the earlier lines' rebuilt events.)
fn detail(
    request: &PointsRequest,
    i: usize,
    line: &TimelineEntry,
    members: MemberNumbers,
) -> Detail {
    let sequence = u32::try_from(i + 1).unwrap_or(u32::MAX);
    let history = &request.timeline[..=i];
    // What this line's round (since its last receipt) has reached: an
    // operator's retry starts again from `received`.
    let round_start = history
        .iter()
        .rposition(|l| l.state == StatusKind::Received && l.reversal.is_none())
        .unwrap_or(0);
    let reached = |states: &[StatusKind]| {
        history[round_start..]
            .iter()
            .any(|l| states.contains(&l.state))
    };
    use StatusKind as S;
    let decided = reached(&[S::AwaitingApproval, S::Reserved, S::Scheduled]);
    let destined = reached(&[S::Reserved, S::Scheduled]);
    let sent = reached(&[
        S::Dispatching,
        S::Unknown,
        S::PartnerPending,
        S::Credited,
        S::Failed,
    ]);
    let credited = reached(&[S::Credited]);
    let rounds = history.iter().filter(|l| l.state == S::Received).count();
    let window = (line.state == S::Scheduled)
        .then(|| match (&request.status, &request.credit) {
            (Status::Scheduled { window }, _) => Some(window.to_string()),
            (_, Some(credit)) => credit.window().map(|w| w.to_string()),
            _ => None,
        })
        .flatten();
    let reversal = line.reversal.as_ref().and_then(|step| {
        request
            .reversals
            .iter()
            .find(|r| r.id == step.id)
            .map(|r| reversal_detail(r, step.step))
    });
    let points_reversed = history
        .iter()
        .filter_map(|l| l.reversal.as_ref())
        .filter(|step| step.step == ReversalStepKind::Done)
        .filter_map(|step| request.reversals.iter().find(|r| r.id == step.id))
        .map(|r| r.points.get())
        .sum();
    let destination = request.destination.as_ref().filter(|_| destined);
    Detail {
        event_id: event_id(&request.id, i),
        sequence,
        state: line.state,
        at: line.at,
        request_id: request.id.clone(),
        round: u32::try_from(rounds.saturating_sub(1)).unwrap_or(u32::MAX),
        source: request.source.clone(),
        source_record: request.event.id.clone(),
        idempotency_key: request.idempotency_key.clone(),
        program: request.program.clone(),
        recipient: request.recipient.id.clone(),
        points: request.points.filter(|_| decided).map(|p| p.get()),
        partner: destination.map(|d| d.partner.clone()),
        partner_program: destination.map(|d| d.partner_program.clone()),
        member: request
            .member
            .as_ref()
            .filter(|_| decided)
            .map(|m| match members {
                MemberNumbers::Shown => m.as_str().to_owned(),
                MemberNumbers::Masked => m.masked(),
            }),
        partner_reference: request.partner_reference.clone().filter(|_| sent),
        partner_transaction: request.partner_transaction.clone().filter(|_| credited),
        window,
        reason: match &line.reason {
            Some(code) => Some(Reason::new(code.clone(), line.detail.clone())),
            // A line written before lines kept their reason's code: the
            // status's reason, when it is the last line.
            None if i + 1 == request.timeline.len() => request.status.reason().cloned(),
            None => None,
        },
        reversal,
        points_reversed,
        undoes: request.undoes.clone(),
    }
}

fn reversal_detail(reversal: &Reversal, step: ReversalStepKind) -> ReversalDetail {
    use crate::reversal::ReversalState;
    let (partner_reversal, refusal) = match (&reversal.state, step) {
        (ReversalState::Done { partner_reversal }, ReversalStepKind::Done) => {
            (Some(partner_reversal.clone()), None)
        }
        (ReversalState::Refused { reason }, ReversalStepKind::Refused) => {
            (None, Some(reason.clone()))
        }
        _ => (None, None),
    };
    ReversalDetail {
        id: reversal.id.clone(),
        points: reversal.points.get(),
        reason: reversal.reason.clone(),
        by: reversal.by.clone(),
        partner_reversal,
        refusal,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Duration;

    use super::*;
    use crate::partner::Destination;
    use crate::request::tests::sample;
    use crate::reversal::ReversalState;
    use crate::values::{MemberNumber, Points};

    fn types(events: &[Event]) -> Vec<(u32, &'static str)> {
        events
            .iter()
            .map(|e| (e.detail.sequence, e.detail_type.as_str()))
            .collect()
    }

    /// The request after each write of a real-time credit, then of a
    /// partial and a full reversal.
    fn writes() -> Vec<PointsRequest> {
        let t = |s| DateTime::UNIX_EPOCH + Duration::seconds(s);
        let mut r = sample();
        let mut out = vec![r.clone()];
        r.points = Some(Points::new(500).unwrap());
        r.member = Some(MemberNumber::parse("SK12345678").unwrap());
        r.destination = Some(Destination {
            partner: PartnerId::parse("sky").unwrap(),
            partner_program: "SKY".into(),
        });
        r.partner_reference = Some(PartnerReference::parse("pf0000000001").unwrap());
        r.transition(Status::Reserved, t(1), "reserved").unwrap();
        out.push(r.clone());
        r.transition(Status::Dispatching, t(2), "calling").unwrap();
        r.transition(Status::Unknown, t(3), "timed out").unwrap();
        out.push(r.clone());
        r.partner_transaction = Some("TX-1".into());
        r.transition(Status::Credited, t(4), "credited").unwrap();
        out.push(r.clone());
        r.request_reversal(
            "a",
            Some(Points::new(200).unwrap()),
            "deal reduced",
            "ops-anna",
            t(5),
        )
        .unwrap();
        out.push(r.clone());
        let done = |id: &str| ReversalState::Done {
            partner_reversal: format!("R-{id}"),
        };
        r.settle_reversal("a", done("a"), t(6)).unwrap();
        r.request_reversal("b", None, "deal lost", "ops-anna", t(7))
            .unwrap();
        r.settle_reversal("b", done("b"), t(8)).unwrap();
        out.push(r.clone());
        out
    }

    #[test]
    fn each_write_makes_the_events_of_the_lines_it_added() {
        let writes = writes();
        let mut all = Vec::new();
        let mut before = None;
        for after in &writes {
            let events = request_events(before, after, MemberNumbers::Masked);
            // Reading the same change again makes identical events.
            assert_eq!(events, request_events(before, after, MemberNumbers::Masked));
            all.extend(events);
            before = Some(after);
        }
        assert_eq!(
            types(&all),
            [
                (1, "Points Request Received"),
                (2, "Points Reserved"),
                (5, "Points Credited"),
                (6, "Points Reversal Requested"),
                (7, "Points Reversed"),
                (8, "Points Reversal Requested"),
                (9, "Points Reversed"),
            ]
        );
        let id = &writes[0].id;
        for e in &all {
            assert_eq!(e.id(), format!("{id}:{}", e.detail.sequence));
            assert_eq!(e.time, e.detail.at);
        }
        // The whole history at once (an operator rebuilding a period's
        // events) is the same events.
        assert_eq!(
            request_events(None, writes.last().unwrap(), MemberNumbers::Masked)
                .iter()
                .map(Event::id)
                .collect::<Vec<_>>(),
            all.iter().map(Event::id).collect::<Vec<_>>()
        );
        let credited = &all[2].detail;
        assert_eq!(credited.points, Some(500));
        assert_eq!(credited.partner_transaction.as_deref(), Some("TX-1"));
        assert_eq!(credited.member.as_deref(), Some("******5678"));
        let partial = &all[4].detail;
        assert_eq!(partial.state, StatusKind::Credited);
        let reversal = partial.reversal.as_ref().unwrap();
        assert_eq!((reversal.id.as_str(), reversal.points), ("a", 200));
        assert_eq!(reversal.partner_reversal.as_deref(), Some("R-a"));
        let full = &all[6].detail;
        assert_eq!(full.state, StatusKind::Reversed);
        assert_eq!(full.points_reversed, 500);
    }

    #[test]
    fn a_program_may_show_member_numbers() {
        let writes = writes();
        let events = request_events(Some(&writes[2]), &writes[3], MemberNumbers::Shown);
        assert_eq!(events[0].detail.member.as_deref(), Some("SK12345678"));
    }

    #[test]
    fn a_rejection_and_a_failure_carry_their_reason() {
        let mut r = sample();
        let before = r.clone();
        let reason = Reason::new(ReasonCode::BudgetExhausted, "no budget left");
        r.transition(
            Status::Rejected {
                reason: reason.clone(),
            },
            DateTime::UNIX_EPOCH,
            "rejected",
        )
        .unwrap();
        let events = request_events(Some(&before), &r, MemberNumbers::Masked);
        assert_eq!(types(&events), [(2, "Points Request Rejected")]);
        // The reason's code, with the line's own words.
        let said = Reason::new(reason.code, "rejected");
        assert_eq!(events[0].detail.reason, Some(said));
        assert_eq!(events[0].detail.points, None);
    }

    #[test]
    fn events_rebuilt_from_the_last_write_are_those_made_write_by_write() {
        let writes = writes();
        let mut before = None;
        let mut made = Vec::new();
        for w in &writes {
            made.extend(request_events(before, w, MemberNumbers::Masked));
            before = Some(w);
        }
        let last = writes.last().unwrap();
        assert_eq!(request_events(None, last, MemberNumbers::Masked), made);
        // The receipt says only what was received.
        assert_eq!(made[0].detail.points, None);
        assert_eq!(made[0].detail.partner_transaction, None);
    }

    #[test]
    fn every_detail_type_has_its_name() {
        for t in DetailType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
