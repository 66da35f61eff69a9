//! The events function against the embedded bus: each change's events, in
//! order, none lost when the bus refuses entries or fails, and a change
//! read again makes identical events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::events::{Change, Event};
use pointsflow_core::partner::Destination;
use pointsflow_core::ports::{PublishCallback, QueueError};
use pointsflow_core::program::Program;
use pointsflow_core::request::{NewRequest, PointsRequest, Recipient, SourceEvent, Status};
use pointsflow_core::values::{
    EventType, IdempotencyKey, MemberNumber, PartnerId, PartnerReference, Points, ProgramId,
    RecipientId, SourceId,
};
use pointsflow_events::{Events, EventsPorts, SEND_ATTEMPTS, StatusCallbacks};
use pointsflow_memory::{MemoryBus, StaticCatalog};

fn program(id: &str, show_member: bool) -> Program {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "sources": ["demo"],
        "currency": "USD",
        "points": {"rule": "given"},
        "budget": 1_000_000,
        "destination": {"partner": "sky", "partner_program": "SKY"},
        "transfer": {"mode": "realtime"},
        "events_show_member": show_member,
    }))
    .unwrap()
}

fn at(s: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + Duration::seconds(1_795_795_200 + s)
}

/// The writes of one real-time credit of request `key` in `program`: its
/// receipt, its reservation, its call and its credit.
fn credit(program: &str, key: &str) -> Vec<PointsRequest> {
    let mut r = NewRequest {
        source: SourceId::parse("demo").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        program: ProgramId::parse(program).unwrap(),
        recipient: Recipient {
            id: RecipientId::parse("0055g00000DemoAA1").unwrap(),
            email: None,
        },
        award: None,
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").unwrap(),
            id: Some(format!("006{key}")),
            occurred_at: at(0),
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(at(0));
    let mut writes = vec![r.clone()];
    r.points = Some(Points::new(250).unwrap());
    r.member = Some(MemberNumber::parse("SK12345678").unwrap());
    r.destination = Some(Destination {
        partner: PartnerId::parse("sky").unwrap(),
        partner_program: "SKY".into(),
    });
    r.partner_reference = Some(PartnerReference::parse("pf0000000042").unwrap());
    r.transition(Status::Reserved, at(1), "reserved").unwrap();
    writes.push(r.clone());
    r.transition(Status::Dispatching, at(2), "calling").unwrap();
    writes.push(r.clone());
    r.partner_transaction = Some("TX-42".into());
    r.transition(Status::Credited, at(3), "credited").unwrap();
    writes.push(r);
    writes
}

/// The changes of `writes`, as a stream tells them.
fn changes(writes: &[PointsRequest], first_position: u64) -> Vec<Change> {
    writes
        .iter()
        .enumerate()
        .map(|(i, after)| {
            Change::request(
                format!("{:021}", first_position + i as u64),
                i.checked_sub(1).map(|p| writes[p].clone()),
                after.clone(),
            )
        })
        .collect()
}

fn events_with(bus: Arc<MemoryBus>, programs: Vec<Program>) -> Events {
    Events::new(EventsPorts {
        bus,
        programs: Arc::new(StaticCatalog::new(programs)),
        callbacks: None,
    })
}

/// A callbacks queue that keeps what it takes and refuses the next `n`.
#[derive(Default)]
struct Callbacks {
    refuse: std::sync::atomic::AtomicUsize,
    taken: std::sync::Mutex<Vec<CallbackMessage>>,
}

#[async_trait::async_trait]
impl PublishCallback for Callbacks {
    async fn publish_callback(&self, message: &CallbackMessage) -> Result<(), QueueError> {
        use std::sync::atomic::Ordering;
        if self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(QueueError::Unavailable("throttled".into()));
        }
        self.taken.lock().unwrap().push(message.clone());
        Ok(())
    }
}

