//! The operations function on the local stack: every command, its bad
//! input answered with a clear error and nothing changed, and each command
//! run twice having the effect of once. Reversals end to end with the
//! sandbox partner, the ledger invariants holding after.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pointsflow_core::ports::RequestGet;
use pointsflow_core::values::RequestId;
use pointsflow_operations::Answer;
use pointsflow_tests::{ADA, OPERATOR_KEY, TestStack, deal, spawn_stack};
use serde_json::{Value, json};

/// A well-formed id no request has.
const ABSENT: &str = "pr_00000000000000000000000000000000";

async fn run(t: &TestStack, command: Value) -> Answer {
    let mut command = command;
    command["operator"] = json!("ops-demo");
    t.stack.operations.invoke(command).await
}

fn ok(answer: &Answer) -> &Value {
    assert!(answer.ok, "{answer:#?}");
    answer.result.as_ref().unwrap()
}

fn refused<'a>(answer: &'a Answer, code: &str) -> &'a str {
    assert!(!answer.ok, "{answer:#?}");
    let error = answer.error.as_ref().unwrap();
    assert_eq!(error.code, code, "{answer:#?}");
    &error.message
}

/// The stored request, as JSON, for before/after comparisons.
async fn stored(t: &TestStack, id: &str) -> Value {
    let r = t
        .stack
        .store
        .get(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    serde_json::to_value(r).unwrap()
}

async fn credited(t: &TestStack, key: &str, amount: &str) -> String {
    let id = t.accept(key, &deal(ADA, amount)).await;
    let view = t.wait_for(&id, &["credited", "failed", "rejected"]).await;
    assert_eq!(view["status"], "credited", "{view:#}");
    id
}

#[tokio::test]
async fn get_shows_the_timeline_and_the_ledger_and_search_finds_requests() {
    let t = spawn_stack(|_| {}).await;
    let id = credited(&t, "ops-get-1", "12550.00").await;
    let answer = run(&t, json!({"command": "get", "request_id": id})).await;
    let result = ok(&answer);
    assert_eq!(result["request"]["status"]["state"], "credited");
    let timeline = result["request"]["timeline"].as_array().unwrap();
    assert_eq!(timeline.first().unwrap()["state"], "received");
    assert_eq!(timeline.last().unwrap()["state"], "credited");
    let kinds: Vec<&str> = result["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pending", "post_pending"]);

    // Search by recipient, member number, and status and program over a
    // period (the stack runs on the system clock).
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::days(1)).to_rfc3339();
    let to = (now + chrono::Duration::days(1)).to_rfc3339();
    for filter in [
        json!({"recipient": ADA}),
        json!({"member": "SKY1000001"}),
        json!({"status": "credited", "program": "sales-incentive", "from": from, "to": to}),
    ] {
        let mut command = json!({"command": "search"});
        command
            .as_object_mut()
            .unwrap()
            .extend(filter.as_object().unwrap().clone());
        let answer = run(&t, command.clone()).await;
        let rows = ok(&answer)["requests"].as_array().unwrap().clone();
        assert!(
            rows.iter().any(|r| r["request_id"] == id.as_str()),
            "{command}: {rows:#?}"
        );
    }
    let none = run(
        &t,
        json!({"command": "search", "status": "failed", "from": from, "to": to}),
    )
    .await;
    assert_eq!(ok(&none)["requests"].as_array().unwrap().len(), 0);
    // State or program alone would read every request ever made: refused.
    let message = refused(
        &run(&t, json!({"command": "search", "status": "failed"})).await,
        "invalid_command",
    )
    .to_owned();
    assert!(message.contains("period"), "{message}");
    let message = refused(
        &run(
            &t,
            json!({"command": "search", "status": "failed", "from": "2026-01-01", "to": "2026-03-01"}),
        )
        .await,
        "invalid_command",
    )
    .to_owned();
    assert!(message.contains("31 days"), "{message}");

    // Bad input: a clear error naming the field.
    let unknown = run(&t, json!({"command": "get", "request_id": ABSENT})).await;
    refused(&unknown, "not_found");
    let message = refused(
        &run(&t, json!({"command": "get", "request_id": "req_nope"})).await,
        "invalid_command",
    )
    .to_owned();
    assert!(message.contains("request id"), "{message}");
    let message = refused(
        &run(&t, json!({"command": "search"})).await,
        "invalid_command",
    )
    .to_owned();
    assert!(message.contains("search needs one of"), "{message}");
    let message = refused(
        &run(&t, json!({"command": "search", "status": "lost"})).await,
        "invalid_command",
    )
    .to_owned();
    assert!(message.contains("lost"), "{message}");
    let message = refused(
        &t.stack
            .operations
            .invoke(json!({"command": "get", "request_id": id}))
            .await,
        "invalid_command",
    )
    .to_owned();
    assert!(message.contains("operator"), "{message}");
    refused(
        &run(&t, json!({"command": "explode"})).await,
        "invalid_command",
    );
    refused(
        &run(&t, json!({"command": "get", "request_id": id, "extra": 1})).await,
        "invalid_command",
    );

    // Every invocation with an operator is in the audit log, with its end.
    let audit = t.stack.audit.all();
    assert!(audit.len() >= 7, "{audit:#?}");
    assert!(audit.iter().all(|e| e.operator.as_str() == "ops-demo"));
    assert!(audit.iter().all(|e| e.outcome.is_some()));
    assert!(
        audit
            .iter()
            .any(|e| e.command == "get" && e.outcome.as_ref().unwrap().code == "not_found")
    );
    t.stack.shutdown().await;
}

