//! Scheduled windows: a window's run is claimed once and saved over the
//! version read; a credit is created once and saved over the version read;
//! settled credits add up to the window's progress; and the request store
//! indexes scheduled requests by program in member order, page by page.

use std::sync::Arc;

use pointsflow_core::partner::Destination;
use pointsflow_core::ports::UnsettledIndex;
use pointsflow_core::ports::{RequestCreate, RequestGet, RequestUpdate, StoreError};
use pointsflow_core::ports::{RequestLines, RequestSearch, ScheduledRequests, WindowStore};
use pointsflow_core::reason::Reason;
use pointsflow_core::reconcile::Scope;
use pointsflow_core::request::{Status, StatusKind};
use pointsflow_core::search::SearchFilter;
use pointsflow_core::unsettled::{Unsettled, UnsettledItem};
use pointsflow_core::values::{MemberNumber, PartnerId, PartnerReference, Points, ProgramId};
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, CreditState, RunState, ScheduledCursor, WindowCredit, WindowId,
    WindowRun,
};

use crate::{request, t0};
use pointsflow_core::reason::ReasonCode;

/// The window roles of one adapter, with the request store that indexes.
pub struct Windows {
    pub windows: Arc<dyn WindowStore>,
    pub scheduled: Arc<dyn ScheduledRequests>,
    pub create: Arc<dyn RequestCreate>,
    pub get: Arc<dyn RequestGet>,
    pub update: Arc<dyn RequestUpdate>,
    pub unsettled: Arc<dyn UnsettledIndex>,
    pub search: Arc<dyn RequestSearch>,
    pub lines: Arc<dyn RequestLines>,
}

pub async fn run_all(suite: &Windows) {
    a_window_is_claimed_once(suite).await;
    credits_are_created_once_and_saved_over_their_version(suite).await;
    scheduled_requests_are_paged_in_member_order(suite).await;
    unsettled_requests_and_credits_are_found_oldest_first(suite).await;
    a_windows_requests_are_found_in_its_schedule_and_its_credits(suite).await;
}

