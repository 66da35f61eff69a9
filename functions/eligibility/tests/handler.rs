//! The eligibility handler, fed SQS events as Lambda receives them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_core::approval::ApprovalDecision;
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ledger::{AccountId, CapKey, Entry};
use pointsflow_core::money::{Currency, Money};
use pointsflow_core::partner::Destination;
use pointsflow_core::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, normalise_name,
};
use pointsflow_core::ports::{
    Clock, Enrollments, LedgerRead, LedgerWrite, PartnerConnector, ProgramStore, RequestCreate,
    RequestGet, RequestUpdate, StoreError, StoredProgram, WaitingRequests,
};
use pointsflow_core::program::{PointsRule, Program, ProgramState, TransferMode, WhenPaused};
use pointsflow_core::reason::Reason;
use pointsflow_core::reason::ReasonCode;
use pointsflow_core::request::{
    Award, NewRequest, PointsRequest, Recipient, SourceEvent, StatusKind,
};
use pointsflow_core::values::{
    EventType, IdempotencyKey, MemberNumber, PartnerId, PartnerReference, Points, ProgramId,
    RecipientId, SourceId,
};
use pointsflow_eligibility::{Eligibility, EligibilityPorts};
use pointsflow_memory::{
    ManualClock, MemoryEnrollments, MemoryLedger, MemoryProgramStore, MemoryQueue,
    MemoryRequestStore, QueueConfig, StaticCatalog,
};
use pointsflow_usecases::catalog::LiveCatalog;
use serde_json::{Value, json};

struct Harness {
    ports: EligibilityPorts,
    eligibility: Eligibility,
    store: Arc<MemoryRequestStore>,
    ledger: Arc<MemoryLedger>,
    dispatch: Arc<MemoryQueue>,
    enrollments: Arc<MemoryEnrollments>,
    program_store: Arc<MemoryProgramStore>,
    partner: Arc<Directory>,
    clock: Arc<ManualClock>,
}

/// A partner's member directory: Ada Lovelace holds every `SKY...` number.
/// It only validates members; eligibility never credits.
#[derive(Default)]
struct Directory {
    validations: AtomicU32,
}

#[async_trait::async_trait]
impl PartnerConnector for Directory {
    fn idempotent_on_reference(&self) -> bool {
        true
    }

    async fn credit(&self, _: &CreditInstruction) -> CreditOutcome {
        CreditOutcome::Unknown {
            detail: "eligibility never credits".into(),
        }
    }

    async fn status(&self, _: &PartnerReference, _: Option<Duration>) -> CreditOutcome {
        CreditOutcome::NotFound
    }

    async fn reverse(
        &self,
        _: &pointsflow_core::partner::ReversalInstruction,
    ) -> pointsflow_core::partner::ReversalOutcome {
        pointsflow_core::partner::ReversalOutcome::Refused(pointsflow_core::reason::Reason::new(
            ReasonCode::parse("not_supported"),
            "this test partner does not reverse",
        ))
    }

    async fn validate_member(&self, check: &MemberCheck) -> MemberCheckOutcome {
        self.validations.fetch_add(1, Ordering::SeqCst);
        if !check.member.as_str().starts_with("SKY") {
            return MemberCheckOutcome::Invalid(Reason::new(
                ReasonCode::partner("unknown_member"),
                "no such member",
            ));
        }
        if normalise_name(&check.first_name) != "ADA"
            || normalise_name(&check.last_name) != "LOVELACE"
        {
            return MemberCheckOutcome::Invalid(Reason::new(
                ReasonCode::partner("name_mismatch"),
                "the names do not match the member's",
            ));
        }
        MemberCheckOutcome::Valid
    }
}