#[tokio::test]
async fn approve_and_decline_are_recorded_once_and_refused_in_the_wrong_state() {
    let t = spawn_stack(|_| {}).await;
    let big = t.accept("ops-approve-1", &deal(ADA, "1300000.00")).await;
    let other = t.accept("ops-approve-2", &deal(ADA, "1400000.00")).await;
    t.wait_for(&big, &["awaiting_approval"]).await;
    t.wait_for(&other, &["awaiting_approval"]).await;

    let first = run(
        &t,
        json!({"command": "approve", "request_id": big, "reason": "checked"}),
    )
    .await;
    assert_eq!(ok(&first)["changed"], true);
    let view = t.wait_for(&big, &["credited"]).await;
    assert_eq!(view["approval"]["by"], "ops-demo");
    // Approving again changes nothing.
    let before = stored(&t, &big).await;
    let again = run(
        &t,
        json!({"command": "approve", "request_id": big, "reason": "checked"}),
    )
    .await;
    assert_eq!(ok(&again)["changed"], false);
    assert_eq!(stored(&t, &big).await, before);
    // Declining what was approved is refused; nothing changes.
    refused(
        &run(
            &t,
            json!({"command": "decline", "request_id": big, "reason": "no"}),
        )
        .await,
        "already_decided",
    );
    assert_eq!(stored(&t, &big).await, before);

    // A decline needs a reason; with one it rejects, once.
    refused(
        &run(&t, json!({"command": "decline", "request_id": other})).await,
        "invalid_command",
    );
    refused(
        &run(
            &t,
            json!({"command": "decline", "request_id": other, "reason": " "}),
        )
        .await,
        "invalid_field",
    );
    let declined = run(
        &t,
        json!({"command": "decline", "request_id": other, "reason": "duplicate deal"}),
    )
    .await;
    assert_eq!(ok(&declined)["state"], "rejected");
    let before = stored(&t, &other).await;
    let twice = run(
        &t,
        json!({"command": "decline", "request_id": other, "reason": "duplicate deal"}),
    )
    .await;
    assert_eq!(ok(&twice)["changed"], false);
    assert_eq!(stored(&t, &other).await, before);

    // Approving a request that never waited for approval is refused.
    let small = credited(&t, "ops-approve-3", "1000.00").await;
    let before = stored(&t, &small).await;
    refused(
        &run(&t, json!({"command": "approve", "request_id": small})).await,
        "not_awaiting_approval",
    );
    assert_eq!(stored(&t, &small).await, before);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn a_reversal_takes_points_back_at_the_partner_and_in_the_ledger_once() {
    let t = spawn_stack(|_| {}).await;
    // 12,550 USD: 251 points.
    let id = credited(&t, "ops-reverse-1", "12550.00").await;
    let credits_before = t.sandbox_credits();

    // Above what was credited: refused, nothing changed anywhere.
    let before = stored(&t, &id).await;
    let message = refused(
        &run(&t, json!({"command": "reverse", "request_id": id, "points": 252, "reason": "deal reduced"})).await,
        "reversal_exceeds_credit",
    )
    .to_owned();
    assert!(message.contains("251 credited"), "{message}");
    assert_eq!(stored(&t, &id).await, before);
    refused(
        &run(
            &t,
            json!({"command": "reverse", "request_id": id, "points": 10}),
        )
        .await,
        "invalid_command",
    );
    refused(
        &run(
            &t,
            json!({"command": "reverse", "request_id": id, "points": 0, "reason": "x"}),
        )
        .await,
        "reversal_exceeds_credit",
    );
    assert_eq!(stored(&t, &id).await, before);
    t.check_ledger();

    // A partial reversal, run twice: once at the partner, once in the ledger.
    let partial =
        json!({"command": "reverse", "request_id": id, "points": 100, "reason": "deal reduced"});
    let first = run(&t, partial.clone()).await;
    assert_eq!(
        ok(&first)["reversal"]["reversal_state"],
        "done",
        "{first:#?}"
    );
    let after_first = stored(&t, &id).await;
    let second = run(&t, partial).await;
    assert_eq!(ok(&second)["reversal"]["id"], ok(&first)["reversal"]["id"]);
    assert_eq!(stored(&t, &id).await, after_first);
    assert_eq!(after_first["status"]["state"], "credited");
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member()["SKY1000001"], 151);
    t.check_ledger();

    // The rest, then nothing is left to reverse.
    let rest = run(&t, json!({"command": "reverse", "request_id": id, "reason": "deal lost", "reversal_id": "lost-1"})).await;
    assert_eq!(ok(&rest)["reversal"]["points"], 151);
    let view = t.get(&id).await;
    assert_eq!(view["status"], "reversed", "{view:#}");
    refused(
        &run(
            &t,
            json!({"command": "reverse", "request_id": id, "points": 1, "reason": "more"}),
        )
        .await,
        "not_credited",
    );
    // The same reversal id with other points is refused.
    refused(
        &run(&t, json!({"command": "reverse", "request_id": id, "points": 5, "reason": "deal lost", "reversal_id": "lost-1"})).await,
        "reversal_id_reused",
    );
    assert!(
        !sandbox.credited_by_member().contains_key("SKY1000001")
            || sandbox.credited_by_member()["SKY1000001"] == 0
    );
    assert_eq!(
        t.sandbox_credits(),
        credits_before,
        "a reversal credits nothing"
    );
    t.check_ledger();

    // The ledger has the two reversals as new entries; nothing was changed.
    let answer = run(&t, json!({"command": "get", "request_id": id})).await;
    let entries = ok(&answer)["entries"].as_array().unwrap().clone();
    let ids: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(entries.len(), 4, "{ids:?}");
    assert!(ids.iter().filter(|i| i.contains(":reverse:")).count() == 2);

    // Reversing a request that was never credited is refused.
    let waiting = t.accept("ops-reverse-2", &deal(ADA, "1300000.00")).await;
    t.wait_for(&waiting, &["awaiting_approval"]).await;
    refused(
        &run(
            &t,
            json!({"command": "reverse", "request_id": waiting, "reason": "x"}),
        )
        .await,
        "not_credited",
    );
    t.stack.shutdown().await;
}

