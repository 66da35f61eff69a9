//! The events another system may follow: of a points request, one for
//! each line of its timeline that changes its state or records a step of a
//! reversal; of a member link, its creation, change or removal; of a
//! window's credit at the partner, its plan and its outcome. Each is
//! derived from the item as it was before and after one write, so that
//! whoever reads the store's own change records (the outbox) makes exactly
//! these, and a second reading makes identical ones.
//!
//! Each event has a stable id, the same on every re-send:
//! `{request id}:{sequence}`, where `sequence` is the line's place in the
//! timeline counted from 1, in order within a request (neither a table's
//! stream across items nor an event bus keeps order, so a consumer orders
//! by it); `link:{program}:{recipient}:{microseconds}` for a link's change;
//! `{partner reference}:{stage}` for a window credit's. Its `detail` is
//! documented as JSON Schema in `docs/events.schema.json`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::enrollment::MemberLink;
use crate::reason::{Reason, ReasonCode};
use crate::request::{PointsRequest, ReversalStepKind, Status, StatusKind, TimelineEntry};
use crate::reversal::Reversal;
use crate::values::{
    IdempotencyKey, MemberNumber, PartnerId, PartnerReference, ProgramId, RecipientId, RequestId,
    SourceId,
};
use crate::window::{CreditState, WindowCredit};

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
    /// A recipient linked to a member account, where none was in force.
    #[serde(rename = "Member Linked")]
    MemberLinked,
    /// A recipient's link moved to another member account.
    #[serde(rename = "Member Link Changed")]
    MemberLinkChanged,
    #[serde(rename = "Member Unlinked")]
    MemberUnlinked,
    /// A window's requests, planned as one partner credit (one per member
    /// when the program consolidates, otherwise one per request).
    #[serde(rename = "Window Credit Planned")]
    CreditPlanned,
    #[serde(rename = "Window Credit Credited")]
    CreditCredited,
    #[serde(rename = "Window Credit Failed")]
    CreditFailed,
}

impl DetailType {
    pub const ALL: [DetailType; 19] = [
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
        DetailType::MemberLinked,
        DetailType::MemberLinkChanged,
        DetailType::MemberUnlinked,
        DetailType::CreditPlanned,
        DetailType::CreditCredited,
        DetailType::CreditFailed,
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
            DetailType::MemberLinked => "Member Linked",
            DetailType::MemberLinkChanged => "Member Link Changed",
            DetailType::MemberUnlinked => "Member Unlinked",
            DetailType::CreditPlanned => "Window Credit Planned",
            DetailType::CreditCredited => "Window Credit Credited",
            DetailType::CreditFailed => "Window Credit Failed",
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

impl MemberNumbers {
    /// `member` as events of this kind show it.
    pub fn show(self, member: &MemberNumber) -> String {
        match self {
            MemberNumbers::Shown => member.as_str().to_owned(),
            MemberNumbers::Masked => member.masked(),
        }
    }
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

/// An event's `detail`, one shape per kind of item: every key is always
/// present (`null` when it does not apply), as `docs/events.schema.json`
/// says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // most events are requests'
pub enum Detail {
    Request(RequestDetail),
    Link(LinkDetail),
    Credit(CreditDetail),
}

impl Detail {
    pub fn event_id(&self) -> &str {
        match self {
            Detail::Request(d) => &d.event_id,
            Detail::Link(d) => &d.event_id,
            Detail::Credit(d) => &d.event_id,
        }
    }
}

/// A points request event's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestDetail {
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

/// What happened to a member link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkChangeKind {
    Linked,
    Changed,
    Unlinked,
}

/// A member link event's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkDetail {
    /// `link:{program}:{recipient}:{microseconds since 1970}` of the change.
    pub event_id: String,
    pub change: LinkChangeKind,
    pub at: DateTime<Utc>,
    pub program: ProgramId,
    pub recipient: RecipientId,
    /// The member account linked now (masked unless the program shows
    /// member numbers); `null` once unlinked.
    pub member: Option<String>,
    /// The member account linked before a change or a removal.
    pub previous_member: Option<String>,
    /// An operator's principal, or `source:{id}`.
    pub by: String,
    /// The second operator who confirmed a change or a removal.
    pub confirmed_by: Option<String>,
}

/// Where a window credit's event finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditStage {
    Planned,
    Credited,
    Failed,
}

