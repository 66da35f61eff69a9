//! The audit log, proposals and dead-letter redrive, embedded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use pointsflow_core::audit::AuditEntry;
use pointsflow_core::ports::{
    AuditLog, DeadLetters, ProposalStore, QueueError, RedriveReport, ReportStore, RequestLines,
    StoreError,
};
use pointsflow_core::proposal::{Proposal, ProposalId};
use pointsflow_core::reconcile::{LinePage, ReconcileReport, RequestLine, Scope};
use pointsflow_core::values::{PartnerReference, RequestId};

use crate::queue::MemoryQueue;

#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAuditLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> Vec<AuditEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("audit log lock poisoned".into())
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        match entries.iter_mut().find(|e| e.id == entry.id) {
            Some(e) => *e = entry.clone(),
            None => entries.push(entry.clone()),
        }
        Ok(())
    }

    async fn entries(&self, day: NaiveDate) -> Result<Vec<AuditEntry>, StoreError> {
        let entries = self.entries.lock().map_err(|_| poisoned())?;
        let mut out: Vec<AuditEntry> = entries
            .iter()
            .filter(|e| e.started_at.date_naive() == day)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(out)
    }
}

/// A queue's dead-letter queue, redriven into the queue.
#[derive(Debug, Clone)]
pub struct MemoryDeadLetters {
    pub dead_letter: Arc<MemoryQueue>,
    pub source: Arc<MemoryQueue>,
}

#[async_trait]
impl DeadLetters for MemoryDeadLetters {
    async fn redrive(&self, max: u64) -> Result<RedriveReport, QueueError> {
        let mut report = RedriveReport::default();
        while report.moved + report.failed < max {
            let want = usize::try_from(max - report.moved - report.failed)
                .unwrap_or(usize::MAX)
                .min(10);
            let batch = self
                .dead_letter
                .receive(want, std::time::Duration::ZERO)
                .await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let sent = self.source.send_batch(std::slice::from_ref(&message.body));
                match sent.and_then(|_| self.dead_letter.delete(&message.receipt_handle)) {
                    Ok(()) => report.moved += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not move a dead letter back");
                        report.failed += 1;
                    }
                }
            }
        }
        report.left = self.dead_letter.depth() as u64;
        Ok(report)
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.dead_letter.depth() as u64)
    }
}

#[async_trait]
impl pointsflow_core::ports::RequestSearch for crate::store::MemoryRequestStore {
    async fn search(
        &self,
        filter: &pointsflow_core::search::SearchFilter,
        limit: usize,
    ) -> Result<Vec<pointsflow_core::request::PointsRequest>, StoreError> {
        let mut found = Vec::new();
        self.visit(None, |r| {
            if filter.matches(r) {
                found.push(r.clone());
            }
            true
        })?;
        found.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        found.truncate(limit);
        Ok(found)
    }
}

#[async_trait]
impl RequestLines for crate::store::MemoryRequestStore {
    async fn lines(
        &self,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LinePage, StoreError> {
        let after = after
            .map(RequestId::parse)
            .transpose()
            .map_err(|e| StoreError::Unavailable(format!("page cursor: {e}")))?;
        let mut page = LinePage::default();
        let mut last = None;
        self.visit(after.as_ref(), |r| {
            last = Some(r.id.clone());
            if scope.covers(r) {
                page.lines.push(RequestLine::of(r));
            }
            page.lines.len() < limit
        })?;
        if page.lines.len() >= limit {
            page.next = last.map(|id| id.to_string());
        }
        Ok(page)
    }

    async fn known_references(
        &self,
        references: &HashSet<PartnerReference>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashSet<PartnerReference>, StoreError> {
        let mut known = HashSet::new();
        if references.is_empty() {
            return Ok(known);
        }
        self.visit(None, |r| {
            let sent = pointsflow_core::reconcile::period_time(r);
            if let Some(reference) = r
                .partner_reference
                .as_ref()
                .filter(|x| references.contains(*x) && sent >= from && sent < to)
            {
                known.insert(reference.clone());
            }
            known.len() < references.len()
        })?;
        Ok(known)
    }
}

/// Reconciliation reports, embedded.
#[derive(Debug, Default)]
pub struct MemoryReportStore {
    reports: Mutex<HashMap<String, ReconcileReport>>,
}

impl MemoryReportStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ReportStore for MemoryReportStore {
    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StoreError> {
        self.reports
            .lock()
            .map_err(|_| poisoned())?
            .insert(report.id.clone(), report.clone());
        Ok(())
    }

    async fn report(&self, id: &str) -> Result<Option<ReconcileReport>, StoreError> {
        Ok(self
            .reports
            .lock()
            .map_err(|_| poisoned())?
            .get(id)
            .cloned())
    }
}

/// Proposals in memory.
#[derive(Debug, Default)]
pub struct MemoryProposals {
    proposals: Mutex<std::collections::BTreeMap<ProposalId, Proposal>>,
}

impl MemoryProposals {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ProposalStore for MemoryProposals {
    async fn create(&self, proposal: &Proposal) -> Result<(), StoreError> {
        let mut all = self.proposals.lock().map_err(|_| poisoned())?;
        if let Some(existing) = all.get(&proposal.id) {
            return Err(StoreError::Conflict {
                expected: existing.version,
            });
        }
        let mut stored = proposal.clone();
        stored.version = 0;
        all.insert(stored.id.clone(), stored);
        Ok(())
    }

    async fn proposal(&self, id: &ProposalId) -> Result<Option<Proposal>, StoreError> {
        let all = self.proposals.lock().map_err(|_| poisoned())?;
        Ok(all.get(id).cloned())
    }

    async fn save(&self, proposal: &Proposal) -> Result<u64, StoreError> {
        let mut all = self.proposals.lock().map_err(|_| poisoned())?;
        let stored = all.get_mut(&proposal.id).ok_or(StoreError::NotFound)?;
        if stored.version != proposal.version {
            return Err(StoreError::Conflict {
                expected: proposal.version,
            });
        }
        *stored = proposal.clone();
        stored.version += 1;
        Ok(stored.version)
    }

    async fn open(&self, limit: usize) -> Result<Vec<Proposal>, StoreError> {
        let all = self.proposals.lock().map_err(|_| poisoned())?;
        let mut open: Vec<Proposal> = all.values().filter(|p| p.is_open()).cloned().collect();
        open.sort_by(|a, b| (a.proposed_at, &a.id).cmp(&(b.proposed_at, &b.id)));
        open.truncate(limit);
        Ok(open)
    }
}
