//! The ledger: counters move with their entries in one all-or-nothing
//! transaction, budgets and caps are never overspent, a retry is recognised,
//! and a pending entry resolves exactly once.
//!
//! Every check funds its own program, so all can share one ledger.

use std::sync::Arc;

use pointsflow_core::ledger::{
    AccountId, Applied, Balance, CapCharge, CapKey, Entry, LedgerError, invariants, shards,
};
use pointsflow_core::ports::{LedgerRead, LedgerWrite};
use pointsflow_core::values::{
    IdempotencyKey, MemberNumber, PartnerId, Points, ProgramId, RecipientId, RequestId, SourceId,
};

use crate::t0;

/// The two roles of a ledger, from one adapter.
pub struct Ledger {
    pub write: Arc<dyn LedgerWrite>,
    pub read: Arc<dyn LedgerRead>,
}

/// Runs every ledger check.
pub async fn run_all(ledger: &Ledger) {
    reserve_post_and_void_move_the_counters(ledger).await;
    a_budget_is_never_overdrawn(ledger).await;
    a_cap_is_charged_with_the_reservation_and_released_by_a_void(ledger).await;
    a_day_and_a_month_cap_are_charged_together(ledger).await;
    a_retry_is_recognised_and_a_different_entry_refused(ledger).await;
    a_pending_entry_resolves_exactly_once(ledger).await;
    a_transaction_is_all_or_nothing(ledger).await;
    concurrent_reservations_never_overspend(ledger).await;
    a_budget_spends_across_its_shards_exactly(ledger).await;
    concurrent_draws_across_shards_never_overspend(ledger).await;
}

/// A program, its accounts and helpers, distinct per check.
struct Fixture {
    program: ProgramId,
    partner: PartnerId,
}

impl Fixture {
    fn new(name: &str) -> Self {
        Self {
            program: ProgramId::parse(name).unwrap(),
            partner: PartnerId::parse("air").unwrap(),
        }
    }

    fn budget(&self) -> AccountId {
        AccountId::budget(&self.program)
    }

    fn member(&self, n: u32) -> AccountId {
        AccountId::member(
            &self.partner,
            &MemberNumber::parse(&format!("SKY{n:07}")).unwrap(),
        )
    }

    fn request(&self, n: u32) -> RequestId {
        RequestId::derive(
            &SourceId::parse("conformance").unwrap(),
            &IdempotencyKey::parse(&format!("{}-{n}", self.program)).unwrap(),
        )
    }

    fn cap(&self, recipient: &str, limit: u64) -> CapCharge {
        self.cap_in(recipient, "2026-11", limit)
    }

    fn cap_in(&self, recipient: &str, period: &str, limit: u64) -> CapCharge {
        CapCharge {
            key: CapKey {
                program: self.program.clone(),
                recipient: RecipientId::parse(recipient).unwrap(),
                period: period.into(),
            },
            limit: pts(limit),
        }
    }

    /// A reservation charging the recipient's day (limit 500) and month (limit 1,000).
    fn reserve_daily(&self, n: u32, amount: u64, day: &str) -> Entry {
        let mut entry = self.reserve(n, amount, None);
        entry.caps = vec![
            self.cap_in("005D", day, 500),
            self.cap_in("005D", &day[..7], 1_000),
        ];
        entry
    }

    fn reserve(&self, n: u32, amount: u64, cap: Option<CapCharge>) -> Entry {
        Entry::reserve(
            &self.request(n),
            self.budget(),
            self.member(n),
            pts(amount),
            cap.into_iter().collect(),
            t0(),
        )
    }

    async fn fund(&self, ledger: &Ledger, amount: u64) {
        let applied = ledger
            .write
            .apply(&[Entry::fund(&self.program, "initial", pts(amount), t0())])
            .await
            .unwrap();
        assert_eq!(applied, Applied::Now);
    }
}

fn pts(n: u64) -> Points {
    Points::new(n).unwrap()
}

