//! Programs and enrollments held in memory, as loaded from a config file,
//! and the programs operators apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use pointsflow_core::enrollment::{LinkEvent, MemberLink};
use pointsflow_core::events::Write;
use pointsflow_core::ports::{
    Enrollments, LinkHistory, ProgramCatalog, ProgramStore, StoreError, StoredProgram,
};
use pointsflow_core::program::Program;
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};

use crate::stream::MemoryStream;

#[derive(Debug, Default)]
pub struct StaticCatalog {
    programs: HashMap<ProgramId, Arc<Program>>,
}

impl StaticCatalog {
    pub fn new(programs: impl IntoIterator<Item = Program>) -> Self {
        Self {
            programs: programs
                .into_iter()
                .map(|p| (p.id.clone(), Arc::new(p)))
                .collect(),
        }
    }
}

#[async_trait]
impl ProgramCatalog for StaticCatalog {
    fn program(&self, id: &ProgramId) -> Option<Arc<Program>> {
        self.programs.get(id).cloned()
    }

    fn programs(&self) -> Vec<Arc<Program>> {
        self.programs.values().cloned().collect()
    }
}

/// Applied programs, in memory.
#[derive(Debug, Default)]
pub struct MemoryProgramStore {
    programs: Mutex<BTreeMap<ProgramId, StoredProgram>>,
}

impl MemoryProgramStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ProgramStore for MemoryProgramStore {
    async fn programs(&self) -> Result<Vec<StoredProgram>, StoreError> {
        let programs = self
            .programs
            .lock()
            .map_err(|_| StoreError::Unavailable("the program store lock is poisoned".into()))?;
        Ok(programs.values().cloned().collect())
    }

    async fn put_program(&self, program: &StoredProgram) -> Result<(), StoreError> {
        let mut programs = self
            .programs
            .lock()
            .map_err(|_| StoreError::Unavailable("the program store lock is poisoned".into()))?;
        let stored = programs.get(&program.program.id).map_or(0, |p| p.revision);
        if program.revision != stored + 1 {
            return Err(StoreError::Conflict { expected: stored });
        }
        programs.insert(program.program.id.clone(), program.clone());
        Ok(())
    }
}

/// Member links in memory: the configuration's `[[members]]`, and those
/// linked since (`PUT /v1/programs/{program}/members/{recipient}`).
#[derive(Debug, Default)]
pub struct MemoryEnrollments {
    links: RwLock<HashMap<(ProgramId, RecipientId), MemberLink>>,
    /// Where each write is recorded, when the store has a stream.
    stream: Option<Arc<MemoryStream>>,
}

type Links = HashMap<(ProgramId, RecipientId), MemberLink>;

impl MemoryEnrollments {
    pub fn new(links: impl IntoIterator<Item = MemberLink>) -> Self {
        Self {
            links: RwLock::new(
                links
                    .into_iter()
                    .map(|l| ((l.program.clone(), l.recipient.clone()), l))
                    .collect(),
            ),
            stream: None,
        }
    }

    /// The same store, recording each write on `stream` (under the lock
    /// the write holds), as a table with a stream does.
    pub fn with_stream(mut self, stream: Arc<MemoryStream>) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Stores `link`, and records the write.
    fn put(&self, links: &mut Links, link: &MemberLink) {
        let before = links.insert((link.program.clone(), link.recipient.clone()), link.clone());
        if let Some(stream) = &self.stream {
            stream.append(Write::Link {
                before,
                after: link.clone(),
            });
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("the enrollment lock is poisoned".into())
}

#[async_trait]
impl Enrollments for MemoryEnrollments {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        let links = self.links.read().map_err(|_| poisoned())?;
        Ok(links.get(&(program.clone(), recipient.clone())).cloned())
    }

    async fn replace_link(
        &self,
        link: &MemberLink,
        previous: &MemberNumber,
    ) -> Result<bool, StoreError> {
        let mut links = self.links.write().map_err(|_| poisoned())?;
        let key = (link.program.clone(), link.recipient.clone());
        if links
            .get(&key)
            .is_some_and(|stored| &stored.member != previous || !stored.is_active())
        {
            return Ok(false);
        }
        self.put(&mut links, link);
        Ok(true)
    }

    async fn create_link(&self, link: &MemberLink) -> Result<Option<MemberLink>, StoreError> {
        let mut links = self.links.write().map_err(|_| poisoned())?;
        let key = (link.program.clone(), link.recipient.clone());
        match links.get(&key) {
            Some(stored) if stored.is_active() => Ok(Some(stored.clone())),
            _ => {
                self.put(&mut links, link);
                Ok(None)
            }
        }
    }

    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError> {
        let mut links = self.links.write().map_err(|_| poisoned())?;
        let key = (link.program.clone(), link.recipient.clone());
        if links.get(&key).is_some_and(|stored| {
            !stored.same_member(link) || !stored.is_active() || stored.linked_at != link.linked_at
        }) {
            return Ok(false);
        }
        self.put(&mut links, link);
        Ok(true)
    }
}

/// Every link change in memory, per (program, recipient), oldest first.
#[derive(Debug, Default)]
pub struct MemoryLinkHistory {
    events: RwLock<HashMap<(ProgramId, RecipientId), Vec<LinkEvent>>>,
}

impl MemoryLinkHistory {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl LinkHistory for MemoryLinkHistory {
    async fn record(&self, event: &LinkEvent) -> Result<(), StoreError> {
        let mut events = self.events.write().map_err(|_| poisoned())?;
        let list = events
            .entry((event.program.clone(), event.recipient.clone()))
            .or_default();
        if !list.contains(event) {
            list.push(event.clone());
            list.sort_by_key(|e| e.at);
        }
        Ok(())
    }

    async fn history(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Vec<LinkEvent>, StoreError> {
        let events = self.events.read().map_err(|_| poisoned())?;
        Ok(events
            .get(&(program.clone(), recipient.clone()))
            .cloned()
            .unwrap_or_default())
    }
}
