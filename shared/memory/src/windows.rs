//! Window runs and credits, with the conditional writes of the DynamoDB adapter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pointsflow_core::events::Write;
use pointsflow_core::ports::{StoreError, UnsettledIndex, WindowStore};
use pointsflow_core::unsettled::{Unsettled, UnsettledItem, credit_unsettled_since};
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, RunCounts, WindowCredit, WindowId, WindowRun, settled_counts,
};

use crate::stream::MemoryStream;

#[derive(Debug, Default)]
pub struct MemoryWindowStore {
    inner: Mutex<Inner>,
    /// Where each write of a credit is recorded, when the store has a stream.
    stream: Option<Arc<MemoryStream>>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<WindowId, WindowRun>,
    credits: HashMap<CreditId, WindowCredit>,
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("window store lock poisoned".into())
}

impl MemoryWindowStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that records each write of a credit on `stream` (under the
    /// lock the write holds), as a table with a stream does.
    pub fn with_stream(stream: Arc<MemoryStream>) -> Self {
        Self {
            stream: Some(stream),
            ..Self::default()
        }
    }

    fn record(&self, before: Option<WindowCredit>, after: &WindowCredit) {
        if let Some(stream) = &self.stream {
            stream.append(Write::Credit {
                before,
                after: after.clone(),
            });
        }
    }

    /// Every credit, for tests and reports.
    pub fn credits(&self) -> Vec<WindowCredit> {
        match self.inner.lock() {
            Ok(inner) => inner.credits.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Every credit of `window`, for tests and reports.
    pub fn credits_of(&self, window: &WindowId) -> Vec<WindowCredit> {
        let inner = match self.inner.lock() {
            Ok(i) => i,
            Err(_) => return Vec::new(),
        };
        inner
            .credits
            .values()
            .filter(|c| &c.window == window)
            .cloned()
            .collect()
    }
}

#[async_trait]
impl WindowStore for MemoryWindowStore {
    async fn claim(&self, run: &WindowRun) -> Result<Claim, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if let Some(existing) = inner.runs.get(&run.window) {
            return Ok(Claim::Existing(existing.clone()));
        }
        let mut stored = run.clone();
        stored.version = 0;
        inner.runs.insert(run.window.clone(), stored.clone());
        Ok(Claim::Started(stored))
    }

    async fn run(&self, window: &WindowId) -> Result<Option<WindowRun>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(inner.runs.get(window).cloned())
    }

    async fn save_run(&self, run: &WindowRun) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let stored = inner
            .runs
            .get_mut(&run.window)
            .ok_or(StoreError::NotFound)?;
        if stored.version != run.version {
            return Err(StoreError::Conflict {
                expected: run.version,
            });
        }
        let mut next = run.clone();
        next.version = run.version + 1;
        *stored = next;
        Ok(run.version + 1)
    }

    async fn create_credit(&self, credit: &WindowCredit) -> Result<CreditCreated, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if let Some(existing) = inner.credits.get(&credit.id) {
            return Ok(CreditCreated::Existing(Box::new(existing.clone())));
        }
        let mut stored = credit.clone();
        stored.version = 0;
        self.record(None, &stored);
        inner.credits.insert(credit.id.clone(), stored);
        Ok(CreditCreated::New)
    }

    async fn credit(&self, id: &CreditId) -> Result<Option<WindowCredit>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        Ok(inner.credits.get(id).cloned())
    }

    async fn save_credit(&self, credit: &WindowCredit) -> Result<u64, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let stored = inner.credits.get(&credit.id).ok_or(StoreError::NotFound)?;
        if stored.version != credit.version {
            return Err(StoreError::Conflict {
                expected: credit.version,
            });
        }
        let mut next = credit.clone();
        next.version = credit.version + 1;
        self.record(Some(stored.clone()), &next);
        inner.credits.insert(credit.id.clone(), next);
        Ok(credit.version + 1)
    }

    async fn settled(&self, window: &WindowId) -> Result<RunCounts, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let mut counts = RunCounts::default();
        for credit in inner.credits.values().filter(|c| &c.window == window) {
            counts.add(&settled_counts(credit));
        }
        Ok(counts)
    }
}

#[async_trait]
impl UnsettledIndex for MemoryWindowStore {
    async fn unsettled(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        let inner = self.inner.lock().map_err(|_| poisoned())?;
        let mut found: Vec<Unsettled> = inner
            .credits
            .values()
            .filter_map(|c| {
                let since = credit_unsettled_since(c).filter(|s| *s < before)?;
                Some(Unsettled {
                    since,
                    item: UnsettledItem::Credit(c.id.clone()),
                })
            })
            .collect();
        found.sort();
        found.truncate(limit);
        Ok(found)
    }
}