/// A search by window, and a window's reconciliation, find the requests
/// still scheduled for it and those its credits carry, and no other.
pub async fn a_windows_requests_are_found_in_its_schedule_and_its_credits(suite: &Windows) {
    let w = window("found");
    let destination = Destination {
        partner: PartnerId::parse("air").unwrap(),
        partner_program: "SKY".into(),
    };
    let program = ProgramId::parse("found").unwrap();
    let prepared = |key: &str, member: &str| {
        let mut r = request(key);
        r.program = program.clone();
        r.points = Some(Points::new(10).unwrap());
        r.member = Some(MemberNumber::parse(member).unwrap());
        r.destination = Some(destination.clone());
        r.transition(Status::Reserved, t0(), "reserved").unwrap();
        r
    };
    // Still scheduled: in the window, and in a later one of the program.
    let mut ids = Vec::new();
    let later = WindowId::parse("found@2026-11-28T18:00Z").unwrap();
    for (key, held) in [("found-held", w.clone()), ("found-later", later)] {
        let r = prepared(key, "SKY0000011");
        suite.create.create(&r).await.unwrap();
        let mut stored = suite.get.get(&r.id).await.unwrap().unwrap();
        stored
            .transition(
                Status::Scheduled {
                    window: held.to_string(),
                },
                t0(),
                "held",
            )
            .unwrap();
        suite.update.update(&stored).await.unwrap();
        if key == "found-held" {
            ids.push(stored.id.clone());
        }
    }
    // Moved into a credit of the window.
    let mut carried = prepared("found-carried", "SKY0000012");
    let mut c = credit(&w, "SKY0000012", 10, 0);
    c.requests = vec![carried.id.clone()];
    carried.credit = Some(c.id.clone());
    suite.create.create(&carried).await.unwrap();
    suite.windows.create_credit(&c).await.unwrap();
    ids.push(carried.id.clone());
    ids.sort();

    // The scheduled index is eventually consistent on DynamoDB: wait for it.
    let mut found = Vec::new();
    for _ in 0..50 {
        let mut got: Vec<_> = suite
            .search
            .search(
                &SearchFilter {
                    window: Some(w.to_string()),
                    ..Default::default()
                },
                100,
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        got.sort();
        found = got;
        if found == ids {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(found, ids, "the window's scheduled and credited requests");
    let mut lines: Vec<_> = suite
        .lines
        .lines(&Scope::Window(w.clone()), None, 100)
        .await
        .unwrap()
        .lines
        .into_iter()
        .map(|l| l.id)
        .collect();
    lines.sort();
    assert_eq!(lines, ids, "a window's reconciliation lists the same");
}

pub async fn unsettled_requests_and_credits_are_found_oldest_first(suite: &Windows) {
    let at = |s: i64| t0() + chrono::TimeDelta::seconds(s);
    // A request whose answer was lost at t0+10, then looked up again at +20
    // (still unknown): unsettled since +10.
    let mut r = request("unsettled-request");
    r.transition(Status::Reserved, at(0), "reserved").unwrap();
    r.transition(Status::Dispatching, at(5), "sent").unwrap();
    r.transition(Status::Unknown, at(10), "lost").unwrap();
    r.transition(Status::Unknown, at(20), "again").unwrap();
    suite.create.create(&r).await.unwrap();
    // A request in progress (received at t0, reserved, being sent) that
    // the resolver found stalled: indexed since its receipt.
    let mut p = request("in-progress-request");
    p.transition(Status::Reserved, at(1), "reserved").unwrap();
    p.transition(Status::Dispatching, at(2), "sent").unwrap();
    p.stalled = true;
    suite.create.create(&p).await.unwrap();
    // One moving straight on from its receipt is left to the resolver's
    // reading of its hour: not indexed.
    let mut q = request("moving-on-request");
    q.transition(Status::Reserved, at(1), "reserved").unwrap();
    suite.create.create(&q).await.unwrap();
    // A window credit pending at the partner since +30.
    let w = window("unsettled");
    let mut c = credit(&w, "SKY0000009", 10, 1);
    c.state = CreditState::PartnerPending;
    c.unsettled_since = Some(at(30));
    suite.windows.create_credit(&c).await.unwrap();
    // Only this test's items: others of the suite share the table.
    let ours = [
        UnsettledItem::Request(r.id.clone()),
        UnsettledItem::Request(p.id.clone()),
        UnsettledItem::Request(q.id.clone()),
        UnsettledItem::Credit(c.id.clone()),
    ];
    let ours = &ours;
    let find = |before| async move {
        let mut all = suite.unsettled.unsettled(before, 100).await.unwrap();
        all.extend(suite.windows.unsettled(before, 100).await.unwrap());
        all.retain(|u| ours.contains(&u.item));
        all.sort();
        all
    };
    let mut found = Vec::new();
    for _ in 0..50 {
        found = find(at(60)).await;
        if found.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        found,
        vec![
            Unsettled {
                since: p.received_at,
                item: UnsettledItem::Request(p.id.clone())
            },
            Unsettled {
                since: at(10),
                item: UnsettledItem::Request(r.id.clone())
            },
            Unsettled {
                since: at(30),
                item: UnsettledItem::Credit(c.id.clone())
            },
        ],
        "all, oldest first, since they first stopped being known (or their round began); \
         not the request moving straight on"
    );
    assert_eq!(find(at(15)).await.len(), 2, "only what is older than asked");
    // Settled: gone from the index.
    let mut settled = suite.get.get(&r.id).await.unwrap().unwrap();
    settled
        .transition(Status::Credited, at(40), "found")
        .unwrap();
    suite.update.update(&settled).await.unwrap();
    let mut moved = suite.get.get(&p.id).await.unwrap().unwrap();
    moved
        .transition(Status::Credited, at(41), "credited")
        .unwrap();
    suite.update.update(&moved).await.unwrap();
    let mut done = suite.windows.credit(&c.id).await.unwrap().unwrap();
    done.state = CreditState::Credited {
        transaction: "T".into(),
    };
    done.unsettled_since = None;
    suite.windows.save_credit(&done).await.unwrap();
    for _ in 0..50 {
        if find(at(60)).await.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("settled items stayed in the unsettled index");
}

fn window(program: &str) -> WindowId {
    WindowId::parse(&format!("{program}@2026-11-27T18:00Z")).unwrap()
}

pub async fn a_window_is_claimed_once(suite: &Windows) {
    let w = window("claim");
    let run = WindowRun::new(w.clone(), true, t0());
    let Claim::Started(mut started) = suite.windows.claim(&run).await.unwrap() else {
        panic!("the first claim must start the run");
    };
    assert_eq!(started.version, 0);
    match suite.windows.claim(&run).await.unwrap() {
        Claim::Existing(existing) => assert_eq!(existing, started),
        Claim::Started(_) => panic!("a second claim started the window again"),
    }
    let stale = started.clone();
    started.planning_runs = 1;
    started.counts.requests = 10;
    started.cursor = Some(ScheduledCursor {
        member: MemberNumber::parse("SKY0000001").unwrap(),
        request: request("claim-cursor").id,
    });
    assert_eq!(suite.windows.save_run(&started).await.unwrap(), 1);
    assert_eq!(
        suite.windows.save_run(&stale).await,
        Err(StoreError::Conflict { expected: 0 }),
        "a save over a stale read must fail"
    );
    let stored = suite.windows.run(&w).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.cursor, started.cursor, "the cursor round-trips");
    assert_eq!(stored.counts.requests, 10);
    assert_eq!(stored.state, RunState::Planning);
    assert_eq!(suite.windows.run(&window("none")).await.unwrap(), None);
}

fn credit(w: &WindowId, member: &str, points: u64, requests: usize) -> WindowCredit {
    let member = MemberNumber::parse(member).unwrap();
    let partner = PartnerId::parse("air").unwrap();
    WindowCredit {
        id: CreditId::consolidated(w, &partner, &member, 1),
        window: w.clone(),
        partner,
        partner_program: "SKY".into(),
        member,
        member_name: Some(pointsflow_core::reason::PersonName {
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
        }),
        reference: PartnerReference::from_number(u128::from(points)),
        points: Points::new(points).unwrap(),
        requests: (0..requests)
            .map(|i| request(&format!("credit-{points}-{i}")).id)
            .collect(),
        state: CreditState::Planning,
        attempts: 0,
        attempt_at: None,
        partner_transaction: None,
        planned_at: t0(),
        unsettled_since: None,
        settled_at: None,
        version: 0,
    }
}

pub async fn credits_are_created_once_and_saved_over_their_version(suite: &Windows) {
    let w = window("credits");
    suite
        .windows
        .claim(&WindowRun::new(w.clone(), true, t0()))
        .await
        .unwrap();
    let a = credit(&w, "SKY0000001", 300, 3);
    assert_eq!(
        suite.windows.create_credit(&a).await.unwrap(),
        CreditCreated::New
    );
    let mut again = a.clone();
    again.reference = PartnerReference::from_number(9);
    match suite.windows.create_credit(&again).await.unwrap() {
        CreditCreated::Existing(existing) => {
            assert_eq!(*existing, a, "the stored credit came back changed")
        }
        CreditCreated::New => panic!("a second create replaced the credit"),
    }
    let mut planned = a.clone();
    planned.state = CreditState::Planned;
    assert_eq!(suite.windows.save_credit(&planned).await.unwrap(), 1);
    assert_eq!(
        suite.windows.save_credit(&a).await,
        Err(StoreError::Conflict { expected: 0 }),
        "a save over a stale read must fail"
    );
    // Settled credits add up to the window's progress; others do not.
    planned.version = 1;
    planned.state = CreditState::Credited {
        transaction: "T1".into(),
    };
    planned.partner_transaction = Some("T1".into());
    planned.settled_at = Some(t0());
    planned.attempts = 2;
    suite.windows.save_credit(&planned).await.unwrap();
    let mut b = credit(&w, "SKY0000002", 50, 2);
    b.state = CreditState::Failed {
        reason: Reason::new(ReasonCode::parse("member_blocked"), "blocked"),
    };
    suite.windows.create_credit(&b).await.unwrap();
    let c = credit(&w, "SKY0000003", 70, 1);
    suite.windows.create_credit(&c).await.unwrap();
    let settled = suite.windows.settled(&w).await.unwrap();
    assert_eq!(
        (
            settled.credited,
            settled.credited_requests,
            settled.credited_points,
            settled.failed,
            settled.failed_requests
        ),
        (1, 3, 300, 1, 2)
    );
    let stored = suite.windows.credit(&planned.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    planned.version = 2;
    assert_eq!(stored, planned, "every field round-trips");
    assert_eq!(
        suite.windows.settled(&window("other")).await.unwrap(),
        Default::default()
    );
}

pub async fn scheduled_requests_are_paged_in_member_order(suite: &Windows) {
    let program = ProgramId::parse("paged").unwrap();
    let w = window("paged");
    let destination = Destination {
        partner: PartnerId::parse("air").unwrap(),
        partner_program: "SKY".into(),
    };
    // 7 requests of 3 members, created out of order; one more request that
    // is reserved but not scheduled, which the index does not hold.
    let members = ["SKY0000003", "SKY0000001", "SKY0000002"];
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut r = request(&format!("paged-{i}"));
        r.program = program.clone();
        r.points = Some(Points::new(10 + i).unwrap());
        r.member = Some(MemberNumber::parse(members[i as usize % 3]).unwrap());
        r.destination = Some(destination.clone());
        r.transition(Status::Reserved, t0(), "reserved").unwrap();
        suite.create.create(&r).await.unwrap();
        let mut stored = suite.get.get(&r.id).await.unwrap().unwrap();
        if i < 6 {
            stored
                .transition(
                    Status::Scheduled {
                        window: w.to_string(),
                    },
                    t0(),
                    "held",
                )
                .unwrap();
            suite.update.update(&stored).await.unwrap();
            ids.push((stored.member.clone().unwrap(), stored.id.clone()));
        }
    }
    ids.sort();
    // The index is eventually consistent on DynamoDB: wait for it.
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.clear();
        let mut after = None;
        loop {
            let page = suite
                .scheduled
                .scheduled(&program, after.as_ref(), 4)
                .await
                .unwrap();
            assert!(page.entries.len() <= 4, "a page holds at most the limit");
            after = page.entries.last().map(|e| e.cursor());
            seen.extend(page.entries);
            if !page.more {
                break;
            }
        }
        if seen.len() == ids.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let order: Vec<_> = seen
        .iter()
        .map(|e| (e.member.clone(), e.id.clone()))
        .collect();
    assert_eq!(order, ids, "every scheduled request, in member order");
    let first = &seen[0];
    assert_eq!(first.window, w);
    assert_eq!(first.partner, destination.partner);
    assert_eq!(first.partner_program, "SKY");
    let stored = suite.get.get(&first.id).await.unwrap().unwrap();
    assert_eq!(Some(first.points), stored.points);

    // A request that leaves `scheduled` leaves the index.
    let mut moved = stored;
    moved.transition(Status::Dispatching, t0(), "sent").unwrap();
    suite.update.update(&moved).await.unwrap();
    for _ in 0..50 {
        let page = suite
            .scheduled
            .scheduled(&program, None, 100)
            .await
            .unwrap();
        if page.entries.iter().all(|e| e.id != moved.id) {
            assert_eq!(page.entries.len(), ids.len() - 1);
            assert!(page.entries.iter().all(|e| e.id != moved.id));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "a request no longer {} stayed in the index",
        StatusKind::Scheduled
    );
}
