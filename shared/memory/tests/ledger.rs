//! The embedded ledger passes the conformance suite and keeps every invariant
//! of DESIGN.md; the invariant checks themselves catch a tampered ledger.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pointsflow_core::ledger::{AccountId, CapCharge, CapKey, Entry, invariants};
use pointsflow_core::ports::LedgerWrite;
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
        cap.into_iter().collect(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_ledger_conforms_and_keeps_every_invariant() {
    let ledger = Arc::new(MemoryLedger::new());
    let suite = pointsflow_conformance::ledger::Ledger {
        write: ledger.clone(),
        read: ledger.clone(),
    };
    pointsflow_conformance::ledger::run_all(&suite).await;
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
        .get_mut(&AccountId::budget(&program()))
        .unwrap()
        .debits_posted += 1;
    assert!(
        counters.check().is_err(),
        "counters that disagree with the entries"
    );

    // Only a budget keeps counters: a member's are derived from entries.
    let mut member_counters = good.clone();
    member_counters.accounts.insert(
        member(1),
        pointsflow_core::ledger::Balance {
            credits_posted: 300,
            ..Default::default()
        },
    );
    assert!(
        member_counters.check().is_err(),
        "counters kept for a member account"
    );

    let mut twice = good.clone();
    let mut second = Entry::void(&a, t());
    second.id = pointsflow_core::ledger::EntryId::funding(&program(), "x");
    twice.entries.push(second);
    assert!(
        invariants::check_resolutions(&twice.entries).is_err(),
        "a second resolution"
    );

    // Points moved from one shard of the budget to another: the budget's
    // total is right, its shards are not.
    let mut shuffled = good.clone();
    let mut shard_counters = shuffled.shards.values_mut();
    shard_counters.next().unwrap().credits_posted -= 10;
    shard_counters.next().unwrap().credits_posted += 10;
    assert!(
        shuffled.check().is_err(),
        "shards that disagree with the entries"
    );

    let mut redrawn = good.clone();
    let post = redrawn.entries.last_mut().unwrap();
    let first = post.shards[0].shard;
    post.shards[0].shard = (first + 1) % pointsflow_core::ledger::shards::COUNT;
    assert!(
        invariants::check_shards(&redrawn.entries, &good.shards).is_err(),
        "a post that moves shards its reservation did not draw"
    );

    let mut caps = good.clone();
    caps.caps.values_mut().for_each(|c| c.used = 0);
    assert!(caps.check().is_err(), "a cap that forgot a reservation");

    let partner = PartnerId::parse("air").unwrap();
    let mut credited = std::collections::BTreeMap::new();
    credited.insert(MemberNumber::parse("SKY0000001").unwrap(), 300);
    invariants::check_partner_matches(&good.entries, &partner, &credited).unwrap();
    credited.insert(MemberNumber::parse("SKY0000001").unwrap(), 600);
    assert!(invariants::check_partner_matches(&good.entries, &partner, &credited).is_err());
}
