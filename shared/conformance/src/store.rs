//! The request store: conditional create, consistent read, optimistic update.

use std::sync::Arc;

use pointsflow_core::ports::{Created, RequestCreate, RequestGet, RequestUpdate, StoreError};
use pointsflow_core::request::Status;
use pointsflow_core::values::{ProgramId, RequestId};

use crate::{request, t0};

/// The three roles of a request store, from one adapter.
pub struct Store {
    pub create: Arc<dyn RequestCreate>,
    pub get: Arc<dyn RequestGet>,
    pub update: Arc<dyn RequestUpdate>,
}

/// Runs every store check.
pub async fn run_all(store: &Store) {
    create_is_conditional(store).await;
    a_missing_request_is_none(store).await;
    updates_are_optimistic(store).await;
    an_update_of_a_missing_request_is_not_found(store).await;
    concurrent_updates_lose_nothing(store).await;
}

pub async fn create_is_conditional(store: &Store) {
    let r = request("store-create");
    assert_eq!(store.create.create(&r).await.unwrap(), Created::New);
    let mut other = r.clone();
    other.program = ProgramId::parse("q").unwrap();
    match store.create.create(&other).await.unwrap() {
        Created::Existing(existing) => {
            assert_eq!(*existing, r, "the stored request came back changed")
        }
        Created::New => panic!("a second create with the same id overwrote the first"),
    }
    assert_eq!(store.get.get(&r.id).await.unwrap().unwrap(), r);
}

pub async fn a_missing_request_is_none(store: &Store) {
    let id = request("store-missing").id;
    assert_eq!(store.get.get(&id).await.unwrap(), None);
}

pub async fn updates_are_optimistic(store: &Store) {
    let r = request("store-update");
    store.create.create(&r).await.unwrap();
    let mut a = store.get.get(&r.id).await.unwrap().unwrap();
    let mut b = a.clone();
    a.transition(Status::Reserved, t0(), "a").unwrap();
    b.transition(Status::Reserved, t0(), "b").unwrap();
    assert_eq!(store.update.update(&a).await.unwrap(), 1);
    assert_eq!(
        store.update.update(&b).await,
        Err(StoreError::Conflict { expected: 0 }),
        "an update from a stale read must fail"
    );
    let stored = store.get.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.timeline.last().unwrap().detail, "a");
    let mut next = stored.clone();
    next.transition(Status::Dispatching, t0(), "c").unwrap();
    assert_eq!(store.update.update(&next).await.unwrap(), 2);
}

pub async fn an_update_of_a_missing_request_is_not_found(store: &Store) {
    let r = request("store-update-missing");
    assert_eq!(store.update.update(&r).await, Err(StoreError::NotFound));
    assert_eq!(
        store.get.get(&r.id).await.unwrap(),
        None,
        "an update created an item"
    );
}

pub async fn concurrent_updates_lose_nothing(store: &Store) {
    let r = request("store-race");
    store.create.create(&r).await.unwrap();
    // Ten writers each read, change and write back until they succeed; every
    // change must be in the final timeline.
    let writers = (0..10).map(|i| {
        let (get, update) = (store.get.clone(), store.update.clone());
        let id: RequestId = r.id.clone();
        async move {
            loop {
                let mut current = get.get(&id).await.unwrap().unwrap();
                current
                    .timeline
                    .push(pointsflow_core::request::TimelineEntry::new(
                        current.state(),
                        t0(),
                        format!("writer {i}"),
                    ));
                match update.update(&current).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }
    });
    futures::future::join_all(writers).await;
    let stored = store.get.get(&r.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 10);
    for i in 0..10 {
        let detail = format!("writer {i}");
        assert!(
            stored.timeline.iter().any(|e| e.detail == detail),
            "lost the update of {detail}"
        );
    }
}