fn program(id: &str, state: ProgramState, budget: u64, cap: Option<u64>) -> Program {
    Program {
        id: ProgramId::parse(id).unwrap(),
        name: id.into(),
        state,
        sources: vec![SourceId::parse("crm").unwrap()],
        event_types: vec![],
        currency: Currency::parse("USD").unwrap(),
        points: PointsRule::Rate {
            points: Points::new(2).unwrap(),
            per: 100.into(),
        },
        conditions: vec![],
        min_points_per_request: None,
        max_points_per_request: None,
        member_format: None,
        daily_cap_per_recipient: None,
        approval_threshold: None,
        second_approval_threshold: None,
        reversal_limit: None,
        budget_alert_below: None,
        events_show_member: false,
        wait_for_enrollment_hours: None,
        when_paused: Default::default(),
        on_undo: Default::default(),
        time_zone: pointsflow_core::program::Tz::UTC,
        monthly_cap_per_recipient: cap.map(|c| Points::new(c).unwrap()),
        budget: Points::new(budget).unwrap(),
        destination: Destination {
            partner: PartnerId::parse("air").unwrap(),
            partner_program: "SKY".into(),
        },
        transfer: TransferMode::Realtime,
    }
}

async fn harness() -> Harness {
    let programs = vec![
        program("sales", ProgramState::Active, 1_000, Some(600)),
        program("paused", ProgramState::Paused, 1_000, None),
        Program {
            when_paused: WhenPaused::Hold,
            ..program("holds", ProgramState::Paused, 1_000, None)
        },
        Program {
            wait_for_enrollment_hours: Some(24),
            ..program("waits", ProgramState::Active, 10_000, None)
        },
        Program {
            approval_threshold: Some(Points::new(500).unwrap()),
            second_approval_threshold: None,
            reversal_limit: None,
            ..program("approvals", ProgramState::Active, 10_000, None)
        },
        Program {
            daily_cap_per_recipient: Some(Points::new(500).unwrap()),
            time_zone: "Asia/Tokyo".parse().unwrap(),
            ..program("tokyo", ProgramState::Active, 100_000, Some(1_000))
        },
    ];
    let ledger = Arc::new(MemoryLedger::new());
    for p in &programs {
        ledger
            .apply(&[Entry::fund(
                &p.id,
                "initial",
                p.budget,
                DateTime::UNIX_EPOCH,
            )])
            .await
            .unwrap();
    }
    let links = [
        ("sales", "005A"),
        ("sales", "005B"),
        ("paused", "005A"),
        ("tokyo", "005A"),
        ("holds", "005A"),
        ("approvals", "005A"),
    ]
    .map(|(p, r)| MemberLink {
        program: ProgramId::parse(p).unwrap(),
        recipient: RecipientId::parse(r).unwrap(),
        member: MemberNumber::parse(&format!("SKY{r}")).unwrap(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        validation: None,
        linked_by: None,
        linked_at: None,
        changed: None,
        removed: None,
    });
    let store = Arc::new(MemoryRequestStore::new());
    let enrollments = Arc::new(MemoryEnrollments::new(links));
    // The configuration's programs under those applied since, reloaded at
    // every refresh.
    let program_store = Arc::new(MemoryProgramStore::new());
    let catalog = Arc::new(
        LiveCatalog::load(programs, program_store.clone(), Duration::ZERO)
            .await
            .unwrap(),
    );
    let partner = Arc::new(Directory::default());
    let dispatch = Arc::new(MemoryQueue::new(
        QueueConfig {
            name: "dispatch".into(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            retention: pointsflow_memory::DEFAULT_RETENTION,
        },
        None,
    ));
    let manual = Arc::new(ManualClock::new(DateTime::UNIX_EPOCH));
    let clock: Arc<dyn Clock> = manual.clone();
    let ports = EligibilityPorts {
        get: store.clone(),
        waiting: store.clone(),
        partners: HashMap::from([(
            PartnerId::parse("air").unwrap(),
            partner.clone() as Arc<dyn PartnerConnector>,
        )]),
        update: store.clone(),
        ledger: ledger.clone(),
        ledger_read: ledger.clone(),
        programs: catalog,
        enrollments: enrollments.clone(),
        dispatch_queue: dispatch.clone(),
        schedules: Arc::new(pointsflow_memory::MemorySchedules::new()),
        clock,
        ids: Arc::new(pointsflow_core::time::RandomIds),
    };
    let eligibility = Eligibility::new(ports.clone());
    Harness {
        enrollments,
        program_store,
        partner,
        clock: manual,
        ports,
        eligibility,
        store,
        ledger,
        dispatch,
    }
}

async fn submit(
    h: &Harness,
    key: &str,
    program: &str,
    recipient: &str,
    amount: &str,
) -> PointsRequest {
    submit_at(h, key, program, recipient, amount, DateTime::UNIX_EPOCH).await
}

/// A request accepted at `at`.
async fn submit_at(
    h: &Harness,
    key: &str,
    program: &str,
    recipient: &str,
    amount: &str,
    at: DateTime<Utc>,
) -> PointsRequest {
    let request = new_request(key, program, recipient, amount, at);
    h.store.create(&request).await.unwrap();
    request
}

/// A request accepted at `at`, not stored.
fn new_request(
    key: &str,
    program: &str,
    recipient: &str,
    amount: &str,
    at: DateTime<Utc>,
) -> PointsRequest {
    NewRequest {
        source: SourceId::parse("crm").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        program: ProgramId::parse(program).unwrap(),
        recipient: Recipient {
            id: RecipientId::parse(recipient).unwrap(),
            email: None,
        },
        award: Some(Award::Amount(
            Money::parse(amount, Currency::parse("USD").unwrap()).unwrap(),
        )),
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").unwrap(),
            id: None,
            occurred_at: DateTime::UNIX_EPOCH,
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(at)
}

/// The fixture, with one record per body.
fn sqs_event(bodies: &[String]) -> LambdaEvent<SqsEvent> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/sqs-event.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut raw: Value = serde_json::from_str(&text).unwrap();
    let template = raw["Records"][0].clone();
    raw["Records"] = Value::Array(
        bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut r = template.clone();
                r["messageId"] = json!(format!("msg-{i}"));
                r["body"] = json!(body);
                r
            })
            .collect(),
    );
    LambdaEvent::new(serde_json::from_value(raw).unwrap(), Context::default())
}

