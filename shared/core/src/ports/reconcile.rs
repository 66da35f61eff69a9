//! What reconciliation reads (the requests of a scope) and where its reports go.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::error::StoreError;
use crate::reconcile::{LinePage, ReconcileReport, Scope};
use crate::values::PartnerReference;

/// The requests of a scope, page by page, and which references any request
/// carries (for statement lines no request of the scope explains).
#[async_trait]
pub trait RequestLines: Send + Sync {
    async fn lines(
        &self,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LinePage, StoreError>;

    /// Those of `references` some request sent to a partner in `[from,
    /// to)` carries ([`period_time`]).
    ///
    /// [`period_time`]: crate::reconcile::period_time
    async fn known_references(
        &self,
        references: &HashSet<PartnerReference>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashSet<PartnerReference>, StoreError>;
}

/// Where reports are kept.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores the report under its id, replacing an earlier run's.
    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StoreError>;
    async fn report(&self, id: &str) -> Result<Option<ReconcileReport>, StoreError>;
}
