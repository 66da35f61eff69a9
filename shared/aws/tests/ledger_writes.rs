//! What each ledger call sends to DynamoDB, counted by the meter the bench
//! uses: a reservation is one transaction of its entry and a budget shard,
//! its post one conditional `PutItem` of the entry alone (a budget counts a
//! reservation as spent when it is made), its void a transaction that gives
//! the shard back; a post sent twice is answered as a retry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pointsflow_aws::{DynamoLedger, tables};
use pointsflow_core::ledger::{AccountId, Applied, Entry, LedgerError};
use pointsflow_core::ports::{LedgerRead, LedgerWrite};
use pointsflow_core::values::{
    IdempotencyKey, MemberNumber, PartnerId, Points, ProgramId, RequestId, SourceId,
};
use pointsflow_harness::emulator;
use pointsflow_harness::meter::{Meter, Usage, metered};

fn call(usage: &Usage, operation: &str) -> u64 {
    usage
        .calls
        .get(&("dynamodb".to_owned(), operation.to_owned()))
        .copied()
        .unwrap_or(0)
}

fn reservation(program: &ProgramId, n: u32, points: u64) -> Entry {
    let request = RequestId::derive(
        &SourceId::parse("writes").unwrap(),
        &IdempotencyKey::parse(&format!("deal-{n}")).unwrap(),
    );
    Entry::reserve(
        &request,
        AccountId::budget(program),
        AccountId::member(
            &PartnerId::parse("air").unwrap(),
            &MemberNumber::parse(&format!("SKY{n:07}")).unwrap(),
        ),
        Points::new(points).unwrap(),
        Vec::new(),
        pointsflow_conformance::t0(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_one_put_and_moves_no_budget_shard() {
    let meter = Meter::new();
    let config = metered(emulator::config().await, &meter);
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = emulator::unique_name("pf-ledger-writes");
    tables::create_ledger_table(&client, &table).await.unwrap();
    let ledger = DynamoLedger::new(client, table);
    let program = ProgramId::parse("writes").unwrap();
    let t0 = pointsflow_conformance::t0();
    ledger
        .apply(&[Entry::fund(
            &program,
            "initial",
            Points::new(1_000).unwrap(),
            t0,
        )])
        .await
        .unwrap();
    let budget = AccountId::budget(&program);

    let a = reservation(&program, 1, 30);
    let b = reservation(&program, 2, 20);
    meter.reset();
    ledger.apply(std::slice::from_ref(&a)).await.unwrap();
    let reserved = meter.usage();
    assert_eq!(call(&reserved, "TransactWriteItems"), 1, "{reserved:?}");
    assert_eq!(call(&reserved, "PutItem"), 0, "{reserved:?}");
    assert_eq!(
        reserved.write_units, 4,
        "the entry and one shard, 2 units each in a transaction: {reserved:?}"
    );
    ledger.apply(std::slice::from_ref(&b)).await.unwrap();
    let shards = ledger.shards(&budget).await.unwrap();

    meter.reset();
    assert_eq!(
        ledger.apply(&[Entry::post(&a, t0)]).await.unwrap(),
        Applied::Now
    );
    let posted = meter.usage();
    assert_eq!(call(&posted, "PutItem"), 1, "{posted:?}");
    assert_eq!(call(&posted, "TransactWriteItems"), 0, "{posted:?}");
    assert_eq!(posted.write_units, 1, "the entry alone: {posted:?}");
    assert_eq!(
        ledger.shards(&budget).await.unwrap(),
        shards,
        "a post moves no shard"
    );

    // Sent again: its condition refuses it (DynamoDB charges the refused
    // write), and it is answered as a retry; a void of it is refused.
    meter.reset();
    assert_eq!(
        ledger.apply(&[Entry::post(&a, t0)]).await.unwrap(),
        Applied::Already
    );
    let again = meter.usage();
    assert_eq!(
        (call(&again, "PutItem"), call(&again, "TransactWriteItems")),
        (1, 0),
        "{again:?}"
    );
    let err = ledger.apply(&[Entry::void(&a, t0)]).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::AlreadyResolved { .. }),
        "{err:?}"
    );
    assert_eq!(ledger.shards(&budget).await.unwrap(), shards);

    // A void gives the reservation's shard back, in a transaction.
    meter.reset();
    ledger.apply(&[Entry::void(&b, t0)]).await.unwrap();
    let voided = meter.usage();
    assert_eq!(call(&voided, "TransactWriteItems"), 1, "{voided:?}");
    assert_eq!(voided.write_units, 4, "{voided:?}");
    let after = ledger.balance(&budget).await.unwrap();
    assert_eq!(
        (after.debits_pending, after.debits_posted, after.available()),
        (0, 30, 970)
    );
}
