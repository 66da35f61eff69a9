//! The embedded request store behaves like a conditional DynamoDB put/update.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::DateTime;
use pointsflow_core::ports::{Created, RequestCreate, RequestGet, RequestUpdate, StoreError};
use pointsflow_core::request::{NewRequest, Recipient, SourceEvent, Status};
use pointsflow_core::values::{EventType, IdempotencyKey, ProgramId, RecipientId, SourceId};
use pointsflow_memory::MemoryRequestStore;

fn request() -> pointsflow_core::request::PointsRequest {
    NewRequest {
        source: SourceId::parse("s").unwrap(),
        idempotency_key: IdempotencyKey::parse("k").unwrap(),
        program: ProgramId::parse("p").unwrap(),
        recipient: Recipient {
            id: RecipientId::parse("r").unwrap(),
            email: None,
        },
        award: None,
        event: SourceEvent {
            kind: EventType::parse("e").unwrap(),
            id: None,
            occurred_at: DateTime::UNIX_EPOCH,
            attributes: Default::default(),
        },
    }
    .into_request(DateTime::UNIX_EPOCH)
}

#[tokio::test]
async fn create_is_conditional_and_returns_the_stored_item() {
    let store = MemoryRequestStore::new();
    let r = request();
    assert_eq!(store.create(&r).await.unwrap(), Created::New);
    let mut other = r.clone();
    other.program = ProgramId::parse("q").unwrap();
    match store.create(&other).await.unwrap() {
        Created::Existing(existing) => assert_eq!(*existing, r),
        Created::New => panic!("a second create overwrote the first"),
    }
}

#[tokio::test]
async fn updates_are_optimistic_and_lose_nothing() {
    let store = MemoryRequestStore::new();
    let r = request();
    store.create(&r).await.unwrap();
    let mut a = store.get(&r.id).await.unwrap().unwrap();
    let mut b = a.clone();
    a.transition(Status::Reserved, DateTime::UNIX_EPOCH, "a")
        .unwrap();
    b.transition(Status::Reserved, DateTime::UNIX_EPOCH, "b")
        .unwrap();
    assert_eq!(store.update(&a).await.unwrap(), 1);
    assert_eq!(
        store.update(&b).await,
        Err(StoreError::Conflict { expected: 0 })
    );
    let stored = store.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.timeline.last().unwrap().detail, "a");
}
