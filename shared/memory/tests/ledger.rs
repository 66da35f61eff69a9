//! The embedded ledger keeps every invariant of DESIGN.md, under concurrency too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pointsflow_core::ledger::{
    AccountId, Applied, CapCharge, CapKey, Entry, LedgerError, invariants,
};
use pointsflow_core::ports::{LedgerRead, LedgerWrite};
use pointsflow_core::values::{
    IdempotencyKey, MemberNumber, PartnerId, Points, ProgramId, RecipientId, RequestId, SourceId,
};
use pointsflow_memory::MemoryLedger;

fn t() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

fn program() -> ProgramId {
    ProgramId::parse("p").unwrap()
}

fn member(n: u32) -> AccountId {
    AccountId::member(
        &PartnerId::parse("air").unwrap(),
        &MemberNumber::parse(&format!("SKY{n:07}")).unwrap(),
    )
}

fn request(n: u32) -> RequestId {
    RequestId::derive(
        &SourceId::parse("s").unwrap(),
        &IdempotencyKey::parse(&format!("k{n}")).unwrap(),
    )
}

fn pts(n: u64) -> Points {
    Points::new(n).unwrap()
}

fn cap(recipient: &str, limit: u64) -> CapCharge {
    CapCharge {
        key: CapKey {
            program: program(),
            recipient: RecipientId::parse(recipient).unwrap(),
            period: "2026-11".into(),
        },
        limit: pts(limit),
    }
}

fn reserve(n: u32, amount: u64, cap: Option<CapCharge>) -> Entry {
    Entry::reserve(
        &request(n),
        AccountId::budget(&program()),
        member(n),
        pts(amount),
        cap,
        t(),
    )
}

async fn funded(budget: u64) -> MemoryLedger {
    let ledger = MemoryLedger::new();
    ledger
        .apply(&[Entry::fund(&program(), "initial", pts(budget), t())])
        .await
        .unwrap();
    ledger
}

fn check(ledger: &MemoryLedger) {
    ledger.snapshot().unwrap().check().unwrap();
}

#[tokio::test]
async fn reserve_post_and_void_move_the_counters() {
    let ledger = funded(1_000).await;
    let a = reserve(1, 300, None);
    let b = reserve(2, 200, None);
    ledger.apply(std::slice::from_ref(&a)).await.unwrap();
    ledger.apply(std::slice::from_ref(&b)).await.unwrap();
    let budget = ledger
        .balance(&AccountId::budget(&program()))
        .await
        .unwrap();
    assert_eq!((budget.debits_pending, budget.available()), (500, 500));

    ledger.apply(&[Entry::post(&a, t())]).await.unwrap();
    ledger.apply(&[Entry::void(&b, t())]).await.unwrap();
    let budget = ledger
        .balance(&AccountId::budget(&program()))
        .await
        .unwrap();
    assert_eq!(
        (
            budget.debits_pending,
            budget.debits_posted,
            budget.available()
        ),
        (0, 300, 700)
    );
    let m1 = ledger.balance(&member(1)).await.unwrap();
    assert_eq!((m1.credits_pending, m1.credits_posted), (0, 300));
    let m2 = ledger.balance(&member(2)).await.unwrap();
    assert_eq!((m2.credits_pending, m2.credits_posted), (0, 0));
    assert_eq!(ledger.entries_for(&request(1)).await.unwrap().len(), 2);
    check(&ledger);
}

#[tokio::test]
async fn a_budget_is_never_overdrawn() {
    let ledger = funded(500).await;
    ledger.apply(&[reserve(1, 400, None)]).await.unwrap();
    let err = ledger.apply(&[reserve(2, 101, None)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::InsufficientBudget {
                available: 100,
                requested: 101,
                ..
            }
        ),
        "{err:?}"
    );
    ledger.apply(&[reserve(3, 100, None)]).await.unwrap();
    assert_eq!(
        ledger.entries_for(&request(2)).await.unwrap(),
        vec![],
        "a refused entry leaves nothing"
    );
    check(&ledger);
}

#[tokio::test]
async fn a_cap_is_charged_with_the_reservation_and_released_by_a_void() {
    let ledger = funded(10_000).await;
    let first = reserve(1, 600, Some(cap("005A", 1_000)));
    ledger.apply(std::slice::from_ref(&first)).await.unwrap();
    let err = ledger
        .apply(&[reserve(2, 500, Some(cap("005A", 1_000)))])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::CapExceeded {
                used: 600,
                limit: 1_000,
                ..
            }
        ),
        "{err:?}"
    );
    // Another recipient has a cap of their own.
    ledger
        .apply(&[reserve(3, 500, Some(cap("005B", 1_000)))])
        .await
        .unwrap();
    // Releasing the first reservation frees its share of the cap.
    ledger.apply(&[Entry::void(&first, t())]).await.unwrap();
    ledger
        .apply(&[reserve(4, 1_000, Some(cap("005A", 1_000)))])
        .await
        .unwrap();
    let budget = ledger
        .balance(&AccountId::budget(&program()))
        .await
        .unwrap();
    assert_eq!(
        budget.debits_pending, 1_500,
        "the refused reservation held no budget"
    );
    check(&ledger);
}