pub async fn reserve_post_and_void_move_the_counters(ledger: &Ledger) {
    let f = Fixture::new("counters");
    f.fund(ledger, 1_000).await;
    let a = f.reserve(1, 300, None);
    let b = f.reserve(2, 200, None);
    ledger.write.apply(std::slice::from_ref(&a)).await.unwrap();
    ledger.write.apply(std::slice::from_ref(&b)).await.unwrap();
    // A budget counts a reservation as spent when it is made.
    let reserved = ledger.read.balance(&f.budget()).await.unwrap();
    assert_eq!(
        (
            reserved.debits_pending,
            reserved.debits_posted,
            reserved.available()
        ),
        (0, 500, 500)
    );

    // Its post moves no counter of the budget; its void gives it back.
    ledger.write.apply(&[Entry::post(&a, t0())]).await.unwrap();
    assert_eq!(
        ledger.read.balance(&f.budget()).await.unwrap(),
        reserved,
        "a post moves nothing on the budget"
    );
    ledger.write.apply(&[Entry::void(&b, t0())]).await.unwrap();
    let budget = ledger.read.balance(&f.budget()).await.unwrap();
    assert_eq!(
        (
            budget.debits_pending,
            budget.debits_posted,
            budget.credits_posted
        ),
        (0, 300, 1_000)
    );
    assert_eq!(budget.available(), 700);
    // A member keeps no counters: its balance is the sum of its entries.
    for n in [1, 2] {
        assert!(matches!(
            ledger.read.balance(&f.member(n)).await,
            Err(LedgerError::NotCounted(account)) if account == f.member(n)
        ));
        assert!(matches!(
            ledger.read.shards(&f.member(n)).await,
            Err(LedgerError::NotCounted(_))
        ));
    }
    let mut entries = ledger.read.entries_for(&f.request(1)).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().any(|e| e.same_effect(&a)));
    entries.extend(ledger.read.entries_for(&f.request(2)).await.unwrap());
    let derived = invariants::balances_from_entries(&entries).unwrap();
    let m1 = derived[&f.member(1)];
    assert_eq!((m1.credits_pending, m1.credits_posted), (0, 300));
    let m2 = derived[&f.member(2)];
    assert_eq!((m2.credits_pending, m2.credits_posted), (0, 0));
}

pub async fn a_budget_is_never_overdrawn(ledger: &Ledger) {
    let f = Fixture::new("overdraft");
    f.fund(ledger, 500).await;
    ledger
        .write
        .apply(&[f.reserve(1, 400, None)])
        .await
        .unwrap();
    let err = ledger
        .write
        .apply(&[f.reserve(2, 101, None)])
        .await
        .unwrap_err();
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
    assert!(
        ledger
            .read
            .entries_for(&f.request(2))
            .await
            .unwrap()
            .is_empty(),
        "a refused entry was kept"
    );
    ledger
        .write
        .apply(&[f.reserve(3, 100, None)])
        .await
        .unwrap();
    assert_eq!(
        ledger.read.balance(&f.budget()).await.unwrap().available(),
        0
    );
}

pub async fn a_cap_is_charged_with_the_reservation_and_released_by_a_void(ledger: &Ledger) {
    let f = Fixture::new("caps");
    f.fund(ledger, 10_000).await;
    let first = f.reserve(1, 600, Some(f.cap("005A", 1_000)));
    ledger
        .write
        .apply(std::slice::from_ref(&first))
        .await
        .unwrap();
    let err = ledger
        .write
        .apply(&[f.reserve(2, 500, Some(f.cap("005A", 1_000)))])
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
    ledger
        .write
        .apply(&[f.reserve(3, 500, Some(f.cap("005B", 1_000)))])
        .await
        .unwrap();
    let err = ledger
        .write
        .apply(&[f.reserve(5, 1_001, Some(f.cap("005C", 1_000)))])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::CapExceeded { used: 0, .. }),
        "over the cap on its own: {err:?}"
    );
    ledger
        .write
        .apply(&[Entry::void(&first, t0())])
        .await
        .unwrap();
    ledger
        .write
        .apply(&[f.reserve(4, 1_000, Some(f.cap("005A", 1_000)))])
        .await
        .unwrap();
    let budget = ledger.read.balance(&f.budget()).await.unwrap();
    assert_eq!(
        budget.debits_posted, 1_500,
        "the refused reservations held no budget"
    );
}