#[tokio::test]
async fn resolve_queues_only_unsettled_requests_and_redrive_moves_dead_letters_back() {
    let t = spawn_stack(|_| {}).await;
    let id = credited(&t, "ops-resolve-1", "12550.00").await;
    refused(
        &run(&t, json!({"command": "resolve", "request_id": id})).await,
        "not_unsettled",
    );
    refused(
        &run(&t, json!({"command": "resolve", "request_id": ABSENT})).await,
        "not_found",
    );

    // A message that could not be processed sits in the dispatch DLQ; after
    // the fix, redrive moves it back and dispatch finishes the request.
    let dlq = &t.stack.queues.dispatch_dlq;
    dlq.send_batch(&[json!({"request_id": id}).to_string()])
        .unwrap();
    assert_eq!(dlq.depth(), 1);
    let answer = run(&t, json!({"command": "redrive", "queue": "dispatch"})).await;
    assert_eq!(ok(&answer)["report"]["moved"], 1, "{answer:#?}");
    assert_eq!(ok(&answer)["report"]["left"], 0);
    t.settle().await;
    // Run twice: nothing more to move.
    let again = run(&t, json!({"command": "redrive", "queue": "dispatch"})).await;
    assert_eq!(ok(&again)["report"]["moved"], 0);
    refused(
        &run(&t, json!({"command": "redrive", "queue": "nowhere"})).await,
        "invalid_command",
    );
    refused(
        &run(
            &t,
            json!({"command": "redrive", "queue": "dispatch", "max": 0}),
        )
        .await,
        "invalid_command",
    );
    assert_eq!(t.get(&id).await["status"], "credited");
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_runs_commands_as_the_key_holder_only() {
    let t = spawn_stack(|_| {}).await;
    let id = credited(&t, "ops-http-1", "12550.00").await;
    let url = format!("{}/v1/admin/commands/get", t.base);
    let response = t
        .client
        .post(&url)
        .json(&json!({"request_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Who runs a command is the key's holder, never a field of the body.
    let response = t
        .client
        .post(&url)
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"request_id": id, "operator": "someone-else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_command");
    let answer: Answer = t
        .client
        .post(&url)
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({"request_id": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer.ok, "{answer:#?}");
    let audit = t.stack.audit.all();
    assert!(!audit.is_empty());
    assert!(audit.iter().all(|e| e.operator.as_str() == "ops-demo"
        && e.verified == pointsflow_core::access::Verified::Key));
    t.stack.shutdown().await;
}

#[tokio::test]
async fn retry_sends_a_fixed_request_through_again_under_a_new_reference() {
    let t = spawn_stack(|_| {}).await;
    // Rejected: nobody linked the recipient yet.
    let grace = "0055g00000GraceAA1";
    let id = t.accept("ops-retry-1", &deal(grace, "12550.00")).await;
    let view = t.wait_for(&id, &["rejected"]).await;
    assert_eq!(view["reason"]["code"], "not_enrolled", "{view:#}");
    refused(
        &run(&t, json!({"command": "retry", "request_id": id})).await,
        "invalid_command",
    );
    // The cause fixed (the recipient linked), the retry credits it.
    pointsflow_tests::ops(&t.base)
        .link_member(
            "sales-incentive",
            grace,
            "SKY1000005",
            "Grace",
            "Hopper",
            None,
        )
        .await
        .unwrap();
    let first = run(
        &t,
        json!({"command": "retry", "request_id": id, "reason": "linked now"}),
    )
    .await;
    assert_eq!(ok(&first)["changed"], true, "{first:#?}");
    let view = t.wait_for(&id, &["credited", "failed", "rejected"]).await;
    assert_eq!(view["status"], "credited", "{view:#}");
    // Run again: the request is no longer rejected; nothing changes.
    let before = stored(&t, &id).await;
    refused(
        &run(
            &t,
            json!({"command": "retry", "request_id": id, "reason": "linked now"}),
        )
        .await,
        "not_retryable",
    );
    assert_eq!(stored(&t, &id).await, before);
    t.check_ledger();

    // Failed at the partner (a refusal for good): a retry is a new round
    // with its own reservation and a new reference; the old one is never
    // sent again.
    let failed = t
        .accept(
            "ops-retry-2",
            &deal(
                ADA,
                &pointsflow_tests::amount_for(pointsflow_sandbox::magic::REJECT),
            ),
        )
        .await;
    let view = t.wait_for(&failed, &["failed"]).await;
    let first_reference = view["partner_reference"].as_str().unwrap().to_owned();
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    let first_attempts = sandbox.attempts(&first_reference);
    let answer = run(
        &t,
        json!({"command": "retry", "request_id": failed, "reason": "try again"}),
    )
    .await;
    assert_eq!(ok(&answer)["round"], 2);
    let view = t.wait_for(&failed, &["failed"]).await;
    let second_reference = view["partner_reference"].as_str().unwrap().to_owned();
    assert_ne!(first_reference, second_reference);
    assert_eq!(
        sandbox.attempts(&first_reference),
        first_attempts,
        "the old reference is not sent again"
    );
    assert!(sandbox.attempts(&second_reference) >= 1);
    let answer = run(&t, json!({"command": "get", "request_id": failed})).await;
    let ids: Vec<String> = ok(&answer)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4, "two reservations, each voided: {ids:?}");
    // A declined request is final.
    let big = t.accept("ops-retry-3", &deal(ADA, "1300000.00")).await;
    t.wait_for(&big, &["awaiting_approval"]).await;
    run(
        &t,
        json!({"command": "decline", "request_id": big, "reason": "no"}),
    )
    .await;
    refused(
        &run(
            &t,
            json!({"command": "retry", "request_id": big, "reason": "please"}),
        )
        .await,
        "not_retryable",
    );
    t.check_ledger();
    t.stack.shutdown().await;
}
