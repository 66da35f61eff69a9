//! The live program catalog: the configuration's programs, overlaid by the
//! programs operators applied (`pointsflow programs apply`), reloaded from
//! the program store when the snapshot is older than the refresh interval.
//! A change (a new budget, pausing, real-time <-> scheduled) reaches every
//! function within one interval, without a deployment.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pointsflow_core::ports::{ProgramCatalog, ProgramStore, StoreError, StoredProgram};
use pointsflow_core::program::Program;
use pointsflow_core::values::ProgramId;

/// How often a function reloads applied programs by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

struct Snapshot {
    programs: HashMap<ProgramId, Arc<Program>>,
    loaded_at: Instant,
}

pub struct LiveCatalog {
    configured: Vec<Program>,
    store: Arc<dyn ProgramStore>,
    every: Duration,
    snapshot: RwLock<Snapshot>,
    /// One reload at a time; the others keep reading the last snapshot.
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for LiveCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCatalog")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

fn merge(configured: &[Program], applied: Vec<StoredProgram>) -> HashMap<ProgramId, Arc<Program>> {
    let mut programs: HashMap<ProgramId, Arc<Program>> = configured
        .iter()
        .map(|p| (p.id.clone(), Arc::new(p.clone())))
        .collect();
    for stored in applied {
        programs.insert(stored.program.id.clone(), Arc::new(stored.program));
    }
    programs
}

impl LiveCatalog {
    /// Loads the applied programs now (a function's cold start).
    pub async fn load(
        configured: Vec<Program>,
        store: Arc<dyn ProgramStore>,
        every: Duration,
    ) -> Result<Self, StoreError> {
        let applied = store.programs().await?;
        let snapshot = Snapshot {
            programs: merge(&configured, applied),
            loaded_at: Instant::now(),
        };
        Ok(Self {
            configured,
            store,
            every,
            snapshot: RwLock::new(snapshot),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    fn is_stale(&self) -> bool {
        self.snapshot
            .read()
            .map(|s| s.loaded_at.elapsed() >= self.every)
            .unwrap_or(true)
    }

    /// Reloads; with `only_if_stale`, not when another invocation reloaded
    /// while this one waited for the lock (one Query per interval, not one
    /// per concurrent invocation).
    async fn load_now(&self, only_if_stale: bool) -> Result<(), StoreError> {
        let _one = self.reloading.lock().await;
        if only_if_stale && !self.is_stale() {
            return Ok(());
        }
        let applied = self.store.programs().await?;
        let programs = merge(&self.configured, applied);
        let mut snapshot = self
            .snapshot
            .write()
            .map_err(|_| StoreError::Unavailable("the catalog lock is poisoned".into()))?;
        *snapshot = Snapshot {
            programs,
            loaded_at: Instant::now(),
        };
        Ok(())
    }
}

#[async_trait]
impl ProgramCatalog for LiveCatalog {
    fn program(&self, id: &ProgramId) -> Option<Arc<Program>> {
        self.snapshot.read().ok()?.programs.get(id).cloned()
    }

    fn programs(&self) -> Vec<Arc<Program>> {
        self.snapshot
            .read()
            .map(|s| s.programs.values().cloned().collect())
            .unwrap_or_default()
    }

    async fn refresh(&self) -> Result<(), StoreError> {
        if self.is_stale() {
            self.load_now(true).await?;
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), StoreError> {
        self.load_now(false).await
    }
}

/// Refreshes `catalog` at the start of an invocation; a failure is logged and
/// the last snapshot serves.
pub async fn refresh(catalog: &dyn ProgramCatalog) {
    if let Err(e) = catalog.refresh().await {
        tracing::warn!(error = %e, "could not reload the programs; the last ones stay in force");
    }
}