pub async fn a_day_and_a_month_cap_are_charged_together(ledger: &Ledger) {
    let f = Fixture::new("daily-caps");
    f.fund(ledger, 10_000).await;
    let first = f.reserve_daily(1, 400, "2026-11-27");
    ledger
        .write
        .apply(std::slice::from_ref(&first))
        .await
        .unwrap();
    let cap_exceeded = |err: LedgerError| match err {
        LedgerError::CapExceeded { key, used, .. } => (key.period, used),
        other => panic!("expected CapExceeded, got {other:?}"),
    };
    let err = ledger
        .write
        .apply(&[f.reserve_daily(2, 200, "2026-11-27")])
        .await
        .unwrap_err();
    assert_eq!(
        cap_exceeded(err),
        ("2026-11-27".into(), 400),
        "the day is full"
    );
    ledger
        .write
        .apply(&[f.reserve_daily(3, 200, "2026-11-28")])
        .await
        .unwrap();
    // The refused reservation charged neither cap: the month holds 600, not 800.
    let err = ledger
        .write
        .apply(&[f.reserve_daily(4, 500, "2026-11-29")])
        .await
        .unwrap_err();
    assert_eq!(
        cap_exceeded(err),
        ("2026-11".into(), 600),
        "the month is full"
    );
    // A void releases both.
    ledger
        .write
        .apply(&[Entry::void(&first, t0())])
        .await
        .unwrap();
    ledger
        .write
        .apply(&[f.reserve_daily(5, 500, "2026-11-27")])
        .await
        .unwrap();
    let err = ledger
        .write
        .apply(&[f.reserve_daily(6, 1, "2026-11-27")])
        .await
        .unwrap_err();
    assert_eq!(cap_exceeded(err), ("2026-11-27".into(), 500));
    let mut twice = f.reserve(7, 1, None);
    twice.caps = vec![f.cap("005D", 1_000), f.cap("005D", 1_000)];
    assert!(
        matches!(
            ledger.write.apply(&[twice]).await,
            Err(LedgerError::Malformed { .. })
        ),
        "one cap charged twice is refused"
    );
}

pub async fn a_retry_is_recognised_and_a_different_entry_refused(ledger: &Ledger) {
    let f = Fixture::new("retries");
    f.fund(ledger, 1_000).await;
    let a = f.reserve(1, 300, None);
    assert_eq!(
        ledger.write.apply(std::slice::from_ref(&a)).await.unwrap(),
        Applied::Now
    );
    let mut later = a.clone();
    later.at = t0() + chrono::Duration::seconds(5);
    assert_eq!(
        ledger.write.apply(&[later]).await.unwrap(),
        Applied::Already,
        "time alone is not a difference"
    );
    let mut other = a.clone();
    other.amount = pts(301);
    let err = ledger.write.apply(&[other]).await.unwrap_err();
    assert!(matches!(err, LedgerError::EntryConflict { .. }), "{err:?}");
    assert_eq!(
        ledger
            .read
            .balance(&f.budget())
            .await
            .unwrap()
            .debits_posted,
        300
    );
}

pub async fn a_pending_entry_resolves_exactly_once(ledger: &Ledger) {
    let f = Fixture::new("resolutions");
    f.fund(ledger, 1_000).await;
    let a = f.reserve(1, 300, None);
    ledger.write.apply(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(
        ledger.write.apply(&[Entry::post(&a, t0())]).await.unwrap(),
        Applied::Now
    );
    assert_eq!(
        ledger.write.apply(&[Entry::post(&a, t0())]).await.unwrap(),
        Applied::Already
    );
    let err = ledger
        .write
        .apply(&[Entry::void(&a, t0())])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::AlreadyResolved { .. }),
        "{err:?}"
    );
    let never = f.reserve(9, 10, None);
    let err = ledger
        .write
        .apply(&[Entry::post(&never, t0())])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::PendingNotFound { .. }),
        "{err:?}"
    );
    let budget = ledger.read.balance(&f.budget()).await.unwrap();
    assert_eq!((budget.debits_pending, budget.debits_posted), (0, 300));
}

pub async fn a_transaction_is_all_or_nothing(ledger: &Ledger) {
    let f = Fixture::new("atomicity");
    f.fund(ledger, 500).await;
    let err = ledger
        .write
        .apply(&[f.reserve(1, 300, None), f.reserve(2, 300, None)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::InsufficientBudget { .. }),
        "{err:?}"
    );
    assert!(
        ledger
            .read
            .entries_for(&f.request(1))
            .await
            .unwrap()
            .is_empty(),
        "the first entry was kept"
    );
    assert_eq!(
        ledger.read.balance(&f.budget()).await.unwrap().available(),
        500
    );
    assert!(matches!(
        ledger.write.apply(&[]).await,
        Err(LedgerError::TransactionSize(0))
    ));
}

/// Applies `entry`, retrying a transient conflict as handlers do: the
/// ledger's answer.
async fn answered(write: &dyn LedgerWrite, entry: &Entry) -> Result<Applied, LedgerError> {
    loop {
        match write.apply(std::slice::from_ref(entry)).await {
            Err(e) if e.is_transient() => continue,
            other => return other,
        }
    }
}