#[tokio::test]
async fn a_retry_is_recognised_and_a_different_entry_under_the_same_id_refused() {
    let ledger = funded(1_000).await;
    let a = reserve(1, 300, None);
    assert_eq!(
        ledger.apply(std::slice::from_ref(&a)).await.unwrap(),
        Applied::Now
    );
    let mut later = a.clone();
    later.at = t() + chrono::Duration::seconds(5);
    assert_eq!(
        ledger.apply(&[later]).await.unwrap(),
        Applied::Already,
        "time alone is not a difference"
    );
    let mut other = a.clone();
    other.amount = pts(301);
    assert!(matches!(
        ledger.apply(&[other]).await,
        Err(LedgerError::EntryConflict { .. })
    ));
    check(&ledger);
}

#[tokio::test]
async fn a_pending_entry_resolves_exactly_once() {
    let ledger = funded(1_000).await;
    let a = reserve(1, 300, None);
    ledger.apply(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(
        ledger.apply(&[Entry::post(&a, t())]).await.unwrap(),
        Applied::Now
    );
    assert_eq!(
        ledger.apply(&[Entry::post(&a, t())]).await.unwrap(),
        Applied::Already
    );
    let err = ledger.apply(&[Entry::void(&a, t())]).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::AlreadyResolved { .. }),
        "{err:?}"
    );
    let never = reserve(9, 10, None);
    assert!(matches!(
        ledger.apply(&[Entry::post(&never, t())]).await,
        Err(LedgerError::PendingNotFound { .. })
    ));
    check(&ledger);
}

#[tokio::test]
async fn a_transaction_is_all_or_nothing() {
    let ledger = funded(500).await;
    let err = ledger
        .apply(&[reserve(1, 300, None), reserve(2, 300, None)])
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::InsufficientBudget { .. }));
    assert!(
        ledger.entries_for(&request(1)).await.unwrap().is_empty(),
        "the first entry was not kept"
    );
    assert_eq!(
        ledger
            .balance(&AccountId::budget(&program()))
            .await
            .unwrap()
            .debits_pending,
        0
    );
    assert!(matches!(
        ledger.apply(&[]).await,
        Err(LedgerError::TransactionSize(0))
    ));
    check(&ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_overspend() {
    let ledger = Arc::new(funded(1_000).await);
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let ledger = ledger.clone();
            tokio::spawn(
                async move { ledger.apply(&[reserve(n, 7, Some(cap("005A", 700)))]).await },
            )
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 100, "exactly the 700 points of cap were reserved");
    let budget = ledger
        .balance(&AccountId::budget(&program()))
        .await
        .unwrap();
    assert_eq!(budget.debits_pending, 700);
    check(&ledger);
}

#[tokio::test]
async fn the_invariant_checks_catch_a_tampered_ledger() {
    let ledger = funded(1_000).await;
    let a = reserve(1, 300, Some(cap("005A", 1_000)));
    ledger.apply(std::slice::from_ref(&a)).await.unwrap();
    ledger.apply(&[Entry::post(&a, t())]).await.unwrap();
    let good = ledger.snapshot().unwrap();
    good.check().unwrap();

    let mut counters = good.clone();
    counters
        .accounts
        .get_mut(&member(1))
        .unwrap()
        .credits_posted += 1;
    assert!(
        counters.check().is_err(),
        "counters that disagree with the entries"
    );

    let mut twice = good.clone();
    let mut second = Entry::void(&a, t());
    second.id = pointsflow_core::ledger::EntryId::funding(&program(), "x");
    twice.entries.push(second);
    assert!(
        invariants::check_resolutions(&twice.entries).is_err(),
        "a second resolution"
    );

    let mut caps = good.clone();
    caps.caps.values_mut().for_each(|c| c.used = 0);
    assert!(caps.check().is_err(), "a cap that forgot a reservation");

    let partner = PartnerId::parse("air").unwrap();
    let mut credited = std::collections::BTreeMap::new();
    credited.insert(MemberNumber::parse("SKY0000001").unwrap(), 300);
    invariants::check_partner_matches(&good.accounts, &partner, &credited).unwrap();
    credited.insert(MemberNumber::parse("SKY0000001").unwrap(), 600);
    assert!(invariants::check_partner_matches(&good.accounts, &partner, &credited).is_err());
}
