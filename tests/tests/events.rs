//! Events through the local stack: the events function reads the embedded
//! stores' stream and puts each request's events on the bus, in order and
//! once, for a real-time credit, a failure, a reversal and a scheduled
//! window (a clawback's: `clawback.rs`), and each window credit's and each
//! member link's change; `pointsflow events tail` follows
//! them with an operator's key; `resend_events` puts a request's events,
//! or a period's, on the bus again, identical (same ids, same details), so
//! a consumer that has them de-duplicates them (which roles may run it:
//! `authority.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use pointsflow_core::events::{Detail, DetailType, Event, MemberNumbers, request_events};
use pointsflow_local::outbox::{self, TailOptions};
use pointsflow_tests::{
    ADA, OPERATOR_KEY, amount_for, deal, fire, schedule_deals, scheduled_config, spawn_stack,
};
use serde_json::{Value, json};

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

    // What the events function put on the bus from the store's stream.
    assert_eq!(t.events_of(&credited).await, kinds[..3]);
    assert_eq!(t.events_of(&failed).await, kinds[3..]);
    let published = t.stack.bus.events().len();
    let resent = |from: usize| t.stack.bus.events()[from..].to_vec();

    let one = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-demo", "command": "resend_events", "request_id": credited}))
        .await;
    assert!(one.ok, "{one:#?}");
    assert_eq!(one.result.as_ref().unwrap()["events"], 3);
    assert_eq!(by_id(&resent(published)), by_id(&expected[..3]));
    // Identical to what the events function sent.
    assert_eq!(by_id(&t.stack.bus.events()[..published]), by_id(&expected));

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
    let sent = resent(published + 3);
    assert_eq!(sent.len(), 6);
    assert_eq!(by_id(&sent), by_id(&expected));

    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_makes_its_events_in_order_and_once() {
    let t = spawn_stack(|_| {}).await;
    let credited = t.accept("seq-1", &deal(ADA, &amount_for(300))).await;
    let failed = t
        .accept(
            "seq-2",
            &deal(ADA, &amount_for(pointsflow_sandbox::magic::REJECT)),
        )
        .await;
    let reversed = t.accept("seq-3", &deal(ADA, &amount_for(200))).await;
    for id in [&credited, &reversed] {
        t.wait_for(id, &["credited"]).await;
    }
    t.wait_for(&failed, &["failed"]).await;
    for (points, key) in [(Some(50), "part"), (None, "rest")] {
        let mut command = json!({"operator": "ops-demo", "command": "reverse",
            "request_id": reversed, "reason": "deal reduced", "reversal_id": key});
        if let Some(points) = points {
            command["points"] = json!(points);
        }
        let answer = t.stack.operations.invoke(command).await;
        assert!(answer.ok, "{answer:#?}");
    }
    t.settle().await;

    assert_eq!(
        t.events_of(&credited).await,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited"
        ]
    );
    assert_eq!(
        t.events_of(&failed).await,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Failed"
        ]
    );
    assert_eq!(
        t.events_of(&reversed).await,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited",
            "Points Reversal Requested",
            "Points Reversed",
            "Points Reversal Requested",
            "Points Reversed",
        ]
    );
    // The last reversal took the rest: the request is reversed.
    let last = t
        .stack
        .bus
        .events()
        .into_iter()
        .rfind(|e| {
            e.request()
                .is_some_and(|d| d.request_id.as_str() == reversed)
        })
        .unwrap();
    let last = last.request().unwrap();
    assert_eq!(last.state.as_str(), "reversed");
    assert_eq!(last.points_reversed, 200);
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_requests_make_their_events_when_the_window_credits_them() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, false, 3)).await;
    let (requests, window) = schedule_deals(&t.api, &recipients, 2, "win-ev").await;
    for (id, _, _) in &requests {
        assert_eq!(
            t.events_of(id).await,
            [
                "Points Request Received",
                "Points Reserved",
                "Points Scheduled"
            ]
        );
    }
    fire(&t.stack.dispatch, &window).await;
    for (id, _, _) in &requests {
        t.wait_for(id, &["credited"]).await;
    }
    t.settle().await;
    for (id, _, points) in &requests {
        let events = t.events_of(id).await;
        assert_eq!(
            events,
            [
                "Points Request Received",
                "Points Reserved",
                "Points Scheduled",
                "Points Credited"
            ],
            "{id}"
        );
        let scheduled = t
            .stack
            .bus
            .events()
            .into_iter()
            .find_map(|e| {
                e.request()
                    .filter(|d| d.request_id.as_str() == id && d.sequence == 3)
                    .cloned()
            })
            .unwrap();
        assert_eq!(scheduled.window.as_deref(), Some(window.as_str()));
        assert_eq!(scheduled.points, Some(*points));
    }
    // Each of the window's credits at the partner: planned, then credited,
    // once each, carrying its requests and their points.
    let mut stages: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut credited_requests = BTreeSet::new();
    let mut credited_points = 0;
    for event in t.stack.bus.events() {
        let Detail::Credit(credit) = &event.detail else {
            continue;
        };
        assert_eq!(credit.window, window);
        stages
            .entry(credit.partner_reference.to_string())
            .or_default()
            .push(event.detail_type.as_str());
        if event.detail_type == DetailType::CreditCredited {
            assert!(credit.partner_transaction.is_some(), "{credit:?}");
            assert!(credit.member.starts_with("******"), "{credit:?}");
            credited_points += credit.points;
            credited_requests.extend(credit.requests.iter().map(|r| r.to_string()));
        }
    }
    assert!(!stages.is_empty());
    for (reference, kinds) in &stages {
        assert_eq!(
            kinds,
            &["Window Credit Planned", "Window Credit Credited"],
            "{reference}"
        );
    }
    let ids: BTreeSet<String> = requests.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(credited_requests, ids);
    assert_eq!(
        credited_points,
        requests.iter().map(|(_, _, p)| *p).sum::<u64>()
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tail_follows_the_local_stacks_events_with_an_operators_key() {
    let t = spawn_stack(|_| {}).await;
    let tail = |types: &[&str], json: bool, count: usize| TailOptions {
        detail_types: types
            .iter()
            .map(|t| outbox::detail_type(t).unwrap())
            .collect(),
        json,
        from_start: true,
        count: Some(count),
        every: std::time::Duration::from_millis(20),
    };
    let id = t.accept("tail-1", &deal(ADA, &amount_for(300))).await;
    t.wait_for(&id, &["credited"]).await;

    let mut lines = Vec::new();
    outbox::follow(
        &t.base,
        OPERATOR_KEY,
        &tail(&["points credited"], false, 1),
        |l| lines.push(l.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("Points Credited"), "{}", lines[0]);
    assert!(lines[0].contains(&format!("{id}:4")), "{}", lines[0]);
    assert!(lines[0].contains("300 points"), "{}", lines[0]);
    // The member number masked, as in the logs.
    assert!(lines[0].contains("******0001"), "{}", lines[0]);

    let mut whole = Vec::new();
    outbox::follow(&t.base, OPERATOR_KEY, &tail(&[], true, 3), |l| {
        whole.push(serde_json::from_str::<Value>(l).unwrap())
    })
    .await
    .unwrap();
    let kinds: Vec<&str> = whole
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited"
        ]
    );
    assert!(whole.iter().all(|e| e["source"] == "pointsflow"));
    assert_eq!(whole[2]["detail"]["event_id"], format!("{id}:4"));

    // Without an operator's key, nothing.
    let refused = outbox::follow(&t.base, "not-a-key", &tail(&[], false, 1), |_| {})
        .await
        .unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    assert!(outbox::detail_type("Points Teleported").is_err());
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_stopped_mid_flight_publishes_every_write_it_stored() {
    let t = spawn_stack(|_| {}).await;
    for i in 0..20 {
        t.accept(&format!("stop-{i}"), &deal(ADA, &amount_for(100 + i)))
            .await;
    }
    // Stopped while the pipeline still works on them.
    let (store, bus) = (t.stack.store.clone(), t.stack.bus.clone());
    t.stack.shutdown().await;
    let sent = by_id(&bus.events());
    let stored = store.all().unwrap();
    assert_eq!(stored.len(), 20);
    for request in &stored {
        for event in request_events(None, request, MemberNumbers::Masked) {
            assert_eq!(sent.get(event.id()), Some(&event), "{}", event.id());
        }
    }
}

/// A member link's creation, change and removal are one event each, with
/// the member numbers masked and who made and who confirmed the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_links_creation_change_and_removal_are_events() {
    let stack = spawn_stack(pointsflow_tests::with_role_operators).await;
    let t = &stack;
    let key = |id: &str| {
        pointsflow_tests::ROLE_OPERATORS
            .iter()
            .find(|(o, _, _)| *o == id)
            .unwrap()
            .1
    };
    let confirm = |proposed: Value| async move {
        let id = proposed["result"]["proposal"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, confirmed) = t
            .admin(key("ops-admin2"), "confirm", &json!({"proposal_id": id}))
            .await;
        assert_eq!(status, 200, "{confirmed:#}");
    };
    let link = |member: &str, first: &str| {
        json!({"program": "sales-incentive", "recipient": "005NEW", "member_number": member,
            "first_name": first, "last_name": "Hopper", "reason": "new account"})
    };
    let (status, linked) = t
        .admin(key("ops-operate"), "link", &link("SKY1000005", "Grace"))
        .await;
    assert_eq!(status, 200, "{linked:#}");
    let (status, proposed) = t
        .admin(key("ops-admin"), "link", &link("SKY1000006", "Grace"))
        .await;
    assert_eq!(status, 200, "{proposed:#}");
    confirm(proposed).await;
    let (status, proposed) = t
        .admin(
            key("ops-admin"),
            "unlink",
            &json!({"program": "sales-incentive", "recipient": "005NEW", "reason": "left"}),
        )
        .await;
    assert_eq!(status, 200, "{proposed:#}");
    confirm(proposed).await;

    let links: Vec<(DetailType, pointsflow_core::events::LinkDetail)> = t
        .published()
        .await
        .into_iter()
        .filter_map(|e| match e.detail {
            Detail::Link(d) => Some((e.detail_type, d)),
            _ => None,
        })
        .collect();
    let seen: Vec<_> = links
        .iter()
        .map(|(kind, d)| {
            (
                kind.as_str(),
                d.member.as_deref(),
                d.previous_member.as_deref(),
                d.by.as_str(),
                d.confirmed_by.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "Member Linked",
                Some("******0005"),
                None,
                "ops-operate",
                None
            ),
            (
                "Member Link Changed",
                Some("******0006"),
                Some("******0005"),
                "ops-admin",
                Some("ops-admin2")
            ),
            (
                "Member Unlinked",
                None,
                Some("******0006"),
                "ops-admin",
                Some("ops-admin2")
            ),
        ]
    );
    let ids: BTreeSet<&str> = links.iter().map(|(_, d)| d.event_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter()
            .all(|id| id.starts_with("link:sales-incentive:005NEW:")),
        "{ids:?}"
    );
    stack.stack.shutdown().await;
}