impl CreditStage {
    fn as_str(self) -> &'static str {
        match self {
            CreditStage::Planned => "planned",
            CreditStage::Credited => "credited",
            CreditStage::Failed => "failed",
        }
    }
}

/// A window credit event's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditDetail {
    /// `{partner_reference}:{stage}`.
    pub event_id: String,
    pub stage: CreditStage,
    pub at: DateTime<Utc>,
    /// `{program}@{closing time}`.
    pub window: String,
    pub program: ProgramId,
    pub partner: PartnerId,
    pub partner_program: String,
    /// Masked unless the program shows member numbers in events.
    pub member: String,
    /// The sum of its requests' points.
    pub points: u64,
    /// The requests it credits, each of which has its own events.
    pub requests: Vec<RequestId>,
    /// Fixed when the credit was planned; every call to the partner uses it.
    pub partner_reference: PartnerReference,
    /// The partner's id for the credit, once credited.
    pub partner_transaction: Option<String>,
    /// Why it failed.
    pub reason: Option<Reason>,
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
        self.detail.event_id()
    }

    /// The detail of a points request's event.
    pub fn request(&self) -> Option<&RequestDetail> {
        match &self.detail {
            Detail::Request(d) => Some(d),
            _ => None,
        }
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

/// One write, as the store's change records tell it, and where the record
/// is in the store's record of changes (a DynamoDB stream's sequence
/// number), so a failed record can be retried from.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub position: String,
    pub write: Write,
}

/// The item one write changed, before (`None` when the write created it)
/// and after.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a request is most writes
pub enum Write {
    Request {
        before: Option<PointsRequest>,
        after: PointsRequest,
    },
    Link {
        before: Option<MemberLink>,
        after: MemberLink,
    },
    Credit {
        before: Option<WindowCredit>,
        after: WindowCredit,
    },
}

impl Change {
    /// A write of a points request.
    pub fn request(
        position: impl Into<String>,
        before: Option<PointsRequest>,
        after: PointsRequest,
    ) -> Self {
        Self {
            position: position.into(),
            write: Write::Request { before, after },
        }
    }
}

impl Write {
    /// The program whose item was written (whether it shows member numbers).
    pub fn program(&self) -> &ProgramId {
        match self {
            Write::Request { after, .. } => &after.program,
            Write::Link { after, .. } => &after.program,
            Write::Credit { after, .. } => after.window.program(),
        }
    }

    /// The request written, before and after, for a write of one.
    pub fn request(&self) -> Option<(Option<&PointsRequest>, &PointsRequest)> {
        match self {
            Write::Request { before, after } => Some((before.as_ref(), after)),
            _ => None,
        }
    }

    /// The events of this write.
    pub fn events(&self, members: MemberNumbers) -> Vec<Event> {
        match self {
            Write::Request { before, after } => request_events(before.as_ref(), after, members),
            Write::Link { before, after } => new_events(
                before.as_ref().map(|b| link_events(b, members)),
                link_events(after, members),
            ),
            Write::Credit { before, after } => new_events(
                before.as_ref().map(|b| credit_events(b, members)),
                credit_events(after, members),
            ),
        }
    }
}

/// The events of `after` whose ids `before` did not have.
fn new_events(before: Option<Vec<Event>>, after: Vec<Event>) -> Vec<Event> {
    let before = before.unwrap_or_default();
    after
        .into_iter()
        .filter(|e| !before.iter().any(|b| b.id() == e.id()))
        .collect()
}