fn by_id(events: &[Event]) -> BTreeMap<String, Event> {
    events
        .iter()
        .map(|e| (e.id().to_owned(), e.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn each_change_puts_its_events_in_order() {
    let bus = Arc::new(MemoryBus::new());
    let handler = events_with(bus.clone(), vec![program("sales", false)]);
    let writes = credit("sales", "deal-1");
    let published = handler.publish(&changes(&writes, 1)).await;
    assert_eq!(published.failed_from, None);
    assert_eq!(published.events, 3);
    let sent = bus.events();
    let kinds: Vec<_> = sent.iter().map(|e| e.detail_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited"
        ]
    );
    let credited = sent[2].request().unwrap();
    assert_eq!(credited.member.as_deref(), Some("******5678"));
    assert_eq!(credited.partner_transaction.as_deref(), Some("TX-42"));
    assert_eq!(credited.points, Some(250));
    // A record read again (the stream delivers at least once) makes the
    // very same events.
    handler.publish(&changes(&writes, 1)).await;
    let again = bus.events();
    assert_eq!(again[3..], sent[..]);
}

#[tokio::test(start_paused = true)]
async fn a_program_may_show_member_numbers() {
    let bus = Arc::new(MemoryBus::new());
    let handler = events_with(bus.clone(), vec![program("sales", true)]);
    handler
        .publish(&changes(&credit("sales", "deal-2"), 1))
        .await;
    assert_eq!(
        bus.events()[2].request().unwrap().member.as_deref(),
        Some("SK12345678")
    );
}

#[tokio::test(start_paused = true)]
async fn entries_the_bus_refuses_are_sent_again() {
    let bus = Arc::new(MemoryBus::new());
    let handler = events_with(bus.clone(), vec![program("sales", false)]);
    let mut all = Vec::new();
    for n in 0..5 {
        all.extend(changes(&credit("sales", &format!("deal-{n}")), 1 + 4 * n));
    }
    // Refused entries and a failed call, fewer than the attempts allow.
    bus.refuse_entries(4);
    bus.fail_calls(1);
    let published = handler.publish(&all).await;
    assert_eq!(published.failed_from, None);
    assert_eq!(published.events, 15);
    let sent = bus.events();
    assert_eq!(sent.len(), 15);
    assert_eq!(by_id(&sent).len(), 15);
    // Each event once; a refused one went later than its batch (the bus
    // keeps no order: consumers order a request's events by `sequence`).
    let expected: Vec<Event> = all.iter().flat_map(|c| handler.events_of(c)).collect();
    assert_eq!(by_id(&sent), by_id(&expected));
}

#[tokio::test(start_paused = true)]
async fn a_bus_that_stays_down_loses_nothing() {
    let bus = Arc::new(MemoryBus::new());
    let handler = events_with(bus.clone(), vec![program("sales", false)]);
    let first = changes(&credit("sales", "deal-a"), 1);
    let second = changes(&credit("sales", "deal-b"), 5);
    let all: Vec<Change> = first.iter().chain(&second).cloned().collect();
    // The first call goes through; then the bus is down for longer than
    // one invocation tries.
    let published = handler.publish(&all[..2]).await;
    assert_eq!(published.failed_from, None);
    bus.fail_calls(SEND_ATTEMPTS as usize);
    let published = handler.publish(&all[2..]).await;
    assert_eq!(published.events, 0);
    // all[2] (the call) has no event: the stream retries from the credit.
    assert!(handler.events_of(&all[2]).is_empty());
    assert_eq!(
        published.failed_from.as_deref(),
        Some(all[3].position.as_str())
    );
    // The stream retries from that record.
    let from = all
        .iter()
        .position(|c| Some(&c.position) == published.failed_from.as_ref())
        .unwrap();
    let retried = handler.publish(&all[from..]).await;
    assert_eq!(retried.failed_from, None);
    let expected: Vec<Event> = all.iter().flat_map(|c| handler.events_of(c)).collect();
    let expected = by_id(&expected);
    assert_eq!(expected.len(), 6);
    assert_eq!(by_id(&bus.events()), expected);
}

/// Requests through every kind of event: a credit reversed in three
/// steps (one refused), a request that waited for enrollment, was held,
/// approved and scheduled and then failed, a clawback, and a rejection.
fn every_kind() -> Vec<Change> {
    use pointsflow_core::reason::{Reason, ReasonCode};
    use pointsflow_core::reversal::ReversalState;
    let reason = |code: ReasonCode| Reason::new(code, "because");
    let mut all = Vec::new();
    let mut push = |writes: Vec<PointsRequest>| {
        let n = all.len() as u64;
        all.extend(changes(&writes, 100 * n + 1));
    };
    // Credited, then reversed in part, refused, and in full.
    let mut writes = credit("sales", "deal-k1");
    let mut r = writes.pop().unwrap();
    writes.push(r.clone());
    r.request_reversal(
        "a",
        Some(Points::new(100).unwrap()),
        "deal reduced",
        "ops-anna",
        at(10),
    )
    .unwrap();
    r.settle_reversal(
        "a",
        ReversalState::Done {
            partner_reversal: "R-a".into(),
        },
        at(11),
    )
    .unwrap();
    r.request_reversal(
        "b",
        Some(Points::new(50).unwrap()),
        "again",
        "ops-anna",
        at(12),
    )
    .unwrap();
    r.settle_reversal(
        "b",
        ReversalState::Refused {
            reason: reason(ReasonCode::partner("too_late")),
        },
        at(13),
    )
    .unwrap();
    writes.push(r.clone());
    r.request_reversal("c", None, "deal lost", "source:demo", at(14))
        .unwrap();
    r.settle_reversal(
        "c",
        ReversalState::Done {
            partner_reversal: "R-c".into(),
        },
        at(15),
    )
    .unwrap();
    writes.push(r.clone());
    let credited_id = r.id.clone();
    push(writes);
    // Waits, then is scheduled and fails.
    let mut r = credit("sales", "deal-k2").remove(0);
    let mut writes = vec![r.clone()];
    for (to, s) in [
        (
            Status::AwaitingEnrollment {
                reason: reason(ReasonCode::NotEnrolled),
            },
            1,
        ),
        (
            Status::Held {
                reason: reason(ReasonCode::ProgramPaused),
            },
            2,
        ),
        (
            Status::AwaitingApproval {
                reason: reason(ReasonCode::ApprovalRequired),
            },
            3,
        ),
    ] {
        r.transition(to, at(s), "waits").unwrap();
        writes.push(r.clone());
    }
    r.points = Some(Points::new(250).unwrap());
    r.transition(Status::Reserved, at(4), "reserved").unwrap();
    r.transition(
        Status::Scheduled {
            window: "sales@2026-11-27T18:00Z".into(),
        },
        at(4),
        "held for the window",
    )
    .unwrap();
    writes.push(r.clone());
    r.transition(Status::Dispatching, at(5), "calling").unwrap();
    r.transition(
        Status::Failed {
            reason: reason(ReasonCode::partner("member_blocked")),
        },
        at(6),
        "failed",
    )
    .unwrap();
    writes.push(r);
    push(writes);
    // A clawback that took the points back, and a plain rejection.
    let mut r = credit("sales", "deal-k3").remove(0);
    r.undoes = Some(credited_id);
    let mut writes = vec![r.clone()];
    r.transition(
        Status::Rejected {
            reason: reason(ReasonCode::ClawbackReversed),
        },
        at(20),
        "clawed back",
    )
    .unwrap();
    writes.push(r);
    push(writes);
    let mut r = credit("sales", "deal-k4").remove(0);
    let mut writes = vec![r.clone()];
    r.transition(
        Status::Rejected {
            reason: reason(ReasonCode::BudgetExhausted),
        },
        at(1),
        "no budget",
    )
    .unwrap();
    writes.push(r);
    push(writes);
    let first = 100 * all.len() as u64 + 1;
    all.extend(link_and_credit_changes(first));
    all
}

/// A member link created, changed and removed; a window credit planned and
/// credited, and another failed.
fn link_and_credit_changes(first_position: u64) -> Vec<Change> {
    use pointsflow_core::enrollment::{LinkChange, LinkEvent, MemberLink};
    use pointsflow_core::events::Write;
    use pointsflow_core::reason::{Reason, ReasonCode};
    use pointsflow_core::window::{CreditId, CreditState, WindowCredit, WindowId};
    let member = |m: &str| MemberNumber::parse(m).unwrap();
    let program = ProgramId::parse("sales").unwrap();
    let recipient = RecipientId::parse("0055g00000AAAA1").unwrap();
    let mut linked = MemberLink::new(
        program.clone(),
        recipient.clone(),
        member("SK11111111"),
        "Ada".into(),
        "Lovelace".into(),
    );
    linked.linked_by = Some("source:demo".into());
    linked.linked_at = Some(at(30));
    let mut changed = linked.clone();
    changed.member = member("SK22222222");
    changed.linked_by = Some("ops-admin".into());
    changed.linked_at = Some(at(31));
    changed.changed = Some(LinkChange {
        from: member("SK11111111"),
        by: "ops-admin".into(),
        at: at(31),
        confirmed_by: Some("ops-admin2".into()),
    });
    let mut removed = changed.clone();
    removed.removed = Some(LinkEvent {
        program: program.clone(),
        recipient,
        at: at(32),
        by: "ops-admin".into(),
        from: Some(member("SK22222222")),
        to: None,
        confirmed_by: Some("ops-admin2".into()),
    });
    let window = WindowId::new(&program, at(3_600));
    let partner = PartnerId::parse("sky").unwrap();
    let credit = |n: u32, state: CreditState| WindowCredit {
        id: CreditId::consolidated(&window, &partner, &member("SK12345678"), n),
        window: window.clone(),
        partner: partner.clone(),
        partner_program: "SKY".into(),
        member: member("SK12345678"),
        member_name: None,
        reference: PartnerReference::parse(&format!("pf000000010{n}")).unwrap(),
        points: Points::new(700).unwrap(),
        requests: vec![credit_request_id()],
        settled_at: state.is_settled().then(|| at(3_700)),
        state,
        attempts: 1,
        attempt_at: None,
        partner_transaction: None,
        planned_at: at(3_601),
        unsettled_since: None,
        version: 0,
    };
    let writes = [
        Write::Link {
            before: None,
            after: linked.clone(),
        },
        Write::Link {
            before: Some(linked),
            after: changed.clone(),
        },
        Write::Link {
            before: Some(changed),
            after: removed,
        },
        Write::Credit {
            before: Some(credit(1, CreditState::Planning)),
            after: credit(1, CreditState::Planned),
        },
        Write::Credit {
            before: Some(credit(1, CreditState::Dispatching)),
            after: credit(
                1,
                CreditState::Credited {
                    transaction: "TX-W1".into(),
                },
            ),
        },
        Write::Credit {
            before: None,
            after: credit(
                2,
                CreditState::Failed {
                    reason: Reason::new(ReasonCode::BudgetExhausted, "because"),
                },
            ),
        },
    ];
    writes
        .into_iter()
        .enumerate()
        .map(|(i, write)| Change {
            position: format!("{:021}", first_position + i as u64),
            write,
        })
        .collect()
}

fn credit_request_id() -> pointsflow_core::values::RequestId {
    credit("sales", "deal-w1").remove(0).id
}

/// Every event's `detail` is what `docs/events.schema.json` says, checked
/// by a JSON Schema validator (Python's `jsonschema`, pinned in the test
/// requirements), for every kind of event.
#[tokio::test(start_paused = true)]
async fn every_kind_of_event_matches_the_published_schema() {
    let bus = Arc::new(MemoryBus::new());
    let handler = events_with(bus.clone(), vec![program("sales", false)]);
    let published = handler.publish(&every_kind()).await;
    assert_eq!(published.failed_from, None);
    let sent = bus.events();
    let kinds: std::collections::BTreeSet<_> = sent.iter().map(|e| e.detail_type).collect();
    assert_eq!(
        kinds,
        pointsflow_core::events::DetailType::ALL
            .into_iter()
            .collect(),
        "every kind of event is made here"
    );
    let details: Vec<serde_json::Value> = sent
        .iter()
        .map(|e| serde_json::from_str(&e.detail_json()).unwrap())
        .collect();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.schema.json");
    let verdict = pointsflow_harness::python::run(
        r#"
import json, sys
from jsonschema import Draft202012Validator, FormatChecker
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=FormatChecker())
errors = [f"{d['event_id']}: {e.message}" for d in json.load(sys.stdin) for e in validator.iter_errors(d)]
print("\n".join(errors) or "valid")
"#,
        &[schema],
        serde_json::to_string(&details).unwrap().as_bytes(),
    );
    assert_eq!(verdict, "valid");
    // And the schema can fail: a detail with a key it does not know.
    let mut extra = details[0].clone();
    extra["surprise"] = serde_json::json!(1);
    let verdict = pointsflow_harness::python::run(
        r#"
import json, sys
from jsonschema import Draft202012Validator
print("valid" if Draft202012Validator(json.load(open(sys.argv[1]))).is_valid(json.load(sys.stdin)) else "invalid")
"#,
        &[schema],
        extra.to_string().as_bytes(),
    );
    assert_eq!(verdict, "invalid");
}

#[tokio::test(start_paused = true)]
async fn a_final_status_is_queued_for_its_callback_from_the_same_change() {
    let bus = Arc::new(MemoryBus::new());
    let queue = Arc::new(Callbacks::default());
    let handler = Events::new(EventsPorts {
        bus: bus.clone(),
        programs: Arc::new(StaticCatalog::new(vec![program("sales", false)])),
        callbacks: Some(StatusCallbacks {
            queue: queue.clone(),
            sources: [SourceId::parse("demo").unwrap()].into(),
        }),
    });
    let first = changes(&credit("sales", "deal-c"), 1);
    let second = changes(&credit("sales", "deal-d"), 5);
    let all: Vec<Change> = first.iter().chain(&second).cloned().collect();
    // The queue refuses longer than one invocation tries: the first
    // credit's change is reported failed, and nothing after it is queued.
    queue
        .refuse
        .store(SEND_ATTEMPTS as usize, std::sync::atomic::Ordering::SeqCst);
    let published = handler.publish(&all).await;
    let taken = queue.taken.lock().unwrap().clone();
    assert!(taken.is_empty(), "{taken:?}");
    assert_eq!(
        published.failed_from.as_deref(),
        Some(all[3].position.as_str())
    );
    // The stream retries from that record: both credits' callbacks go.
    let retried = handler.publish(&all[3..]).await;
    assert_eq!(retried.failed_from, None);
    let taken = queue.taken.lock().unwrap().clone();
    let ids: Vec<String> = taken.iter().map(CallbackMessage::event_id).collect();
    // One callback per credit, under the credited event's id.
    let credited: Vec<String> = bus
        .events()
        .iter()
        .filter(|e| e.detail_type.as_str() == "Points Credited")
        .map(|e| e.id().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, credited);
    assert_eq!(ids.len(), 2);
}