fn message(r: &PointsRequest) -> String {
    json!({"request_id": r.id}).to_string()
}

async fn state(h: &Harness, r: &PointsRequest) -> PointsRequest {
    h.store.get(&r.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_eligible_request_is_reserved_and_sent_to_dispatch() {
    let h = harness().await;
    let r = submit(&h, "deal-1", "sales", "005A", "12550.00").await;
    let response = h
        .eligibility
        .handle(sqs_event(&[message(&r)]))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let after = state(&h, &r).await;
    assert_eq!(after.state(), StatusKind::Reserved);
    assert_eq!(after.points.unwrap().get(), 251);
    assert_eq!(after.member.unwrap().as_str(), "SKY005A");
    assert_eq!(h.dispatch.depth(), 1);
    let budget = h
        .ledger
        .balance(&AccountId::budget(&ProgramId::parse("sales").unwrap()))
        .await
        .unwrap();
    assert_eq!((budget.debits_posted, budget.debits_pending), (251, 0));
}

#[tokio::test]
async fn a_duplicate_delivery_reserves_once() {
    let h = harness().await;
    let r = submit(&h, "deal-1", "sales", "005A", "12550.00").await;
    let response = h
        .eligibility
        .handle(sqs_event(&[message(&r), message(&r)]))
        .await
        .unwrap();
    // Concurrent twins: one wins, the other may be told to retry, never both reserve.
    assert!(response.batch_item_failures.len() <= 1);
    h.eligibility
        .handle(sqs_event(&[message(&r)]))
        .await
        .unwrap();
    assert_eq!(h.ledger.entries_for(&r.id).await.unwrap().len(), 1);
    let budget = h
        .ledger
        .balance(&AccountId::budget(&ProgramId::parse("sales").unwrap()))
        .await
        .unwrap();
    assert_eq!(budget.debits_posted, 251, "spent once, not twice");
    h.ledger.snapshot().unwrap().check().unwrap();
}

#[tokio::test]
async fn refusals_carry_a_stable_reason() {
    let h = harness().await;
    let cases = [
        ("paused", "paused", "005A", "100.00", "program_paused"),
        ("unenrolled", "sales", "005Z", "100.00", "not_enrolled"),
        ("tiny", "sales", "005A", "10.00", "zero_points"),
        (
            "over-cap",
            "sales",
            "005A",
            "35000.00",
            "monthly_cap_reached",
        ),
    ];
    for (key, program, recipient, amount, code) in cases {
        let r = submit(&h, key, program, recipient, amount).await;
        let response = h
            .eligibility
            .handle(sqs_event(&[message(&r)]))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let after = state(&h, &r).await;
        assert_eq!(after.state(), StatusKind::Rejected, "{key}");
        assert_eq!(after.status.reason().unwrap().code, code, "{key}");
        assert!(
            h.ledger.entries_for(&r.id).await.unwrap().is_empty(),
            "{key} reserved something"
        );
    }
    assert_eq!(h.dispatch.depth(), 0);
}

#[tokio::test]
async fn the_budget_runs_out_cleanly() {
    let h = harness().await;
    // 1,000 points of budget and 600 per recipient per month.
    let requests = [
        submit(&h, "d0", "sales", "005A", "25000.00").await,
        submit(&h, "d1", "sales", "005B", "25000.00").await,
        submit(&h, "d2", "sales", "005B", "100.00").await,
    ];
    for r in &requests {
        h.eligibility
            .handle(sqs_event(&[message(r)]))
            .await
            .unwrap();
    }
    let states = states_of(&h, &requests).await;
    assert_eq!(states[0], (StatusKind::Reserved, None));
    assert_eq!(states[1], (StatusKind::Reserved, None));
    assert_eq!(
        states[2],
        (StatusKind::Rejected, Some("budget_exhausted".into()))
    );
    let budget = h
        .ledger
        .balance(&AccountId::budget(&ProgramId::parse("sales").unwrap()))
        .await
        .unwrap();
    assert_eq!(budget.available(), 0);
    h.ledger.snapshot().unwrap().check().unwrap();
}

fn link(program: &str, recipient: &str, member: &str, first: &str, last: &str) -> MemberLink {
    MemberLink {
        program: ProgramId::parse(program).unwrap(),
        recipient: RecipientId::parse(recipient).unwrap(),
        member: MemberNumber::parse(member).unwrap(),
        first_name: first.into(),
        last_name: last.into(),
        validation: None,
        linked_by: None,
        linked_at: None,
        changed: None,
        removed: None,
    }
}

#[tokio::test]
async fn an_unlinked_recipient_waits_for_enrollment_until_linked_or_too_late() {
    let h = harness().await;
    let deliver = |r: &PointsRequest| h.eligibility.handle(sqs_event(&[message(r)]));
    let program = ProgramId::parse("waits").unwrap();
    let first = submit(&h, "w-1", "waits", "005W", "10000.00").await;
    let late = submit(&h, "w-2", "waits", "005L", "10000.00").await;
    deliver(&first).await.unwrap();
    deliver(&late).await.unwrap();
    for r in [&first, &late] {
        let waiting = state(&h, r).await;
        assert_eq!(waiting.state(), StatusKind::AwaitingEnrollment);
        let reason = waiting.status.reason().unwrap();
        assert_eq!(reason.code, "awaiting_enrollment");
        assert!(
            reason.message.contains("1970-01-02T00:00:00Z"),
            "{}",
            reason.message
        );
        assert!(h.ledger.entries_for(&r.id).await.unwrap().is_empty());
    }
    // A delivery while still unlinked changes nothing.
    deliver(&first).await.unwrap();
    assert_eq!(state(&h, &first).await.version, 1);
    let mut waiting = h
        .store
        .waiting(&program, StatusKind::AwaitingEnrollment, None)
        .await
        .unwrap();
    let mut expected = vec![first.id.clone(), late.id.clone()];
    waiting.sort();
    expected.sort();
    assert_eq!(waiting, expected);

    // Linked: the released request is validated with the partner and reserved.
    h.enrollments
        .create_link(&link("waits", "005W", "SKY005W", "Ada", "Lovelace"))
        .await
        .unwrap();
    deliver(&first).await.unwrap();
    assert_eq!(state(&h, &first).await.state(), StatusKind::Reserved);
    assert_eq!(h.dispatch.depth(), 1);

    // Past the 24 hours: the other one is rejected, saying why.
    h.clock.advance(chrono::Duration::hours(24));
    deliver(&late).await.unwrap();
    let rejected = state(&h, &late).await;
    assert_eq!(
        rejected.status.reason().unwrap().code,
        "enrollment_timed_out"
    );
    assert!(
        h.store
            .waiting(&program, StatusKind::AwaitingEnrollment, None)
            .await
            .unwrap()
            .is_empty()
    );
    h.ledger.snapshot().unwrap().check().unwrap();
}

#[tokio::test]
async fn a_member_the_partner_refuses_fails_before_anything_is_reserved() {
    let h = harness().await;
    let deliver = |r: &PointsRequest| h.eligibility.handle(sqs_event(&[message(r)]));
    h.enrollments
        .create_link(&link("sales", "005N", "SKY005N", "Ada", "Byron"))
        .await
        .unwrap();
    let r = submit(&h, "n-1", "sales", "005N", "100.00").await;
    deliver(&r).await.unwrap();
    let after = state(&h, &r).await;
    let reason = after.status.reason().unwrap();
    assert_eq!(reason.code, "member_invalid");
    assert!(
        reason.message.contains("partner_name_mismatch"),
        "{}",
        reason.message
    );
    assert!(
        h.ledger.entries_for(&r.id).await.unwrap().is_empty(),
        "nothing reserved"
    );
    // The answer is kept: the next request is refused without asking again.
    let kept = h
        .enrollments
        .member_link(
            &ProgramId::parse("sales").unwrap(),
            &RecipientId::parse("005N").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!kept.validation.unwrap().valid);
    let again = submit(&h, "n-2", "sales", "005N", "100.00").await;
    deliver(&again).await.unwrap();
    assert_eq!(
        state(&h, &again).await.status.reason().unwrap().code,
        "member_invalid"
    );
    assert_eq!(h.partner.validations.load(Ordering::SeqCst), 1);
    // A valid member is validated once, then reserved without asking again.
    let ok = [
        submit(&h, "a-1", "sales", "005A", "100.00").await,
        submit(&h, "a-2", "sales", "005A", "100.00").await,
    ];
    for r in &ok {
        deliver(r).await.unwrap();
        assert_eq!(state(&h, r).await.state(), StatusKind::Reserved);
    }
    assert_eq!(h.partner.validations.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_held_request_is_released_by_the_sweep_once_its_program_resumes() {
    let h = harness().await;
    let holds = ProgramId::parse("holds").unwrap();
    let r = submit(&h, "h-1", "holds", "005A", "100.00").await;
    h.eligibility
        .handle(sqs_event(&[message(&r)]))
        .await
        .unwrap();
    let held = state(&h, &r).await;
    assert_eq!(held.state(), StatusKind::Held);
    assert_eq!(held.status.reason().unwrap().code, "program_paused");
    assert!(h.ledger.entries_for(&r.id).await.unwrap().is_empty());
    // Still paused: the sweep leaves it.
    assert_eq!(h.eligibility.sweep_waiting().await, 0);
    // Resumed by a revision, and the release never came: the sweep finds it.
    let mut active = h.ports.programs.program(&holds).unwrap().as_ref().clone();
    active.state = ProgramState::Active;
    h.program_store
        .put_program(&StoredProgram {
            program: active,
            revision: 1,
            applied_by: pointsflow_core::access::Principal::parse("ops-anna").unwrap(),
            confirmed_by: None,
            applied_at: DateTime::UNIX_EPOCH,
        })
        .await
        .unwrap();
    h.ports.programs.refresh().await.unwrap();
    assert_eq!(h.eligibility.sweep_waiting().await, 1);
    assert_eq!(state(&h, &r).await.state(), StatusKind::Reserved);
    assert_eq!(h.dispatch.depth(), 1);
    assert!(
        h.store
            .waiting(&holds, StatusKind::Held, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn above_the_threshold_a_request_waits_for_an_operator() {
    let h = harness().await;
    let anna = pointsflow_core::access::Principal::parse("ops-anna").unwrap();
    let deliver = |r: &PointsRequest| h.eligibility.handle(sqs_event(&[message(r)]));
    // 1,000 points against a threshold of 500: waits, nothing reserved.
    let big = submit(&h, "big", "approvals", "005A", "50000.00").await;
    deliver(&big).await.unwrap();
    deliver(&big).await.unwrap();
    let waiting = state(&h, &big).await;
    assert_eq!(
        waiting.state(),
        StatusKind::AwaitingApproval,
        "{:?}",
        waiting.status
    );
    let reason = waiting.status.reason().unwrap();
    assert_eq!(reason.code, "approval_required");
    assert!(
        reason.message.contains("threshold of 500"),
        "{}",
        reason.message
    );
    assert_eq!(waiting.points.unwrap().get(), 1_000);
    assert!(h.ledger.entries_for(&big.id).await.unwrap().is_empty());
    assert_eq!(h.dispatch.depth(), 0);

    // 200 points: under the threshold, reserved at once.
    let small = submit(&h, "small", "approvals", "005A", "10000.00").await;
    deliver(&small).await.unwrap();
    assert_eq!(state(&h, &small).await.state(), StatusKind::Reserved);

    // Approved: the next delivery reserves it.
    let mut approved = waiting;
    assert!(
        approved
            .decide_approval(
                ApprovalDecision::Approve,
                &anna,
                Some("signed off"),
                DateTime::UNIX_EPOCH
            )
            .unwrap()
    );
    h.store.update(&approved).await.unwrap();
    deliver(&big).await.unwrap();
    let reserved = state(&h, &big).await;
    assert_eq!(reserved.state(), StatusKind::Reserved);
    assert_eq!(reserved.approval.as_ref().unwrap().by, anna);
    assert_eq!(h.ledger.entries_for(&big.id).await.unwrap().len(), 1);

    // Declined: rejected, and a late delivery reserves nothing.
    let other = submit(&h, "other", "approvals", "005A", "60000.00").await;
    deliver(&other).await.unwrap();
    let mut declined = state(&h, &other).await;
    declined
        .decide_approval(
            ApprovalDecision::Decline,
            &anna,
            Some("duplicate deal"),
            DateTime::UNIX_EPOCH,
        )
        .unwrap();
    h.store.update(&declined).await.unwrap();
    deliver(&other).await.unwrap();
    let after = state(&h, &other).await;
    assert_eq!(after.status.reason().unwrap().code, "declined");
    assert!(h.ledger.entries_for(&other.id).await.unwrap().is_empty());
    let budget = h
        .ledger
        .balance(&AccountId::budget(&ProgramId::parse("approvals").unwrap()))
        .await
        .unwrap();
    assert_eq!(budget.debits_posted, 1_200);
    h.ledger.snapshot().unwrap().check().unwrap();
}

#[tokio::test]
async fn daily_and_monthly_caps_follow_the_program_calendar_across_a_month_end() {
    // 500 points a day and 1,000 a month per recipient, in Tokyo (UTC+9).
    let h = harness().await;
    let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    let cases = [
        // 10 November in Tokyo: 300 points; the month holds 300.
        ("2026-11-10T03:00:00Z", "15000.00", None),
        // 19:00 on 30 November in Tokyo: 400; the day 400, the month 700.
        ("2026-11-30T10:00:00Z", "20000.00", None),
        // 23:00 on 30 November: 200 more would make the day 600.
        (
            "2026-11-30T14:00:00Z",
            "10000.00",
            Some("daily_cap_reached"),
        ),
        // 00:30 on 1 December in Tokyo, still 30 November in UTC: a new
        // day and a new month, so 400 fit (a UTC month would hold 1,100).
        ("2026-11-30T15:30:00Z", "20000.00", None),
        // 29 November in Tokyo: the day is empty but the month would be 1,100.
        (
            "2026-11-29T03:00:00Z",
            "20000.00",
            Some("monthly_cap_reached"),
        ),
    ];
    for (i, (t, amount, code)) in cases.iter().enumerate() {
        let r = submit_at(&h, &format!("tz-{i}"), "tokyo", "005A", amount, at(t)).await;
        h.eligibility
            .handle(sqs_event(&[message(&r)]))
            .await
            .unwrap();
        let after = state(&h, &r).await;
        match code {
            None => assert_eq!(after.state(), StatusKind::Reserved, "case {i} at {t}"),
            Some(code) => {
                assert_eq!(after.state(), StatusKind::Rejected, "case {i} at {t}");
                let reason = after.status.reason().unwrap();
                assert_eq!(reason.code, *code, "case {i}: {}", reason.message);
                assert!(reason.message.contains("Asia/Tokyo"), "{}", reason.message);
            }
        }
    }
    let usage = |period: &str| {
        h.ledger
            .cap_usage(&CapKey {
                program: ProgramId::parse("tokyo").unwrap(),
                recipient: RecipientId::parse("005A").unwrap(),
                period: period.into(),
            })
            .unwrap()
            .used
    };
    assert_eq!(
        [
            usage("2026-11"),
            usage("2026-12"),
            usage("2026-11-30"),
            usage("2026-12-01")
        ],
        [700, 400, 400, 400]
    );
    h.ledger.snapshot().unwrap().check().unwrap();
}

async fn states_of(h: &Harness, rs: &[PointsRequest]) -> Vec<(StatusKind, Option<String>)> {
    let mut out = Vec::new();
    for r in rs {
        let s = state(h, r).await;
        out.push((s.state(), s.status.reason().map(|x| x.code.to_string())));
    }
    out
}

#[tokio::test]
async fn a_bad_record_fails_alone() {
    let h = harness().await;
    let r = submit(&h, "deal-1", "sales", "005A", "100.00").await;
    let response = h
        .eligibility
        .handle(sqs_event(&[
            "not json".into(),
            message(&r),
            json!({"request_id": "pr_00000000000000000000000000000000"}).to_string(),
        ]))
        .await
        .unwrap();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["msg-0", "msg-2"]);
    assert_eq!(state(&h, &r).await.state(), StatusKind::Reserved);
}

/// A request store whose next updates fail: what a crash right after the
/// previous write looks like to the retry.
struct FailingUpdates {
    store: Arc<MemoryRequestStore>,
    failures: AtomicU32,
}

#[async_trait::async_trait]
impl RequestUpdate for FailingUpdates {
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected".into()));
        }
        self.store.update(request).await
    }
}

#[tokio::test]
async fn a_crash_after_the_reservation_is_finished_from_the_reservation() {
    let h = harness().await;
    let r = submit(&h, "deal-1", "sales", "005A", "12550.00").await;
    let crashing = Eligibility::new(EligibilityPorts {
        update: Arc::new(FailingUpdates {
            store: h.store.clone(),
            failures: AtomicU32::new(1),
        }),
        ..h.ports.clone()
    });
    let response = crashing.handle(sqs_event(&[message(&r)])).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(state(&h, &r).await.state(), StatusKind::Received);
    assert_eq!(
        h.ledger.entries_for(&r.id).await.unwrap().len(),
        1,
        "the reservation was written"
    );

    // Meanwhile the program is paused: the retry must not reject a request
    // whose points are already held, nor hold them twice.
    let paused = Eligibility::new(EligibilityPorts {
        programs: Arc::new(StaticCatalog::new([program(
            "sales",
            ProgramState::Paused,
            1_000,
            Some(600),
        )])),
        ..h.ports.clone()
    });
    let response = paused.handle(sqs_event(&[message(&r)])).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let after = state(&h, &r).await;
    assert_eq!(after.state(), StatusKind::Reserved);
    assert_eq!(after.points.unwrap().get(), 251);
    assert_eq!(after.member.unwrap().as_str(), "SKY005A");
    assert_eq!(h.ledger.entries_for(&r.id).await.unwrap().len(), 1);
    assert_eq!(h.dispatch.depth(), 1);
    h.ledger.snapshot().unwrap().check().unwrap();
}

#[tokio::test]
async fn a_reservation_that_raced_a_rejection_is_released() {
    let h = harness().await;
    let r = submit(&h, "deal-1", "sales", "005A", "12550.00").await;
    // One delivery reserved while another, deciding on older facts, rejected.
    let sales = ProgramId::parse("sales").unwrap();
    let reservation = Entry::reserve(
        &r.id,
        AccountId::budget(&sales),
        AccountId::member(
            &PartnerId::parse("air").unwrap(),
            &MemberNumber::parse("SKY005A").unwrap(),
        ),
        Points::new(251).unwrap(),
        Vec::new(),
        DateTime::UNIX_EPOCH,
    );
    h.ledger
        .apply(std::slice::from_ref(&reservation))
        .await
        .unwrap();
    let mut rejected = state(&h, &r).await;
    rejected
        .transition(
            pointsflow_core::request::Status::Rejected {
                reason: pointsflow_core::reason::Reason::new(
                    ReasonCode::BudgetExhausted,
                    "no budget",
                ),
            },
            DateTime::UNIX_EPOCH,
            "no budget",
        )
        .unwrap();
    h.store.update(&rejected).await.unwrap();

    let response = h
        .eligibility
        .handle(sqs_event(&[message(&r)]))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let budget = h.ledger.balance(&AccountId::budget(&sales)).await.unwrap();
    assert_eq!(
        budget.debits_posted, 0,
        "the stranded reservation was voided"
    );
    assert_eq!(state(&h, &r).await.state(), StatusKind::Rejected);
    assert_eq!(h.dispatch.depth(), 0);
    h.ledger.snapshot().unwrap().check().unwrap();
}

/// A request store that takes 10 ms for every call, as DynamoDB may under
/// load.
struct Slow(Arc<MemoryRequestStore>);

const LATENCY: Duration = Duration::from_millis(10);

#[async_trait::async_trait]
impl RequestGet for Slow {
    async fn get(
        &self,
        id: &pointsflow_core::values::RequestId,
    ) -> Result<Option<PointsRequest>, StoreError> {
        tokio::time::sleep(LATENCY).await;
        self.0.get(id).await
    }
}

#[async_trait::async_trait]
impl RequestUpdate for Slow {
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        tokio::time::sleep(LATENCY).await;
        self.0.update(request).await
    }
}

#[async_trait::async_trait]
impl WaitingRequests for Slow {
    async fn waiting(
        &self,
        program: &ProgramId,
        state: StatusKind,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<pointsflow_core::values::RequestId>, StoreError> {
        tokio::time::sleep(LATENCY).await;
        self.0.waiting(program, state, recipient).await
    }
}

/// 5,000 requests wait for enrollment and are all linked since, so the
/// first sweep would reserve every one; the store answers in 10 ms. An
/// invocation with a 3-second timeout still processes its own batch, and
/// every request its sweep reserved is queued for dispatch: the sweep
/// stops at the deadline instead of being cut off by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sweep_stops_at_the_deadline_and_leaves_nothing_reserved_unqueued() {
    let h = harness().await;
    let reason = Reason::new(ReasonCode::parse("awaiting_enrollment"), "not linked yet");
    for i in 0..5_000 {
        let recipient = format!("005W{i}");
        let mut request = new_request(
            &format!("wait-{i}"),
            "waits",
            &recipient,
            "100.00",
            DateTime::UNIX_EPOCH,
        );
        request
            .transition(
                pointsflow_core::request::Status::AwaitingEnrollment {
                    reason: reason.clone(),
                },
                DateTime::UNIX_EPOCH,
                "waiting",
            )
            .unwrap();
        h.store.create(&request).await.unwrap();
        h.enrollments
            .create_link(&link(
                "waits",
                &recipient,
                &format!("SKY{i}"),
                "Ada",
                "Lovelace",
            ))
            .await
            .unwrap();
    }
    let own = [
        submit(&h, "own-1", "sales", "005A", "100.00").await,
        submit(&h, "own-2", "sales", "005B", "100.00").await,
    ];
    let slow = Arc::new(Slow(h.store.clone()));
    let eligibility = Eligibility::new(EligibilityPorts {
        get: slow.clone(),
        update: slow.clone(),
        waiting: slow,
        ..h.ports.clone()
    });
    let event = sqs_event(&own.iter().map(message).collect::<Vec<_>>()).payload;
    let handler = |e| eligibility.handle(e);
    let failed = pointsflow_harness::mapping::invoke_sqs_handler(
        "eligibility",
        "sweep-1".into(),
        Duration::from_secs(3),
        event,
        &handler,
    )
    .await;
    assert!(
        failed.is_empty(),
        "the batch's own messages failed: {failed:?}"
    );
    let queued: std::collections::HashSet<String> = h.dispatch.peek_bodies().into_iter().collect();
    for r in &own {
        assert_eq!(state(&h, r).await.state(), StatusKind::Reserved);
        assert!(queued.contains(&message(r)), "{} not queued", r.id);
    }
    let mut swept = 0;
    for r in h.store.all().unwrap() {
        if r.program.as_str() == "waits" && r.state() == StatusKind::Reserved {
            swept += 1;
            assert!(
                queued.contains(&message(&r)),
                "{} reserved, not queued",
                r.id
            );
        }
    }
    assert!(swept > 0, "the sweep reserved nothing");
}