/// The event of the latest change of `link` (none for a link of the
/// configuration that the partner's validation stored): each write of a
/// link that creates, changes or removes it stamps that change's time on
/// it, so the event is the same whichever later write it is read from.
pub fn link_events(link: &MemberLink, members: MemberNumbers) -> Vec<Event> {
    let (change, at, by, confirmed_by, member, previous) = if let Some(removed) = &link.removed {
        (
            LinkChangeKind::Unlinked,
            removed.at,
            removed.by.clone(),
            removed.confirmed_by.clone(),
            None,
            Some(removed.from.as_ref().unwrap_or(&link.member)),
        )
    } else if let (Some(at), Some(by)) = (link.linked_at, &link.linked_by) {
        match link.changed.as_ref().filter(|c| c.at == at) {
            Some(c) => (
                LinkChangeKind::Changed,
                at,
                by.clone(),
                c.confirmed_by.clone(),
                Some(&link.member),
                Some(&c.from),
            ),
            None => (
                LinkChangeKind::Linked,
                at,
                by.clone(),
                None,
                Some(&link.member),
                None,
            ),
        }
    } else {
        return Vec::new();
    };
    let detail_type = match change {
        LinkChangeKind::Linked => DetailType::MemberLinked,
        LinkChangeKind::Changed => DetailType::MemberLinkChanged,
        LinkChangeKind::Unlinked => DetailType::MemberUnlinked,
    };
    vec![Event {
        detail_type,
        time: at,
        detail: Detail::Link(LinkDetail {
            event_id: format!(
                "link:{}:{}:{}",
                link.program,
                link.recipient,
                at.timestamp_micros()
            ),
            change,
            at,
            program: link.program.clone(),
            recipient: link.recipient.clone(),
            member: member.map(|m| members.show(m)),
            previous_member: previous.map(|m| members.show(m)),
            by,
            confirmed_by,
        }),
    }]
}

