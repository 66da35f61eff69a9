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

#[tokio::test]
async fn the_embedded_program_store_conforms() {
    let store: Arc<dyn pointsflow_core::ports::ProgramStore> =
        Arc::new(pointsflow_memory::MemoryProgramStore::new());
    pointsflow_conformance::programs::run_all(&store).await;
}

#[tokio::test]
async fn the_embedded_enrollments_conform() {
    let store = Arc::new(MemoryRequestStore::new());
    let suite = pointsflow_conformance::enrollment::Enrollment {
        links: Arc::new(pointsflow_memory::MemoryEnrollments::default()),
        history: Arc::new(pointsflow_memory::MemoryLinkHistory::new()),
        create: store.clone(),
        get: store.clone(),
        update: store.clone(),
        waiting: store,
    };
    pointsflow_conformance::enrollment::run_all(&suite).await;
}

#[tokio::test]
async fn the_embedded_window_store_and_scheduled_index_conform() {
    let store = Arc::new(MemoryRequestStore::new());
    let suite = pointsflow_conformance::windows::Windows {
        windows: Arc::new(pointsflow_memory::MemoryWindowStore::new()),
        scheduled: store.clone(),
        create: store.clone(),
        get: store.clone(),
        update: store.clone(),
        unsettled: store.clone(),
        search: store.clone(),
        lines: store,
    };
    pointsflow_conformance::windows::run_all(&suite).await;
}

#[tokio::test]
async fn the_embedded_partner_limits_conform() {
    let state = Arc::new(pointsflow_memory::MemoryPartnerState::new());
    pointsflow_conformance::governance::run_all(state.clone(), state).await;
}

#[tokio::test]
async fn the_embedded_operators_ports_conform() {
    let store = Arc::new(MemoryRequestStore::new());
    let suite = pointsflow_conformance::operations::Operations {
        links: Arc::new(pointsflow_memory::MemoryEnrollments::default()),
        history: Arc::new(pointsflow_memory::MemoryLinkHistory::new()),
        create: store.clone(),
        update: store.clone(),
        search: store.clone(),
        lines: store.clone(),
        marks: store,
        audit: Arc::new(pointsflow_memory::MemoryAuditLog::new()),
        reports: Arc::new(pointsflow_memory::MemoryReportStore::new()),
        proposals: Arc::new(pointsflow_memory::MemoryProposals::new()),
    };
    pointsflow_conformance::operations::run_all(&suite).await;
}
