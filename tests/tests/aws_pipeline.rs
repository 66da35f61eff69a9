//! The pipeline on the AWS adapters against the AWS API emulator: intake ->
//! SQS -> eligibility -> SQS -> dispatch -> sandbox partner, with requests
//! and the ledger in DynamoDB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use pointsflow_core::ledger::AccountId;
use pointsflow_core::ports::LedgerRead;
use pointsflow_core::values::{ProgramId, RequestId};
use pointsflow_local::config::{EXAMPLE_PROGRAMS, ProgramFile};
use pointsflow_tests::{
    ADA, AwsTestStack, assert_settled_path, deal, entries_of, fire, opportunity, outbound_message,
    progress, schedule_deals, scheduled_config, spawn_aws_stack,
};
use serde_json::json;

async fn messages_in(t: &AwsTestStack, url: &str) -> u64 {
    let out = t
        .stack
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attributes = out.attributes().unwrap();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attributes
            .get(a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// Waits until both pipeline queues are empty.
async fn settle(t: &AwsTestStack) {
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    loop {
        let left = messages_in(t, &t.stack.eligibility_queue.url).await
            + messages_in(t, &t.stack.dispatch_queue.url).await;
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} messages never drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(t: &AwsTestStack, url: &str, body: String) {
    t.stack
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

async fn budget_available(t: &AwsTestStack) -> u64 {
    let program = ProgramId::parse("sales-incentive").unwrap();
    t.stack
        .ledger
        .balance(&AccountId::budget(&program))
        .await
        .unwrap()
        .available()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_is_credited_once_with_the_ledger_in_dynamodb() {
    let t = spawn_aws_stack(|_| {}).await;
    let id = t.accept("aws-deal-1", &deal(ADA, "12550.00")).await;
    let view = t.wait_for(&id, &["credited", "failed", "rejected"]).await;
    assert_eq!(view["status"], "credited", "{view:#}");
    let ledger: Vec<&str> = view["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(ledger, ["pending", "post_pending"]);
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!((sandbox.stats().credits, sandbox.stats().points), (1, 251));
    assert_eq!(budget_available(&t).await, 10_000_000 - 251);
    let entries = entries_of(t.stack.ledger.as_ref(), &id).await;
    assert_eq!(entries.len(), 2, "the entries are in DynamoDB");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_delivered_again_credits_once() {
    let t = spawn_aws_stack(|_| {}).await;
    let id = t.accept("aws-deal-dup", &deal(ADA, "5000.00")).await;
    let message = json!({"request_id": id}).to_string();
    // Extra copies on both queues, while the first is still on its way.
    for url in [
        &t.stack.eligibility_queue.url,
        &t.stack.eligibility_queue.url,
        &t.stack.dispatch_queue.url,
    ] {
        send(&t, url, message.clone()).await;
    }
    t.wait_for(&id, &["credited"]).await;
    settle(&t).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().credits, 1);
    assert_eq!(budget_available(&t).await, 10_000_000 - 100);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_retried_alone_and_ends_in_the_dead_letter_queue() {
    let t = spawn_aws_stack(|c| {
        c.queues.max_receive_count = 2;
        c.queues.batch_size = 10;
        c.queues.concurrency = 1;
    })
    .await;
    // The poison goes first so it shares a batch with the good requests.
    send(
        &t,
        &t.stack.eligibility_queue.url,
        "this is not a pipeline message".into(),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            t.accept(&format!("aws-deal-good-{i}"), &deal(ADA, "1000.00"))
                .await,
        );
    }
    for id in &ids {
        let view = t.wait_for(id, &["credited", "failed", "rejected"]).await;
        assert_eq!(view["status"], "credited", "{view:#}");
    }
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    let dead = loop {
        let out = t
            .stack
            .sqs
            .receive_message()
            .queue_url(&t.stack.eligibility_queue.dlq_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if !out.messages().is_empty() {
            break out
                .messages()
                .iter()
                .map(|m| m.body().unwrap_or("").to_owned())
                .collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "the poison message never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(dead, ["this is not a pipeline message"]);
    assert_eq!(t.stack.sandbox.as_ref().unwrap().stats().credits, 3);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_message_is_acknowledged_and_credited_once() {
    let t = spawn_aws_stack(|_| {}).await;
    let message = outbound_message(vec![
        opportunity(1, ADA, "Closed Won", "12550.00"),
        opportunity(2, ADA, "Prospecting", "90000.00"),
        opportunity(3, ADA, "Closed Won", "5000.00"),
    ]);
    let (status, body) = t.post_outbound(message.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Ack>true</Ack>"), "{body}");
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox.stats().credits < 2 {
        assert!(
            Instant::now() < deadline,
            "the two Closed Won deals were never credited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Salesforce retries the message: acknowledged, nothing new.
    let (status, body) = t.post_outbound(message).await;
    assert_eq!(status, 200, "{body}");
    settle(&t).await;
    assert_eq!(
        (sandbox.stats().credits, sandbox.stats().points),
        (2, 251 + 100)
    );
    assert_eq!(budget_available(&t).await, 10_000_000 - 351);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend_in_dynamodb() {
    let t = spawn_aws_stack(pointsflow_tests::contention_config).await;
    let (credited, rejected) = pointsflow_tests::contend(&t).await;
    pointsflow_tests::assert_contention(&credited, &rejected);
    settle(&t).await;
    assert_eq!(budget_available(&t).await, 0);
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(
        (sandbox.stats().credits, sandbox.stats().points),
        (50, 5_000)
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_applied_and_members_linked_live_in_dynamodb() {
    let t = spawn_aws_stack(|c| {
        c.program_refresh_ms = 50;
        c.waiting_sweep_ms = 3_600_000;
        c.programs[0].wait_for_enrollment_hours = Some(72);
    })
    .await;
    let ops = pointsflow_tests::ops(&t.base);
    // Waiting for enrollment, found through the table's sparse index and
    // released by the link.
    let waiting = t.accept("aws-enrol-1", &deal("005GRACE", "10000.00")).await;
    t.wait_for(&waiting, &["awaiting_enrollment"]).await;
    let linked = ops
        .link_member(
            "sales-incentive",
            "005GRACE",
            "SKY1000005",
            "Grace",
            "Hopper",
            None,
        )
        .await
        .unwrap();
    assert_eq!(linked["released"], 1);
    t.wait_for(&waiting, &["credited"]).await;
    let shown = ops.member("sales-incentive", "005GRACE").await.unwrap();
    assert_eq!(
        shown["validation"]["valid"], true,
        "the validation is kept in DynamoDB"
    );

    // A revision proposed and confirmed over the API, kept in DynamoDB
    // (the proposal too), reaches eligibility.
    let richer = EXAMPLE_PROGRAMS.replacen("per = \"100\"", "per = \"50\"", 1);
    let applied =
        pointsflow_tests::apply_programs(&t.base, &ProgramFile::parse(&richer).unwrap(), false)
            .await;
    assert_eq!(applied[0].to, Some(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = t.accept("aws-prog-1", &deal(ADA, "10000.00")).await;
    assert_eq!(t.wait_for(&after, &["credited"]).await["points"], 400);
    let listed = ops.programs().await.unwrap();
    let sales = listed["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"]["id"] == "sales-incentive")
        .unwrap()
        .clone();
    assert_eq!(sales["revision"], 1);
    assert_eq!(sales["applied_by"], "ops-demo");
    settle(&t).await;
}

/// What each window member should have been credited (see `scheduled_config`).
fn window_sums(requests: &[(String, String, u64)]) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (_, recipient, points) in requests {
        let n: usize = recipient.trim_start_matches("0055g000Win").parse().unwrap();
        *out.entry(format!("SKY4{n:06}")).or_default() += points;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_fired_three_times_is_dispatched_once_on_dynamodb_and_sqs() {
    let mut recipients = Vec::new();
    let t = spawn_aws_stack(|c| {
        recipients = scheduled_config(c, true, 4);
        c.queues.function_timeout_ms = 10_000;
        c.queues.visibility_timeout_ms = 12_000;
    })
    .await;
    let (requests, window) = schedule_deals(&t, &recipients, 3, "aws-thrice").await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().credits, 0);
    let (a, b, c) = tokio::join!(
        fire(&t.stack.dispatch, &window),
        fire(&t.stack.dispatch, &window),
        fire(&t.stack.dispatch, &window)
    );
    assert!([a, b, c].iter().all(|r| r.window.to_string() == window));
    for (id, _, _) in &requests {
        t.wait_for(id, &["credited"]).await;
    }
    settle(&t).await;
    assert_eq!(sandbox.stats().credits, 4, "one credit per member, once");
    assert_eq!(sandbox.credited_by_member(), window_sums(&requests));
    let total: u64 = requests.iter().map(|r| r.2).sum();
    assert_eq!(budget_available(&t).await, 10_000_000 - total);
    let run = progress(t.stack.windows.as_ref(), &window).await;
    // Planned once in effect, however many invocations took part.
    assert_eq!(run.state, pointsflow_core::window::RunState::Planned);
    assert!(run.in_progress.is_empty(), "{run:?}");
    assert_eq!(
        (
            run.counts.requests,
            run.counts.credited,
            run.counts.credited_points
        ),
        (12, 4, total)
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_run_killed_half_way_resumes_on_dynamodb_and_sqs() {
    let mut recipients = Vec::new();
    let mut t = spawn_aws_stack(|c| {
        recipients = scheduled_config(c, true, 40);
        c.sandbox.latency_ms = 20;
        c.queues.function_timeout_ms = 10_000;
        c.queues.visibility_timeout_ms = 1_000;
    })
    .await;
    let (requests, window) = schedule_deals(&t, &recipients, 2, "aws-kill").await;
    // The partner holds every credit past the 15th: the kill lands part
    // way through, whatever the machine's speed.
    t.stack.sandbox.as_ref().unwrap().hold_credits_after(15);
    fire(&t.stack.dispatch, &window).await;
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    while t.stack.sandbox.as_ref().unwrap().stats().credits < 15 {
        assert!(Instant::now() < deadline, "never got going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t.stack.crash_dispatch();
    let at_crash = t.stack.sandbox.as_ref().unwrap().stats().credits;
    assert!(at_crash < 40, "the kill came too late to test anything");
    t.stack.sandbox.as_ref().unwrap().release_credits();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    t.stack.restart_dispatch();
    for (id, _, _) in &requests {
        t.wait_for_within(id, &["credited"], pointsflow_tests::PATIENCE)
            .await;
    }
    settle(&t).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(
        sandbox.stats().credits,
        40,
        "every member credited exactly once"
    );
    assert_eq!(sandbox.credited_by_member(), window_sums(&requests));
    let total: u64 = requests.iter().map(|r| r.2).sum();
    assert_eq!(budget_available(&t).await, 10_000_000 - total);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_outcomes_are_resolved_by_reference_on_dynamodb_and_sqs() {
    use pointsflow_sandbox::magic;
    let t = spawn_aws_stack(|c| {
        c.queues.function_timeout_ms = 10_000;
        c.queues.visibility_timeout_ms = 12_000;
        c.queues.max_receive_count = 20;
    })
    .await;
    let amount = |points| pointsflow_tests::amount_for(points);
    // The partner credits, then the answer is lost (a timeout); a credit
    // pending at the partner that settles credited; one that settles failed.
    let timeout = t
        .accept(
            "aws-timeout",
            &deal(ADA, &amount(magic::TIMEOUT_AFTER_CREDIT)),
        )
        .await;
    let credited = t
        .accept(
            "aws-pending-ok",
            &deal(ADA, &amount(magic::PENDING_THEN_CREDITED)),
        )
        .await;
    let failed = t
        .accept(
            "aws-pending-ko",
            &deal(ADA, &amount(magic::PENDING_THEN_FAILED)),
        )
        .await;
    let view = t
        .wait_for_within(
            &timeout,
            &["credited", "failed"],
            pointsflow_tests::PATIENCE,
        )
        .await;
    assert_eq!(view["status"], "credited", "{view:#}");
    assert_settled_path(&view, &["unknown"], "credited");
    let view = t
        .wait_for_within(
            &credited,
            &["credited", "failed"],
            pointsflow_tests::PATIENCE,
        )
        .await;
    assert_settled_path(&view, &["partner_pending"], "credited");
    let view = t
        .wait_for_within(&failed, &["credited", "failed"], pointsflow_tests::PATIENCE)
        .await;
    assert_settled_path(&view, &["partner_pending"], "failed");
    assert_eq!(view["reason"]["code"], "partner_member_closed");
    settle(&t).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let stats = sandbox.stats();
    assert_eq!(
        stats.credits, 2,
        "the timed-out credit once, the pending one once"
    );
    assert_eq!(
        stats.points,
        magic::TIMEOUT_AFTER_CREDIT + magic::PENDING_THEN_CREDITED
    );
    // The failed one's points went back to the budget, and its cap with them.
    assert_eq!(
        budget_available(&t).await,
        10_000_000 - magic::TIMEOUT_AFTER_CREDIT - magic::PENDING_THEN_CREDITED
    );
    let program = ProgramId::parse("sales-incentive").unwrap();
    let budget = t
        .stack
        .ledger
        .balance(&AccountId::budget(&program))
        .await
        .unwrap();
    assert_eq!(
        budget.debits_posted,
        magic::TIMEOUT_AFTER_CREDIT + magic::PENDING_THEN_CREDITED
    );
    for id in [&timeout, &credited, &failed] {
        let entries = entries_of(t.stack.ledger.as_ref(), id).await;
        assert!(
            entries.iter().any(|e| e.pending_id().is_some()),
            "nothing left reserved: {entries:?}"
        );
    }
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_given_up_on_is_resolved_by_the_resolver_on_dynamodb_and_sqs() {
    let t = spawn_aws_stack(|c| {
        c.queues.max_receive_count = 2;
        c.queues.function_timeout_ms = 10_000;
        c.queues.visibility_timeout_ms = 12_000;
        c.resolve_after_ms = 0;
        for p in &mut c.partners {
            p.circuit_failures = 1_000;
        }
    })
    .await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let warm = t.accept("aws-warm", &deal(ADA, "1000.00")).await;
    t.wait_for(&warm, &["credited"]).await;
    sandbox.set_down(true);
    let id = t.accept("aws-given-up", &deal(ADA, "2000.00")).await;
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    while messages_in(&t, &t.stack.dispatch_queue.dlq_url).await == 0 {
        assert!(
            Instant::now() < deadline,
            "never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = t.get(&id).await["status"].clone();
    assert!(
        status == "unknown" || status == "dispatching",
        "an ambiguous outcome is never voided: {status}"
    );
    sandbox.set_down(false);
    let mut requeued = 0;
    // The index is eventually consistent: the next runs find it.
    for _ in 0..20 {
        requeued = t.stack.dispatch.resolve_unsettled().await.unwrap().requeued;
        if requeued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(requeued, 1);
    t.wait_for_within(&id, &["credited"], pointsflow_tests::PATIENCE)
        .await;
    assert_eq!(sandbox.stats().credits, 2, "credited once");
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_from_a_loyalty_commerce_partner_is_looked_up_not_ordered_again_on_dynamodb_and_sqs()
 {
    use pointsflow_sandbox::magic;
    let t = spawn_aws_stack(|c| {
        c.queues.function_timeout_ms = 10_000;
        c.queues.visibility_timeout_ms = 12_000;
        for p in &mut c.partners {
            p.protocol = pointsflow_local::config::PartnerProtocol::LoyaltyCommerce;
        }
    })
    .await;
    let lost = t
        .accept(
            "aws-lcp-lost",
            &deal(
                ADA,
                &pointsflow_tests::amount_for(magic::TIMEOUT_AFTER_CREDIT),
            ),
        )
        .await;
    let view = t
        .wait_for_within(&lost, &["credited", "failed"], pointsflow_tests::PATIENCE)
        .await;
    assert_eq!(view["status"], "credited", "{view:#}");
    settle(&t).await;
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.stats().credits, 1, "the order was placed once");
    assert_eq!(
        budget_available(&t).await,
        10_000_000 - magic::TIMEOUT_AFTER_CREDIT
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_reverse_and_reconcile_on_dynamodb_and_sqs() {
    let t = spawn_aws_stack(|c| {
        c.queues.function_timeout_ms = 10_000;
        c.queues.visibility_timeout_ms = 12_000;
    })
    .await;
    let id = t.accept("aws-ops-1", &deal(ADA, "12550.00")).await;
    let view = t
        .wait_for_within(&id, &["credited", "failed"], pointsflow_tests::PATIENCE)
        .await;
    assert_eq!(view["status"], "credited", "{view:#}");
    let run = |command: serde_json::Value| {
        let mut command = command;
        command["operator"] = json!("ops-demo");
        t.stack.operations.invoke(command)
    };
    // A partial reversal run twice, then one above what is left.
    for _ in 0..2 {
        let answer = run(
            json!({"command": "reverse", "request_id": id, "points": 51, "reason": "deal reduced"}),
        )
        .await;
        assert!(answer.ok, "{answer:#?}");
    }
    let too_much =
        run(json!({"command": "reverse", "request_id": id, "points": 201, "reason": "x"})).await;
    assert_eq!(too_much.error.unwrap().code, "reversal_exceeds_credit");
    let ledger = &t.stack.ledger;
    let request = RequestId::parse(&id).unwrap();
    let entries = ledger.entries_for(&request).await.unwrap();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let member = pointsflow_core::ledger::invariants::balances_from_entries(&entries).unwrap()
        [&AccountId::member(
            &pointsflow_core::values::PartnerId::parse("sandbox-air").unwrap(),
            &pointsflow_core::values::MemberNumber::parse("SKY1000001").unwrap(),
        )];
    assert_eq!((member.credits_posted, member.debits_posted), (251, 51));
    assert_eq!(
        t.stack.sandbox.as_ref().unwrap().credited_by_member()["SKY1000001"],
        200
    );
    // The reconciliation agrees, and is stored; the audit log has it all.
    let answer = run(json!({"command": "reconcile", "last_hours": 1})).await;
    let report = answer.result.unwrap();
    assert_eq!(report["mismatch_count"], 0, "{report:#}");
    assert_eq!(report["ledger"]["reversed"], 51);
    let stored = run(json!({"command": "report", "id": report["id"]})).await;
    assert!(stored.ok, "{stored:#?}");
    let audit = run(json!({"command": "audit"})).await;
    let commands: Vec<String> = audit.result.unwrap()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        commands,
        [
            "reverse",
            "reverse",
            "reverse",
            "reconcile",
            "report",
            "audit"
        ]
    );
    t.stack.shutdown().await;
}
