//! Clawbacks: an Opportunity that leaves Closed Won after its points were
//! credited raises a clawback through intake and eligibility; the program
//! says whether its points are taken back at once or after an operator
//! approves. End to end with the sandbox partner, the ledger invariants
//! holding after, and Salesforce's retries of the undoing message changing
//! nothing more.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pointsflow_core::ports::RequestGet;
use pointsflow_core::program::OnUndo;
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::RequestId;
use pointsflow_tests::{ADA, TestStack, amount_for, opportunity, outbound_message, spawn_stack};
use serde_json::json;

/// Sends the deal as an Outbound Message and waits for it to be credited.
async fn won(t: &TestStack, n: usize, points: u64) -> PointsRequest {
    let message = outbound_message(vec![opportunity(n, ADA, "Closed Won", &amount_for(points))]);
    let (status, body) = t.post_outbound(message).await;
    assert_eq!(status, 200, "{body}");
    t.settle().await;
    let name = json!(format!("Deal {n}"));
    let request = only(t, |r| {
        r.undoes.is_none() && r.event.attributes.get("Name") == Some(&name)
    });
    let settled = wait_state(t, &request.id, &["credited", "failed", "rejected"]).await;
    assert_eq!(settled.state(), StatusKind::Credited, "{settled:#?}");
    settled
}

/// Polls the store until the request is in one of `states` (its ledger
/// entry written too, for a settled one), failing after 10 s.
async fn wait_state(t: &TestStack, id: &RequestId, states: &[&str]) -> PointsRequest {
    let deadline = std::time::Instant::now() + pointsflow_tests::PATIENCE;
    loop {
        let r = t.stack.store.get(id).await.unwrap().unwrap();
        if states.contains(&r.state().as_str()) {
            t.settle().await;
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never reached {states:?}: {r:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state_of(t: &TestStack, id: &RequestId) -> StatusKind {
    t.stack.store.get(id).await.unwrap().unwrap().state()
}

fn only(t: &TestStack, pick: impl Fn(&PointsRequest) -> bool) -> PointsRequest {
    let all = t.stack.store.all().unwrap();
    let found: Vec<PointsRequest> = all.iter().filter(|r| pick(r)).cloned().collect();
    let seen: Vec<_> = all
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.state(),
                r.undoes.clone(),
                r.event.attributes.clone(),
            )
        })
        .collect();
    assert_eq!(found.len(), 1, "{seen:#?}");
    found.into_iter().next().unwrap()
}

/// Sends the deal again in `stage`, as many times as Salesforce retries.
async fn moved(t: &TestStack, n: usize, stage: &str, points: u64, times: usize) {
    let message = outbound_message(vec![opportunity(n, ADA, stage, &amount_for(points))]);
    for _ in 0..times {
        let (status, body) = t.post_outbound(message.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("<Ack>true</Ack>"), "{body}");
    }
    t.settle().await;
}

async fn clawback_of(t: &TestStack, original: &PointsRequest, states: &[&str]) -> PointsRequest {
    let undo = only(t, |r| r.undoes.as_ref() == Some(&original.id));
    wait_state(t, &undo.id, states).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_that_leaves_closed_won_is_clawed_back_once() {
    let t = spawn_stack(|c| c.programs[0].on_undo = OnUndo::Reverse).await;
    let original = won(&t, 1, 300).await;
    let kept = won(&t, 2, 200).await;
    let credits = t.sandbox_credits();

    // Closed Lost, sent three times (Salesforce retries): one clawback.
    moved(&t, 1, "Closed Lost", 300, 3).await;
    let undo = clawback_of(&t, &original, &["rejected"]).await;
    let reason = undo.status.reason().unwrap();
    assert_eq!(reason.code, "clawback_reversed", "{undo:#?}");
    assert_eq!(state_of(&t, &original.id).await, StatusKind::Reversed);
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(
        sandbox.credited_by_member()["SKY1000001"],
        200,
        "only the kept deal's points"
    );
    assert_eq!(t.sandbox_credits(), credits, "a clawback credits nothing");
    assert_eq!(state_of(&t, &kept.id).await, StatusKind::Credited);
    t.check_ledger();
    // The events of both: the original's reversal, the clawback's end.
    assert_eq!(
        t.events_of(original.id.as_str()).await,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited",
            "Points Reversal Requested",
            "Points Reversed"
        ]
    );
    assert_eq!(
        t.events_of(undo.id.as_str()).await,
        ["Points Request Received", "Points Clawed Back"]
    );

    // Another undoing message (now in another stage): nothing more.
    moved(&t, 1, "Prospecting", 300, 1).await;
    assert_eq!(
        t.stack
            .store
            .all()
            .unwrap()
            .iter()
            .filter(|r| r.undoes.is_some())
            .count(),
        1
    );
    assert_eq!(sandbox.credited_by_member()["SKY1000001"], 200);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_clawback_waits_for_an_operator() {
    let t = spawn_stack(|_| {}).await;
    let approved = won(&t, 3, 400).await;
    let declined = won(&t, 4, 150).await;
    moved(&t, 3, "Closed Lost", 400, 1).await;
    moved(&t, 4, "Closed Lost", 150, 1).await;
    let undo_approved = clawback_of(&t, &approved, &["awaiting_approval"]).await;
    let undo_declined = clawback_of(&t, &declined, &["awaiting_approval"]).await;
    assert_eq!(
        undo_approved.status.reason().unwrap().code,
        "clawback_review"
    );
    // Nothing is taken back until an operator decides.
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member()["SKY1000001"], 550);

    let run = |command: serde_json::Value| {
        let mut command = command;
        command["operator"] = json!("ops-demo");
        t.stack.operations.invoke(command)
    };
    let answer =
        run(json!({"command": "approve", "request_id": undo_approved.id, "reason": "deal lost"}))
            .await;
    assert!(answer.ok, "{answer:#?}");
    let answer = run(json!({"command": "decline", "request_id": undo_declined.id, "reason": "the customer paid"})).await;
    assert!(answer.ok, "{answer:#?}");
    let done = clawback_of(&t, &approved, &["rejected"]).await;
    assert_eq!(done.status.reason().unwrap().code, "clawback_reversed");
    assert_eq!(state_of(&t, &approved.id).await, StatusKind::Reversed);
    let kept = clawback_of(&t, &declined, &["rejected"]).await;
    assert_eq!(kept.status.reason().unwrap().code, "declined");
    assert_eq!(state_of(&t, &declined.id).await, StatusKind::Credited);
    assert_eq!(sandbox.credited_by_member()["SKY1000001"], 150);
    t.check_ledger();
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoing_a_deal_that_earned_nothing_takes_nothing_back() {
    let t = spawn_stack(|c| c.programs[0].on_undo = OnUndo::Reverse).await;
    // 9,901 points: the sandbox refuses the credit for good.
    let message = outbound_message(vec![opportunity(
        5,
        ADA,
        "Closed Won",
        &amount_for(pointsflow_sandbox::magic::REJECT),
    )]);
    t.post_outbound(message).await;
    t.settle().await;
    let original = only(&t, |r| r.undoes.is_none());
    wait_state(&t, &original.id, &["failed"]).await;
    moved(&t, 5, "Closed Lost", pointsflow_sandbox::magic::REJECT, 1).await;
    let undo = clawback_of(&t, &original, &["rejected"]).await;
    assert_eq!(undo.status.reason().unwrap().code, "nothing_to_reverse");
    assert_eq!(state_of(&t, &original.id).await, StatusKind::Failed);
    t.check_ledger();
    t.stack.shutdown().await;
}