/// The events of `credit`'s stages so far: planned (once its requests
/// moved into it; a credit left with none carries nothing), then credited
/// or failed. Each stage's fields are those fixed when it was reached.
pub fn credit_events(credit: &WindowCredit, members: MemberNumbers) -> Vec<Event> {
    let mut stages: Vec<(CreditStage, Option<String>, Option<Reason>)> = Vec::new();
    match &credit.state {
        CreditState::Planning | CreditState::Empty => return Vec::new(),
        CreditState::Planned
        | CreditState::Dispatching
        | CreditState::PartnerPending
        | CreditState::Unknown => stages.push((CreditStage::Planned, None, None)),
        CreditState::Credited { transaction } => {
            stages.push((CreditStage::Planned, None, None));
            stages.push((CreditStage::Credited, Some(transaction.clone()), None));
        }
        CreditState::Failed { reason } => {
            stages.push((CreditStage::Planned, None, None));
            stages.push((CreditStage::Failed, None, Some(reason.clone())));
        }
    }
    stages
        .into_iter()
        .map(|(stage, partner_transaction, reason)| {
            let at = match stage {
                CreditStage::Planned => credit.planned_at,
                _ => credit.settled_at.unwrap_or(credit.planned_at),
            };
            Event {
                detail_type: match stage {
                    CreditStage::Planned => DetailType::CreditPlanned,
                    CreditStage::Credited => DetailType::CreditCredited,
                    CreditStage::Failed => DetailType::CreditFailed,
                },
                time: at,
                detail: Detail::Credit(CreditDetail {
                    event_id: format!("{}:{}", credit.reference, stage.as_str()),
                    stage,
                    at,
                    window: credit.window.to_string(),
                    program: credit.window.program().clone(),
                    partner: credit.partner.clone(),
                    partner_program: credit.partner_program.clone(),
                    member: members.show(&credit.member),
                    points: credit.points.get(),
                    requests: credit.requests.clone(),
                    partner_reference: credit.reference.clone(),
                    partner_transaction,
                    reason,
                }),
            }
        })
        .collect()
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
                detail: Detail::Request(detail(after, i, line, members)),
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
) -> RequestDetail {
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
    RequestDetail {
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
            .map(|m| members.show(m)),
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
    #![allow(clippy::unwrap_used, clippy::panic)]

    use chrono::Duration;

    use super::*;
    use crate::partner::Destination;
    use crate::request::tests::sample;
    use crate::reversal::ReversalState;
    use crate::values::{MemberNumber, Points};

    fn types(events: &[Event]) -> Vec<(u32, &'static str)> {
        events
            .iter()
            .map(|e| (e.request().unwrap().sequence, e.detail_type.as_str()))
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
            assert_eq!(e.id(), format!("{id}:{}", e.request().unwrap().sequence));
            assert_eq!(e.time, e.request().unwrap().at);
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
        let credited = all[2].request().unwrap();
        assert_eq!(credited.points, Some(500));
        assert_eq!(credited.partner_transaction.as_deref(), Some("TX-1"));
        assert_eq!(credited.member.as_deref(), Some("******5678"));
        let partial = all[4].request().unwrap();
        assert_eq!(partial.state, StatusKind::Credited);
        let reversal = partial.reversal.as_ref().unwrap();
        assert_eq!((reversal.id.as_str(), reversal.points), ("a", 200));
        assert_eq!(reversal.partner_reversal.as_deref(), Some("R-a"));
        let full = all[6].request().unwrap();
        assert_eq!(full.state, StatusKind::Reversed);
        assert_eq!(full.points_reversed, 500);
    }

    #[test]
    fn a_program_may_show_member_numbers() {
        let writes = writes();
        let events = request_events(Some(&writes[2]), &writes[3], MemberNumbers::Shown);
        assert_eq!(
            events[0].request().unwrap().member.as_deref(),
            Some("SK12345678")
        );
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
        assert_eq!(events[0].request().unwrap().reason, Some(said));
        assert_eq!(events[0].request().unwrap().points, None);
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
        assert_eq!(made[0].request().unwrap().points, None);
        assert_eq!(made[0].request().unwrap().partner_transaction, None);
    }

    #[test]
    fn a_links_changes_are_events_and_its_validation_is_not() {
        use crate::enrollment::{LinkChange, LinkEvent, MemberValidation};
        let t = |s| DateTime::UNIX_EPOCH + Duration::seconds(s);
        let member = |m: &str| MemberNumber::parse(m).unwrap();
        let program = ProgramId::parse("sales").unwrap();
        let recipient = RecipientId::parse("0055g00000AAAA1").unwrap();
        let validation = |at| {
            Some(MemberValidation {
                valid: true,
                reason: None,
                at,
            })
        };
        let events = |before: Option<&MemberLink>, after: &MemberLink| {
            let write = Write::Link {
                before: before.cloned(),
                after: after.clone(),
            };
            let events = write.events(MemberNumbers::Masked);
            // Read again: identical.
            assert_eq!(events, write.events(MemberNumbers::Masked));
            events
                .into_iter()
                .map(|e| match e.detail {
                    Detail::Link(d) => (e.detail_type, d),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        // The configuration's link, stored with the partner's validation:
        // no change of link.
        let mut configured = MemberLink::new(
            program.clone(),
            recipient.clone(),
            member("SK11111111"),
            "Ada".into(),
            "Lovelace".into(),
        );
        configured.validation = validation(t(1));
        assert!(events(None, &configured).is_empty());
        let mut changed = configured.clone();
        changed.member = member("SK22222222");
        changed.validation = None;
        changed.linked_by = Some("ops-admin".into());
        changed.linked_at = Some(t(2));
        changed.changed = Some(LinkChange {
            from: member("SK11111111"),
            by: "ops-admin".into(),
            at: t(2),
            confirmed_by: Some("ops-admin2".into()),
        });
        let made = events(Some(&configured), &changed);
        assert_eq!(made.len(), 1);
        let (kind, d) = &made[0];
        assert_eq!(*kind, DetailType::MemberLinkChanged);
        assert_eq!(d.change, LinkChangeKind::Changed);
        assert_eq!(d.member.as_deref(), Some("******2222"));
        assert_eq!(d.previous_member.as_deref(), Some("******1111"));
        assert_eq!(d.confirmed_by.as_deref(), Some("ops-admin2"));
        assert_eq!(d.event_id, "link:sales:0055g00000AAAA1:2000000");
        // The new member's validation changes no link.
        let mut validated = changed.clone();
        validated.validation = validation(t(3));
        assert!(events(Some(&changed), &validated).is_empty());
        let mut removed = validated.clone();
        removed.removed = Some(LinkEvent {
            program: program.clone(),
            recipient: recipient.clone(),
            at: t(4),
            by: "ops-admin".into(),
            from: Some(member("SK22222222")),
            to: None,
            confirmed_by: Some("ops-admin2".into()),
        });
        let made = events(Some(&validated), &removed);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].0, DetailType::MemberUnlinked);
        assert_eq!(made[0].1.member, None);
        assert_eq!(made[0].1.previous_member.as_deref(), Some("******2222"));
        let mut anew = MemberLink::new(
            program,
            recipient,
            member("SK33333333"),
            "Ada".into(),
            "Lovelace".into(),
        );
        anew.linked_by = Some("source:demo".into());
        anew.linked_at = Some(t(5));
        let made = events(Some(&removed), &anew);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].0, DetailType::MemberLinked);
        assert_eq!(made[0].1.previous_member, None);
        assert_eq!(made[0].1.by, "source:demo");
    }

    fn credit(state: CreditState) -> WindowCredit {
        use crate::window::{CreditId, WindowId};
        let t = |s| DateTime::UNIX_EPOCH + Duration::seconds(s);
        let program = ProgramId::parse("sales").unwrap();
        let window = WindowId::new(&program, t(3_600));
        let partner = PartnerId::parse("sky").unwrap();
        let member = MemberNumber::parse("SK12345678").unwrap();
        WindowCredit {
            id: CreditId::consolidated(&window, &partner, &member, 1),
            window,
            partner,
            partner_program: "SKY".into(),
            member,
            member_name: None,
            reference: PartnerReference::parse("pf0000000009").unwrap(),
            points: Points::new(700).unwrap(),
            requests: vec![sample().id],
            settled_at: state.is_settled().then(|| t(3_700)),
            state,
            attempts: 0,
            attempt_at: None,
            partner_transaction: None,
            planned_at: t(3_601),
            unsettled_since: None,
            version: 0,
        }
    }

    #[test]
    fn a_window_credit_is_planned_then_credited_or_failed() {
        let credited = CreditState::Credited {
            transaction: "TX-9".into(),
        };
        let states = [
            CreditState::Planning,
            CreditState::Planned,
            CreditState::Dispatching,
            CreditState::Unknown,
            credited,
        ];
        let mut made = Vec::new();
        let mut before: Option<WindowCredit> = None;
        for state in states {
            let after = credit(state);
            made.extend(
                Write::Credit {
                    before: before.clone(),
                    after: after.clone(),
                }
                .events(MemberNumbers::Masked),
            );
            before = Some(after);
        }
        let kinds: Vec<_> = made.iter().map(|e| e.detail_type).collect();
        assert_eq!(
            kinds,
            [DetailType::CreditPlanned, DetailType::CreditCredited]
        );
        // Rebuilt from the last write: the same events.
        let last = before.unwrap();
        assert_eq!(credit_events(&last, MemberNumbers::Masked), made);
        let Detail::Credit(planned) = &made[0].detail else {
            panic!("{made:?}")
        };
        assert_eq!(planned.event_id, "pf0000000009:planned");
        assert_eq!(planned.partner_transaction, None);
        assert_eq!(planned.member, "******5678");
        assert_eq!((planned.points, planned.requests.len()), (700, 1));
        let Detail::Credit(done) = &made[1].detail else {
            panic!("{made:?}")
        };
        assert_eq!(done.event_id, "pf0000000009:credited");
        assert_eq!(done.partner_transaction.as_deref(), Some("TX-9"));
        assert_eq!(made[1].time, last.settled_at.unwrap());

        let failed = credit(CreditState::Failed {
            reason: Reason::new(ReasonCode::BudgetExhausted, "no"),
        });
        let kinds: Vec<_> = credit_events(&failed, MemberNumbers::Masked)
            .iter()
            .map(|e| e.detail_type)
            .collect();
        assert_eq!(kinds, [DetailType::CreditPlanned, DetailType::CreditFailed]);
        // A credit left with no request carries nothing.
        assert!(credit_events(&credit(CreditState::Empty), MemberNumbers::Masked).is_empty());
    }

    #[test]
    fn every_detail_type_has_its_name() {
        for t in DetailType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
