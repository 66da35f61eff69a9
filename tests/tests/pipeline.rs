//! The whole pipeline through the local stack over HTTP: request in,
//! frequent-flyer account credited, ledger balanced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::DateTime;
use futures::future::join_all;
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_core::ledger::{AccountId, EntryKind};
use pointsflow_core::money::{Currency, Money};
use pointsflow_core::ports::{LedgerRead, RequestCreate, RequestGet};
use pointsflow_core::request::{Award, NewRequest, Recipient, SourceEvent, StatusKind};
use pointsflow_core::values::{
    EventType, IdempotencyKey, Points, ProgramId, RecipientId, SourceId,
};
use pointsflow_local::client::{ApiClient, ClientError, Decision};
use pointsflow_local::config::{EXAMPLE_PROGRAMS, ProgramFile};
use pointsflow_local::ops::Target;
use pointsflow_tests::{
    ADA, API_KEY, amount_for, apply_programs, assert_settled_path, deal, entries_of,
    fixed_references, lead, opportunity, ops, outbound_message, path, spawn_stack,
};
use serde_json::{Value, json};

fn states(view: &Value) -> Vec<String> {
    view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_deal_is_credited_once_and_the_ledger_balances() {
    let t = spawn_stack(|_| {}).await;
    let id = t.accept("deal-1", &deal(ADA, "12550.00")).await;
    let view = t.wait_for(&id, &["credited", "failed", "rejected"]).await;
    assert_eq!(view["status"], "credited", "{view:#}");
    assert_settled_path(&view, &[], "credited");
    assert_eq!(view["points"], 251);
    // The source sees the member number's last four characters, nowhere
    // the whole number (its field, the ledger's accounts, the timeline).
    assert_eq!(view["member_number"], "******0001");
    assert!(!view.to_string().contains("SKY1000001"), "{view:#}");
    assert!(
        view["partner_reference"]
            .as_str()
            .unwrap()
            .starts_with("pf")
    );
    let ledger: Vec<&str> = view["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(ledger, ["pending", "post_pending"]);

    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().credits, 1);
    assert_eq!(sandbox.stats().points, 251);
    let budget = t
        .stack
        .ledger
        .balance(&AccountId::budget(
            &ProgramId::parse("sales-incentive").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(budget.available(), 10_000_000 - 251);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_submission_credits_once() {
    let t = spawn_stack(|_| {}).await;
    let body = deal(ADA, "5000.00");
    let answers = join_all((0..10).map(|_| t.submit("deal-dup", &body))).await;
    let mut ids = Vec::new();
    let mut replays = 0;
    for a in answers {
        assert_eq!(a.status(), 202);
        if a.headers().get("idempotent-replayed").is_some() {
            replays += 1;
        }
        ids.push(
            a.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one request for one key");
    assert_eq!(replays, 9);
    t.wait_for(&ids[0], &["credited"]).await;
    // And a late retry, after the credit, is still only a replay.
    let late = t.submit("deal-dup", &body).await;
    assert_eq!(late.headers()["idempotent-replayed"], "true");
    t.settle().await;
    assert_eq!(t.sandbox_credits(), 1);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_409_and_changes_nothing() {
    let t = spawn_stack(|_| {}).await;
    let id = t.accept("deal-409", &deal(ADA, "5000.00")).await;
    let before = t.wait_for(&id, &["credited"]).await;
    let response = t.submit("deal-409", &deal(ADA, "6000.00")).await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "idempotency_key_reused");
    t.settle().await;
    assert_eq!(t.get(&id).await, before);
    assert_eq!(t.sandbox_credits(), 1);
    assert_eq!(t.stack.store.len(), 1);
    t.stack.shutdown().await;
}

#[tokio::test]
async fn an_unknown_program_is_422_naming_the_field() {
    let t = spawn_stack(|_| {}).await;
    let mut body = deal(ADA, "5000.00");
    body["program"] = json!("no-such-program");
    let response = t.submit("deal-422", &body).await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "unknown_program");
    assert_eq!(problem["field"], "/program");
    assert!(t.stack.store.is_empty());
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_partner_rejection_fails_the_request_and_restores_the_budget() {
    let t = spawn_stack(|_| {}).await;
    let id = t
        .accept(
            "deal-reject",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    let view = t.wait_for(&id, &["failed", "credited"]).await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["reason"]["code"], "partner_member_blocked");
    let ledger: Vec<&str> = view["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(ledger, ["pending", "void_pending"]);
    let budget = t
        .stack
        .ledger
        .balance(&AccountId::budget(
            &ProgramId::parse("sales-incentive").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        budget.available(),
        10_000_000,
        "the reservation was released"
    );
    assert_eq!(budget.debits_posted, 0);
    assert_eq!(t.sandbox_credits(), 0);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_partner_5xx_is_retried_under_the_same_reference_and_credited_once() {
    let t = spawn_stack(|_| {}).await;
    let id = t
        .accept(
            "deal-503",
            &deal(
                ADA,
                &amount_for(pointsflow_sandbox::magic::CREDITED_AFTER_RETRY),
            ),
        )
        .await;
    let view = t.wait_for(&id, &["credited", "failed"]).await;
    assert_eq!(view["status"], "credited", "{view:#}");
    assert_settled_path(&view, &["unknown"], "credited");
    assert_eq!(
        fixed_references(&view).len(),
        1,
        "the reference was fixed once"
    );
    let reference = view["partner_reference"].as_str().unwrap();
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert!(
        sandbox.attempts(reference) >= 2,
        "the 503 was retried under the same reference"
    );
    assert_eq!(
        sandbox.stats().attempts,
        u64::from(sandbox.attempts(reference)),
        "no attempt under another reference"
    );
    assert_eq!(sandbox.stats().credits, 1);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_timeout_after_the_partner_credited_is_resolved_without_a_second_credit() {
    let t = spawn_stack(|_| {}).await;
    let id = t
        .accept(
            "deal-timeout",
            &deal(
                ADA,
                &amount_for(pointsflow_sandbox::magic::TIMEOUT_AFTER_CREDIT),
            ),
        )
        .await;
    let view = t.wait_for(&id, &["credited", "failed"]).await;
    assert_eq!(view["status"], "credited", "{view:#}");
    assert!(states(&view).contains(&"unknown".to_owned()));
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().credits, 1);
    assert_eq!(sandbox.stats().points, 9_903);
    t.check_ledger();
    t.stack.shutdown().await;
}

fn dispatch_event(request_id: &str, copies: usize) -> LambdaEvent<SqsEvent> {
    let text = std::fs::read_to_string(format!(
        "{}/../functions/eligibility/tests/fixtures/sqs-event.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut event: SqsEvent = serde_json::from_str(&text).unwrap();
    let template: SqsMessage = event.records[0].clone();
    event.records = (0..copies)
        .map(|i| {
            let mut m = template.clone();
            m.message_id = Some(format!("dup-{i}"));
            m.body = Some(json!({"request_id": request_id}).to_string());
            m
        })
        .collect();
    LambdaEvent::new(event, Context::default())
}

#[tokio::test]
async fn the_same_queue_message_delivered_again_and_again_credits_once() {
    let t = spawn_stack(|_| {}).await;
    // Put a request through eligibility by hand, so its dispatch message is
    // delivered by the stack's own mapping and, at the same time, by us.
    let request = demo_request("deal-sqs-dup", "5000", chrono::Utc::now());
    t.stack.store.create(&request).await.unwrap();
    t.stack
        .eligibility
        .handle(dispatch_event(request.id.as_str(), 1))
        .await
        .unwrap();
    let deliveries = join_all((0..4).map(|_| {
        t.stack
            .dispatch
            .handle(dispatch_event(request.id.as_str(), 3))
    }))
    .await;
    assert!(deliveries.iter().all(Result::is_ok));
    t.settle().await;
    // Once more, after everything settled.
    let late = t
        .stack
        .dispatch
        .handle(dispatch_event(request.id.as_str(), 2))
        .await
        .unwrap();
    assert!(late.batch_item_failures.is_empty());

    let stored = t.stack.store.get(&request.id).await.unwrap().unwrap();
    assert_eq!(stored.state(), StatusKind::Credited);
    assert_eq!(stored.points, Some(Points::new(100).unwrap()));
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().credits, 1);
    let reference = stored.partner_reference.unwrap();
    assert_eq!(
        sandbox.stats().attempts,
        u64::from(sandbox.attempts(reference.as_str())),
        "one reference only"
    );
    assert_eq!(
        t.stack.ledger.entries_for(&request.id).await.unwrap().len(),
        2
    );
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_never_overspend_the_budget() {
    let t = spawn_stack(|c| {
        c.programs[0].budget = Points::new(2_510).unwrap();
    })
    .await;
    let ids = join_all((0..50).map(|i| {
        let t = &t;
        async move {
            t.accept(&format!("deal-c{i}"), &deal(ADA, "12550.00"))
                .await
        }
    }))
    .await;
    let mut credited = 0;
    let mut exhausted = 0;
    for id in &ids {
        let view = t.wait_for(id, &["credited", "rejected", "failed"]).await;
        match (
            view["status"].as_str().unwrap(),
            view["reason"]["code"].as_str(),
        ) {
            ("credited", _) => credited += 1,
            ("rejected", Some("budget_exhausted")) => exhausted += 1,
            other => panic!("unexpected outcome {other:?}: {view:#}"),
        }
    }
    assert_eq!((credited, exhausted), (10, 40));
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().points, 2_510);
    let budget = t
        .stack
        .ledger
        .balance(&AccountId::budget(
            &ProgramId::parse("sales-incentive").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!((budget.available(), budget.debits_posted), (0, 2_510));
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_pending_credit_settles_at_the_status_look_up() {
    let t = spawn_stack(|_| {}).await;
    let credited = t
        .accept(
            "deal-pending-ok",
            &deal(
                ADA,
                &amount_for(pointsflow_sandbox::magic::PENDING_THEN_CREDITED),
            ),
        )
        .await;
    let failed = t
        .accept(
            "deal-pending-ko",
            &deal(
                ADA,
                &amount_for(pointsflow_sandbox::magic::PENDING_THEN_FAILED),
            ),
        )
        .await;

    let sandbox = t.stack.sandbox.as_ref().unwrap();
    for (id, last) in [(&credited, "credited"), (&failed, "failed")] {
        let view = t.wait_for(id, &["credited", "failed"]).await;
        assert_settled_path(&view, &["partner_pending"], last);
        // Once the partner said pending, the credit is only looked up:
        // never sent again (a first answer lost to a timeout is retried
        // under the same reference before that).
        let states = path(&view);
        let pending_at = states.iter().position(|s| s == "partner_pending").unwrap();
        let reference = view["partner_reference"].as_str().unwrap();
        assert_eq!(
            sandbox.attempts(reference) as usize,
            pending_at - 2,
            "a pending credit is looked up, never sent again: {states:?}"
        );
        if last == "failed" {
            assert_eq!(view["reason"]["code"], "partner_member_closed");
        }
    }
    assert_eq!(sandbox.stats().credits, 1);
    let budget = t
        .stack
        .ledger
        .balance(&AccountId::budget(
            &ProgramId::parse("sales-incentive").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        budget.debits_posted,
        pointsflow_sandbox::magic::PENDING_THEN_CREDITED,
        "the failed credit's points went back to the budget"
    );
    // The credited one's reservation was posted, the failed one's voided.
    for (id, posted) in [(&credited, true), (&failed, false)] {
        let entries = entries_of(t.stack.ledger.as_ref(), id).await;
        let resolution = entries.iter().find_map(|e| e.pending_id().map(|_| &e.kind));
        assert!(
            matches!(
                (resolution, posted),
                (Some(EntryKind::PostPending { .. }), true)
                    | (Some(EntryKind::VoidPending { .. }), false)
            ),
            "{entries:?}"
        );
    }
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn an_event_that_does_not_qualify_earns_nothing() {
    let t = spawn_stack(|_| {}).await;
    let mut body = deal(ADA, "12550.00");
    body["event"]["type"] = json!("opportunity.closed_lost");
    let id = t.accept("deal-lost", &body).await;
    let view = t.wait_for(&id, &["rejected", "credited"]).await;
    assert_eq!(view["reason"]["code"], "event_not_qualifying");
    assert_eq!(view["ledger"], json!([]));
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_partner_that_keeps_failing_leaves_the_request_visible_in_the_dead_letter_queue() {
    let t = spawn_stack(|c| c.queues.max_receive_count = 2).await;
    let id = t
        .accept(
            "deal-500",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::ALWAYS_5XX)),
        )
        .await;
    let deadline = std::time::Instant::now() + pointsflow_tests::PATIENCE;
    while t.stack.queues.dispatch_dlq.depth() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the message never reached the dead-letter queue"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let view = t.get(&id).await;
    assert!(
        view["status"] == "unknown" || view["status"] == "dispatching",
        "an ambiguous outcome is never voided: {view:#}"
    );
    assert_eq!(
        t.stack.queues.dispatch_dlq.peek_bodies(),
        vec![json!({"request_id": id}).to_string()]
    );
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let stats = sandbox.stats();
    assert!(
        (1..=2).contains(&stats.attempts) && stats.credits == 0,
        "at most one call per receive, and nothing credited: {stats:?}"
    );
    let budget = t
        .stack
        .ledger
        .balance(&AccountId::budget(
            &ProgramId::parse("sales-incentive").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        budget.debits_posted,
        pointsflow_sandbox::magic::ALWAYS_5XX,
        "the points stay spent from the budget"
    );
    let entries = entries_of(t.stack.ledger.as_ref(), &id).await;
    assert!(
        entries.len() == 1 && entries.iter().all(|e| e.pending_id().is_none()),
        "the reservation stays unresolved: {entries:?}"
    );
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_settled_request_whose_ledger_write_was_lost_is_brought_level_without_a_partner_call() {
    use pointsflow_core::ledger::{Entry, EntryId};
    use pointsflow_core::partner::CreditInstruction;
    use pointsflow_core::partner::Destination;
    use pointsflow_core::ports::{LedgerWrite, PartnerConnector, RequestUpdate};
    use pointsflow_core::request::Status;
    use pointsflow_core::values::{MemberNumber, PartnerId, PartnerReference};

    let t = spawn_stack(|_| {}).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let program = ProgramId::parse("sales-incentive").unwrap();
    let partner = PartnerId::parse("sandbox-air").unwrap();
    let member = MemberNumber::parse("SKY1000001").unwrap();
    let points = Points::new(100).unwrap();
    let reference = PartnerReference::from_number(42);

    // The state a crash leaves behind: the partner credited, the request
    // recorded as credited, the reservation still pending.
    let mut request = demo_request("deal-crash", "5000", chrono::Utc::now());
    t.stack.store.create(&request).await.unwrap();
    let reservation = Entry::reserve(
        &request.id,
        AccountId::budget(&program),
        AccountId::member(&partner, &member),
        points,
        Vec::new(),
        chrono::Utc::now(),
    );
    t.stack
        .ledger
        .apply(std::slice::from_ref(&reservation))
        .await
        .unwrap();
    let connector =
        pointsflow_partners::RestConnector::new(pointsflow_partners::RestConnectorConfig {
            base_url: sandbox.base_url(),
            api_key: "sandbox-partner-key".into(),
            connect_timeout: std::time::Duration::from_millis(300),
            request_timeout: std::time::Duration::from_millis(300),
            reach: pointsflow_partners::Reach::Local,
        })
        .unwrap();
    let outcome = connector
        .credit(&CreditInstruction {
            reference: reference.clone(),
            member: member.clone(),
            member_name: None,
            points,
            partner_program: "SKY".into(),
            timeout: None,
        })
        .await;
    assert!(matches!(
        outcome,
        pointsflow_core::partner::CreditOutcome::Credited { .. }
    ));
    request.points = Some(points);
    request.member = Some(member);
    request.destination = Some(Destination {
        partner,
        partner_program: "SKY".into(),
    });
    request.partner_reference = Some(reference.clone());
    let now = chrono::Utc::now();
    request
        .transition(Status::Reserved, now, "reserved")
        .unwrap();
    request
        .transition(Status::Dispatching, now, "dispatching")
        .unwrap();
    request
        .transition(Status::Credited, now, "credited")
        .unwrap();
    t.stack.store.update(&request).await.unwrap();
    assert!(
        t.stack.ledger.snapshot().unwrap().check().is_ok(),
        "pending is consistent by itself"
    );

    // The message is delivered again.
    let response = t
        .stack
        .dispatch
        .handle(dispatch_event(request.id.as_str(), 1))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let entries = t.stack.ledger.entries_for(&request.id).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.id == EntryId::resolution_of(&reservation.id)),
        "posted now"
    );
    assert_eq!(
        sandbox.attempts(reference.as_str()),
        1,
        "the partner was not called again"
    );
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_deals_are_credited_once_however_often_salesforce_retries() {
    let t = spawn_stack(|_| {}).await;
    let message = outbound_message(vec![
        opportunity(1, ADA, "Closed Won", &amount_for(300)),
        opportunity(2, ADA, "Negotiation/Review", &amount_for(999)),
    ]);
    for _ in 0..3 {
        let (status, body) = t.post_outbound(message.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<Ack>true</Ack>"));
    }
    t.settle().await;
    let requests = t.stack.store.all().unwrap();
    assert_eq!(requests.len(), 2);
    let states: Vec<StatusKind> = requests.iter().map(|r| r.state()).collect();
    assert!(
        states.contains(&StatusKind::Credited) && states.contains(&StatusKind::Rejected),
        "{states:?}"
    );
    assert_eq!(t.sandbox_credits(), 1);
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hris_recognition_signed_with_hmac_is_credited() {
    let t = spawn_stack(|_| {}).await;
    let body = json!({
        "id": "rec-42",
        "employee": {"id": "E1001"},
        "award": {"points": 750, "reason": "Mentoring"},
        "awarded_at": "2026-11-27T09:30:00Z"
    })
    .to_string();
    assert_eq!(t.post_signed_hris(body).await, 202);
    t.settle().await;
    let requests = t.stack.store.all().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].state(),
        StatusKind::Credited,
        "{:?}",
        requests[0].status
    );
    assert_eq!(requests[0].points.map(|p| p.get()), Some(750));
    t.check_ledger();
}

#[tokio::test]
async fn program_conditions_and_the_per_request_maximum_decide_and_say_why() {
    let t = spawn_stack(|c| {
        let program = &mut c.programs[0];
        program.conditions = toml::from_str::<toml::Table>(
            r#"c = [{ field = "attributes.type", in = ["New Business", "Upsell"] }, { field = "amount", gte = "1000" }]"#,
        )
        .unwrap()["c"]
            .clone()
            .try_into()
            .unwrap();
        program.max_points_per_request = Some(Points::new(300).unwrap());
    })
    .await;
    let with_type = |amount: &str, kind: &str| {
        let mut body = deal(ADA, amount);
        body["event"]["attributes"] = json!({ "type": kind });
        body
    };
    let renewal = t.accept("cond-1", &with_type("50000.00", "Renewal")).await;
    let small = t.accept("cond-2", &with_type("999.99", "Upsell")).await;
    let big = t.accept("cond-3", &with_type("50000.00", "Upsell")).await;

    let view = t.wait_for(&renewal, &["rejected"]).await;
    assert_eq!(view["reason"]["code"], "condition_not_met");
    assert!(
        view["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("attributes.type must be one of New Business, Upsell (it is 'Renewal')"),
        "{view:#}"
    );
    let view = t.wait_for(&small, &["rejected"]).await;
    assert!(
        view["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("condition 2"),
        "{view:#}"
    );
    // 50,000 USD earns 1,000 points; the program pays at most 300 per request.
    let view = t.wait_for(&big, &["credited"]).await;
    assert_eq!(view["points"], 300);
    let reserved = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state"] == "reserved")
        .unwrap();
    assert!(
        reserved["detail"]
            .as_str()
            .unwrap()
            .contains("1000 points reduced to the maximum of 300"),
        "{view:#}"
    );
    t.settle().await;
    t.check_ledger();
}

#[tokio::test]
async fn a_deal_above_the_approval_threshold_waits_for_an_operator() {
    // The demo program asks for approval above 25,000 points (1,250,000 USD).
    let t = spawn_stack(|_| {}).await;
    let ops = ops(&t.base);
    let big = t.accept("approve-1", &deal(ADA, "1300000.00")).await;
    let other = t.accept("approve-2", &deal(ADA, "1400000.00")).await;
    let small = t.accept("approve-3", &deal(ADA, "1000.00")).await;

    let view = t.wait_for(&big, &["awaiting_approval"]).await;
    assert_eq!(view["reason"]["code"], "approval_required");
    assert_eq!(view["points"], 26000);
    assert!(view["ledger"].as_array().unwrap().is_empty(), "{view:#}");
    t.wait_for(&small, &["credited"]).await;

    // A source's key is not an operator's: refused, nothing decided; an
    // operator's key decides, and is recorded.
    let as_source = ApiClient::new(Target::local(&t.base, API_KEY));
    match as_source.decide(&big, Decision::Approve, None).await {
        Err(ClientError::Problem { code, .. }) => assert_eq!(code, "unauthorized"),
        other => panic!("a source approved: {other:?}"),
    }
    let shown = ops.show(&big).await.unwrap();
    assert_eq!(shown["request"]["status"]["state"], "awaiting_approval");
    ops.decide(&big, Decision::Approve, Some("signed off by the VP"))
        .await
        .unwrap();
    // Approving again is harmless.
    ops.decide(&big, Decision::Approve, None).await.unwrap();
    let view = t.wait_for(&big, &["credited"]).await;
    assert_eq!(view["approval"]["by"], "ops-demo");
    assert_eq!(view["approval"]["decision"], "approve");
    assert!(
        states(&view)
            .windows(2)
            .any(|w| w == ["awaiting_approval", "awaiting_approval"]),
        "the timeline records the approval: {view:#}"
    );

    t.wait_for(&other, &["awaiting_approval"]).await;
    let declined = ops
        .decide(&other, Decision::Decline, Some("duplicate of another deal"))
        .await
        .unwrap();
    let declined = &declined["request"]["status"];
    assert_eq!(declined["state"], "rejected");
    assert_eq!(declined["reason"]["code"], "declined");
    assert_eq!(
        declined["reason"]["message"],
        "declined by ops-demo: duplicate of another deal"
    );
    match ops.decide(&other, Decision::Approve, None).await {
        Err(ClientError::Problem { code, .. }) => assert_eq!(code, "already_decided"),
        other => panic!("approved after a decline: {other:?}"),
    }
    match ops.decide(&small, Decision::Approve, None).await {
        Err(ClientError::Problem { code, .. }) => {
            assert_eq!(code, "not_awaiting_approval")
        }
        other => panic!("approved a credited request: {other:?}"),
    }
    t.settle().await;
    assert_eq!(
        t.sandbox_credits(),
        2,
        "the approved deal and the small one"
    );
    t.check_ledger();
}

#[tokio::test]
async fn a_program_file_applied_to_the_running_stack_takes_effect_without_a_restart() {
    let t = spawn_stack(|c| c.program_refresh_ms = 100).await;
    let ops = ops(&t.base);
    let refreshed = || tokio::time::sleep(std::time::Duration::from_millis(250));
    let file = |text: &str| ProgramFile::parse(text).unwrap();

    // The demo programs as a file: nothing to apply.
    let same = apply_programs(&t.base, &file(EXAMPLE_PROGRAMS), false).await;
    assert!(same.iter().all(|c| c.to.is_none()), "{same:?}");

    let before = t.accept("prog-1", &deal(ADA, "10000.00")).await;
    assert_eq!(t.wait_for(&before, &["credited"]).await["points"], 200);

    // 4 points per 100 instead of 2: a dry run shows it and changes nothing.
    let richer = EXAMPLE_PROGRAMS.replacen("per = \"100\"", "per = \"50\"", 1);
    let planned = ops.apply_programs(&file(&richer), true).await.unwrap();
    assert_eq!(planned[0].from, Some(0));
    assert_eq!(planned[0].to, Some(1));
    assert_eq!(planned[0].differences, ["points.per: \"100\" -> \"50\""]);
    assert_eq!(planned[1].to, None, "recognition is unchanged");
    let listed = ops.programs().await.unwrap();
    assert!(
        listed["programs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["revision"] == 0)
    );

    // Proposed by one admin, it changes nothing until another confirms it.
    let proposed = ops.apply_programs(&file(&richer), false).await.unwrap();
    let proposal = proposed[0].proposal.clone().unwrap();
    match ops.confirm(&proposal).await {
        Err(ClientError::Problem { code, .. }) => assert_eq!(code, "four_eyes"),
        other => panic!("the proposer confirmed its own revision: {other:?}"),
    }
    refreshed().await;
    let unconfirmed = t.accept("prog-1b", &deal(ADA, "10000.00")).await;
    assert_eq!(t.wait_for(&unconfirmed, &["credited"]).await["points"], 200);
    lead(&t.base).confirm(&proposal).await.unwrap();
    refreshed().await;
    let after = t.accept("prog-2", &deal(ADA, "10000.00")).await;
    assert_eq!(t.wait_for(&after, &["credited"]).await["points"], 400);

    // Paused: new requests are rejected, saying so.
    let paused = richer.replacen("state = \"active\"", "state = \"paused\"", 1);
    let change = apply_programs(&t.base, &file(&paused), false).await;
    assert_eq!((change[0].from, change[0].to), (Some(1), Some(2)));
    refreshed().await;
    let late = t.accept("prog-3", &deal(ADA, "10000.00")).await;
    let view = t.wait_for(&late, &["rejected"]).await;
    assert_eq!(view["reason"]["code"], "program_paused");
    let shown = ops.program("sales-incentive").await.unwrap().unwrap();
    assert_eq!(shown["revision"], 2);
    assert_eq!(shown["applied_by"], "ops-demo");
    assert_eq!(shown["confirmed_by"], "ops-lead");
    assert_eq!(shown["program"]["state"], "paused");

    // Applied again, the file is read over revision 2 and becomes 3.
    let stale = apply_programs(&t.base, &file(&richer), false).await;
    assert_eq!(stale[0].to, Some(3), "a fresh read applies over revision 2");
    t.settle().await;
    t.check_ledger();
}

#[tokio::test]
async fn enrollment_checks_the_format_validates_with_the_partner_and_releases_waiting_requests() {
    let t = spawn_stack(|c| {
        let p = &mut c.programs[0];
        p.wait_for_enrollment_hours = Some(72);
        p.member_format = Some(
            toml::from_str(
                r#"min_length = 10
max_length = 10
characters = "digits"
prefix = "SKY""#,
            )
            .unwrap(),
        );
    })
    .await;
    let ops = ops(&t.base);
    // Grace and Katherine have accounts at the sandbox airline, but are not enrolled.
    let grace = t.accept("enrol-1", &deal("005GRACE", "10000.00")).await;
    let katherine = t.accept("enrol-2", &deal("005KJ", "10000.00")).await;
    for id in [&grace, &katherine] {
        let view = t.wait_for(id, &["awaiting_enrollment"]).await;
        assert_eq!(view["reason"]["code"], "awaiting_enrollment");
        assert!(view["ledger"].as_array().unwrap().is_empty());
    }

    // A number that does not fit the program's format: refused, naming the field.
    match ops
        .link_member(
            "sales-incentive",
            "005KJ",
            "SKY12345",
            "Katherine",
            "Johnson",
            None,
        )
        .await
    {
        Err(ClientError::Problem { code, detail }) => {
            assert_eq!(code, "invalid_command");
            assert_eq!(detail, "member_number: must be 10 characters long, not 8");
        }
        other => panic!("a bad member number was linked: {other:?}"),
    }
    assert_eq!(t.get(&katherine).await["status"], "awaiting_enrollment");

    // Linked with her names, trimmed and upper-cased: released and credited.
    let linked = ops
        .link_member(
            "sales-incentive",
            "005KJ",
            " sky1000006 ",
            "Katherine",
            "Johnson",
            None,
        )
        .await
        .unwrap();
    assert_eq!(linked["link"]["member_number"], "SKY1000006");
    assert_eq!(linked["released"], 1);
    let view = t.wait_for(&katherine, &["credited"]).await;
    assert_eq!(view["member_number"], "******0006");
    let shown = ops.member("sales-incentive", "005KJ").await.unwrap();
    assert_eq!(shown["validation"]["valid"], true);

    // Linked with names the partner does not hold: refused before any reservation.
    let linked = ops
        .link_member(
            "sales-incentive",
            "005GRACE",
            "SKY1000005",
            "Grace",
            "Brewster",
            None,
        )
        .await
        .unwrap();
    assert_eq!(linked["released"], 1);
    let view = t.wait_for(&grace, &["rejected"]).await;
    assert_eq!(view["reason"]["code"], "member_invalid");
    assert!(
        view["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("partner_name_mismatch"),
        "{view:#}"
    );
    assert!(
        view["ledger"].as_array().unwrap().is_empty(),
        "nothing was reserved"
    );

    // A CSV import: refused rows are reported by line, the others linked;
    // Grace, linked already (under the wrong names), gets a proposal.
    let csv = "recipient,member_number,first_name,last_name\n\
               005GRACE,SKY1000005,Grace,Hopper\n\
               005BAD,SKY-1,Nobody,Here\n\
               \"005Q\",\"SKY1000007\",\"Ada\",\"King, Countess\"\n";
    let mut seen = Vec::new();
    let report = ops
        .import_members("sales-incentive", csv, |done, total| {
            seen.push((done, total))
        })
        .await
        .unwrap();
    assert_eq!(report.linked, 1, "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert_eq!(report.failed[0].line, 2);
    assert!(
        report.failed[0].problem.contains("proposed as prop_"),
        "{report:?}"
    );
    assert_eq!(report.failed[1].line, 3);
    assert!(
        report.failed[1].problem.contains("member_number"),
        "{report:?}"
    );
    assert_eq!(seen.last(), Some(&(3, 3)));
    // A second admin confirms the change: Grace's next deal is credited,
    // and carries the change on its timeline.
    let open = ops
        .command("proposals", serde_json::json!({}))
        .await
        .unwrap();
    let proposal = open["proposals"][0]["id"].as_str().unwrap().to_owned();
    lead(&t.base).confirm(&proposal).await.unwrap();
    let regraced = t.accept("enrol-3", &deal("005GRACE", "10000.00")).await;
    let view = t.wait_for(&regraced, &["credited"]).await;
    assert!(
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .unwrap()
                .contains("the member link changed")),
        "{view:#}"
    );
    let history = ops
        .command(
            "link_history",
            serde_json::json!({"program": "sales-incentive", "recipient": "005GRACE"}),
        )
        .await
        .unwrap();
    let history = history["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["by"], "ops-demo");
    assert_eq!(history[1]["confirmed_by"], "ops-lead");
    t.settle().await;
    t.check_ledger();
}

#[tokio::test]
async fn a_paused_program_that_holds_releases_its_requests_when_it_resumes() {
    // Releases come from the resume itself: the sweep is far away.
    let t = spawn_stack(|c| {
        c.waiting_sweep_ms = 3_600_000;
        c.program_refresh_ms = 50;
    })
    .await;
    let active = EXAMPLE_PROGRAMS.replacen(
        "state = \"active\"",
        "state = \"active\"\nwhen_paused = \"hold\"",
        1,
    );
    let paused = active.replacen("state = \"active\"", "state = \"paused\"", 1);
    apply_programs(&t.base, &ProgramFile::parse(&paused).unwrap(), false).await;
    // The intake and eligibility catalogs reload every program_refresh_ms.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let api = &t.api;
    let ids = join_all((0..5).map(|i| async move {
        api.accept(&format!("hold-{i}"), &deal(ADA, "1000.00"))
            .await
    }))
    .await;
    for id in &ids {
        let view = t.wait_for(id, &["held"]).await;
        assert_eq!(view["reason"]["code"], "program_paused");
        assert!(
            view["ledger"].as_array().unwrap().is_empty(),
            "held: nothing reserved"
        );
    }
    let resumed = apply_programs(&t.base, &ProgramFile::parse(&active).unwrap(), false).await;
    assert_eq!(resumed[0].differences, ["state: \"paused\" -> \"active\""]);
    for id in &ids {
        let view = t.wait_for(id, &["credited"]).await;
        assert!(states(&view).contains(&"held".to_owned()), "{view:#}");
    }
    t.settle().await;
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_scheduled_in_flight_puts_each_request_in_exactly_one_mode() {
    use std::time::{Duration, Instant};
    let t = spawn_stack(|c| c.program_refresh_ms = 20).await;
    let realtime = r#"transfer = { mode = "realtime" }"#;
    let weekly =
        r#"transfer = { mode = "scheduled", cron = "0 18 * * FRI", time_zone = "Europe/London" }"#;
    let scheduled = ProgramFile::parse(&EXAMPLE_PROGRAMS.replacen(realtime, weekly, 1)).unwrap();

    // A steady stream of requests; the program switches once some are
    // credited, while those after them are still being decided and
    // credited; the stream goes on until 200 are in, 50 came after, and
    // the switch is in force everywhere (see `settled_switch`).
    let switched = std::sync::atomic::AtomicBool::new(false);
    let switched_at: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let in_force_for = || {
        switched_at
            .lock()
            .unwrap()
            .is_some_and(|at| at.elapsed() > Duration::from_secs(2))
    };
    let stream = async {
        let mut accepted = Vec::new();
        let mut after_switch = 0;
        while accepted.len() < 200 || after_switch < 50 || !in_force_for() {
            let i = accepted.len();
            let id = t
                .accept(&format!("switch-{i}"), &deal(ADA, "1000.00"))
                .await;
            accepted.push((id, Instant::now()));
            if switched.load(std::sync::atomic::Ordering::SeqCst) {
                after_switch += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        accepted
    };
    let switch = async {
        while t.sandbox_credits() < 10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let applied = apply_programs(&t.base, &scheduled, false).await;
        assert_eq!(applied[0].to, Some(1));
        switched.store(true, std::sync::atomic::Ordering::SeqCst);
        *switched_at.lock().unwrap() = Some(Instant::now());
        chrono::Utc::now()
    };
    let (accepted, switched_wall) = tokio::join!(stream, switch);
    // Every function reloads the programs at the start of its first
    // invocation after the refresh interval (20 ms): a request decided a
    // second after the switch was decided by an invocation that knew it,
    // however slow the machine.
    let settled_switch = switched_wall + chrono::Duration::seconds(1);

    let mut modes = BTreeMap::new();
    let mut decided_after = 0;
    for (i, (id, _)) in accepted.iter().enumerate() {
        let view = t.wait_for(id, &["credited", "scheduled"]).await;
        let path = states(&view);
        let decided_at: chrono::DateTime<chrono::Utc> = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["state"] == "reserved")
            .and_then(|e| e["at"].as_str())
            .unwrap()
            .parse()
            .unwrap();
        let dispatched = path.iter().any(|s| s == "dispatching");
        let held = path.iter().any(|s| s == "scheduled");
        assert!(
            dispatched != held,
            "request {i} took both or neither mode: {path:?}"
        );
        let mode = if held {
            let window = view["timeline"].as_array().unwrap().last().unwrap()["detail"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(window.contains("sales-incentive@"), "{window}");
            assert_eq!(
                view["ledger"].as_array().unwrap().len(),
                1,
                "held: reserved only"
            );
            "scheduled"
        } else {
            "realtime"
        };
        if decided_at > settled_switch {
            decided_after += 1;
            assert_eq!(
                mode, "scheduled",
                "request {i} was decided after the switch was in force"
            );
        }
        *modes.entry(mode).or_insert(0u64) += 1;
    }
    assert!(decided_after > 0, "the stream went on past the switch");
    t.settle().await;
    assert_eq!(
        modes.values().sum::<u64>(),
        accepted.len() as u64,
        "none lost: {modes:?}"
    );
    assert_eq!(
        modes.len(),
        2,
        "the switch came part way through: {modes:?}"
    );
    assert_eq!(
        t.sandbox_credits(),
        modes.get("realtime").copied().unwrap_or(0),
        "exactly the real-time ones credited: {modes:?}"
    );
    t.check_ledger();

    // Back to real time: new requests are credited; the held ones stay in their window.
    apply_programs(
        &t.base,
        &ProgramFile::parse(EXAMPLE_PROGRAMS).unwrap(),
        false,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let after = t.accept("switch-back", &deal(ADA, "1000.00")).await;
    t.wait_for(&after, &["credited"]).await;
    let held = t.get(&accepted[accepted.len() - 1].0).await;
    assert_eq!(held["status"], "scheduled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend_the_budget_or_a_cap() {
    let t = spawn_stack(pointsflow_tests::contention_config).await;
    let (credited, rejected) = pointsflow_tests::contend(&t).await;
    pointsflow_tests::assert_contention(&credited, &rejected);
    t.settle().await;
    t.check_ledger();
}

/// A request stored whose send to eligibility failed (stored here without
/// the send) is moved on by nothing in the pipeline. It is not in the
/// unsettled index (it is moving straight on from its receipt): the
/// resolver reads each hour's requests once the hour is over (plus
/// `stalled_after_ms`), finds it still `received`, marks it stalled and
/// queues it to eligibility, and it is credited, once, under one
/// reference; a later run finds nothing stalled. One stored in the hour
/// that is not over yet is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_queue_send_failed_is_picked_up_by_the_resolver() {
    use pointsflow_core::ports::Publish;
    // Half an hour: the hour that is read is over by then, whenever in
    // the hour the test runs.
    let t = spawn_stack(|c| c.stalled_after_ms = 1_800_000).await;
    let now = chrono::Utc::now();
    let earlier = demo_request("never-queued", "3000", now - chrono::TimeDelta::hours(3));
    let this_hour = demo_request("never-queued-yet", "2000", now);
    t.stack.store.create(&earlier).await.unwrap();
    t.stack.store.create(&this_hour).await.unwrap();
    let report = t.stack.dispatch.resolve_unsettled().await.unwrap();
    assert!(report.stalled <= 1, "{report:?}");
    let view = t.wait_for(earlier.id.as_str(), &["credited"]).await;
    assert_eq!(fixed_references(&view).len(), 1);
    let store = &t.stack.store;
    let stored = |id| async move { store.get(id).await.unwrap().unwrap() };
    assert!(stored(&earlier.id).await.stalled, "marked when found");
    let young = stored(&this_hour.id).await;
    assert_eq!(young.state(), StatusKind::Received, "its hour is not over");
    assert!(!young.stalled);
    // Moved on by hand: the test cannot wait for the hour to end.
    t.stack
        .queues
        .eligibility
        .publish(&[pointsflow_core::ports::PipelineMessage {
            request_id: this_hour.id.clone(),
        }])
        .await
        .unwrap();
    t.wait_for(this_hour.id.as_str(), &["credited"]).await;
    t.settle().await;
    let again = t.stack.dispatch.resolve_unsettled().await.unwrap();
    assert_eq!(again.stalled, 0, "nothing left in progress: {again:?}");
    assert_eq!(again.found_stalled, 0, "{again:?}");
    assert!(
        !stored(&this_hour.id).await.stalled,
        "a request that moved on is never marked"
    );
    t.check_ledger();
}

/// A canonical request from the demo source for Ada, received at `at`, as
/// intake would store it.
fn demo_request(
    key: &str,
    amount: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> pointsflow_core::request::PointsRequest {
    NewRequest {
        source: SourceId::parse("demo").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        program: ProgramId::parse("sales-incentive").unwrap(),
        recipient: Recipient {
            id: RecipientId::parse(ADA).unwrap(),
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
