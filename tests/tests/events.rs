//! `resend_events`: an operator puts a request's events, or a period's, on
//! the event bus again, identical to what the events function makes from
//! the table's stream (same ids, same details), so a consumer that has
//! them de-duplicates them (which roles may run it: `authority.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use pointsflow_core::events::{Event, MemberNumbers, request_events};
use pointsflow_tests::{ADA, amount_for, deal, spawn_stack};
use serde_json::json;

fn by_id(events: &[Event]) -> BTreeMap<String, Event> {
    events
        .iter()
        .map(|e| (e.id().to_owned(), e.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resends_a_requests_events_and_a_periods() {
    let t = spawn_stack(|_| {}).await;
    let credited = t.accept("ev-1", &deal(ADA, &amount_for(300))).await;
    let failed = t
        .accept(
            "ev-2",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    t.wait_for(&credited, &["credited"]).await;
    t.wait_for(&failed, &["failed"]).await;
    t.settle().await;
    let stored = |id: &str| {
        t.stack
            .store
            .all()
            .unwrap()
            .into_iter()
            .find(|r| r.id.as_str() == id)
            .unwrap()
    };
    // What the events function makes of the requests' whole histories.
    let expected: Vec<Event> = [&credited, &failed]
        .iter()
        .flat_map(|id| request_events(None, &stored(id), MemberNumbers::Masked))
        .collect();
    let kinds: Vec<_> = expected.iter().map(|e| e.detail_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited",
            "Points Request Received",
            "Points Reserved",
            "Points Failed"
        ]
    );

    let one = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-demo", "command": "resend_events", "request_id": credited}))
        .await;
    assert!(one.ok, "{one:#?}");
    assert_eq!(one.result.as_ref().unwrap()["events"], 3);
    assert_eq!(by_id(&t.stack.bus.events()), by_id(&expected[..3]));

    // A period around today, so the test cannot depend on the hour it runs.
    let today = chrono::Utc::now().date_naive();
    let period = json!({"operator": "ops-demo", "command": "resend_events",
        "from": (today - chrono::Days::new(1)).to_string(),
        "to": (today + chrono::Days::new(2)).to_string()});
    let all = t.stack.operations.invoke(period.clone()).await;
    assert!(all.ok, "{all:#?}");
    assert_eq!(all.result.as_ref().unwrap()["requests"], 2);
    assert_eq!(
        all.result.as_ref().unwrap()["next"],
        serde_json::Value::Null
    );
    // Sent again: the same events, nothing else.
    let sent = t.stack.bus.events();
    assert_eq!(sent.len(), 9);
    assert_eq!(by_id(&sent), by_id(&expected));

    t.stack.shutdown().await;
}
