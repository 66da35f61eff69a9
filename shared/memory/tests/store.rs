//! The embedded request store passes the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use pointsflow_memory::MemoryRequestStore;

#[tokio::test]
async fn the_embedded_store_conforms() {
    let store = Arc::new(MemoryRequestStore::new());
    let suite = pointsflow_conformance::store::Store {
        create: store.clone(),
        get: store.clone(),
        update: store,
    };
    pointsflow_conformance::store::run_all(&suite).await;
}