pub async fn concurrent_reservations_never_overspend(ledger: &Ledger) {
    let f = Fixture::new("concurrency");
    f.fund(ledger, 1_000).await;
    let attempts = (0..40).map(|n| {
        let write = ledger.write.clone();
        let entry = f.reserve(n, 70, Some(f.cap("005A", 700)));
        async move { answered(write.as_ref(), &entry).await }
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        ok, 10,
        "exactly the 700 points of cap were reserved: {results:?}"
    );
    let budget = ledger.read.balance(&f.budget()).await.unwrap();
    assert_eq!((budget.debits_posted, budget.available()), (700, 300));
}

/// Each shard of `f`'s budget: what it can spend, and that it obeys the
/// budget's rule on its own.
async fn shard_available(ledger: &Ledger, f: &Fixture) -> Vec<u64> {
    let counters = ledger.read.shards(&f.budget()).await.unwrap();
    assert_eq!(counters.len(), usize::from(shards::COUNT));
    for (k, b) in counters.iter().enumerate() {
        assert!(
            b.debits_pending + b.debits_posted <= b.credits_posted,
            "shard {k} is overdrawn: {b:?}"
        );
    }
    counters.iter().map(Balance::available).collect()
}

pub async fn a_budget_spends_across_its_shards_exactly(ledger: &Ledger) {
    let f = Fixture::new("shards");
    f.fund(ledger, 1_000).await;
    let funded = shard_available(ledger, &f).await;
    assert_eq!(funded.iter().sum::<u64>(), 1_000);
    assert!(
        funded.iter().all(|n| *n == 62 || *n == 63),
        "a funding is spread evenly: {funded:?}"
    );

    // More than any one shard holds: drawn from several, stored on the entry.
    let big = f.reserve(1, 400, None);
    ledger
        .write
        .apply(std::slice::from_ref(&big))
        .await
        .unwrap();
    let stored = ledger.read.entries_for(&f.request(1)).await.unwrap();
    let draws = &stored[0].shards;
    assert!(draws.len() >= 7, "400 points need 7 shards: {draws:?}");
    assert_eq!(draws.iter().map(|d| d.points).sum::<u64>(), 400);
    assert_eq!(
        draws[0].shard,
        shards::home(&big.id),
        "the home shard is drawn first"
    );
    let after = shard_available(ledger, &f).await;
    assert_eq!(after.iter().sum::<u64>(), 600);

    // A void gives back exactly the shards drawn.
    ledger
        .write
        .apply(&[Entry::void(&stored[0], t0())])
        .await
        .unwrap();
    assert_eq!(shard_available(ledger, &f).await, funded);

    // The whole budget can be spent, and not a point more.
    ledger
        .write
        .apply(&[f.reserve(2, 1_000, None)])
        .await
        .unwrap();
    assert_eq!(shard_available(ledger, &f).await, vec![0; 16]);
    let err = ledger
        .write
        .apply(&[f.reserve(3, 1, None)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::InsufficientBudget {
                available: 0,
                requested: 1,
                ..
            }
        ),
        "{err:?}"
    );
    // The reservations spent from the shards they drew; a post moves none.
    let spent = ledger.read.shards(&f.budget()).await.unwrap();
    assert!(spent.iter().all(|b| b.debits_pending == 0));
    assert_eq!(spent.iter().map(|b| b.debits_posted).sum::<u64>(), 1_000);
    let second = ledger.read.entries_for(&f.request(2)).await.unwrap();
    ledger
        .write
        .apply(&[Entry::post(&second[0], t0())])
        .await
        .unwrap();
    assert_eq!(ledger.read.shards(&f.budget()).await.unwrap(), spent);
}

/// No shard holds a whole reservation, so every one of them reads the
/// shards and draws from several, all at once.
pub async fn concurrent_draws_across_shards_never_overspend(ledger: &Ledger) {
    let f = Fixture::new("shard-race");
    f.fund(ledger, 1_000).await;
    let attempts = (0..40).map(|n| {
        let write = ledger.write.clone();
        let entry = f.reserve(n, 70, None);
        async move { answered(write.as_ref(), &entry).await }
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        ok, 14,
        "exactly 14 reservations of 70 fit in 1,000: {results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, LedgerError::InsufficientBudget { .. })),
        "{results:?}"
    );
    let budget = ledger.read.balance(&f.budget()).await.unwrap();
    assert_eq!((budget.debits_posted, budget.available()), (980, 20));
    assert_eq!(shard_available(ledger, &f).await.iter().sum::<u64>(), 20);
}
