//! Programs and enrollments held in memory, as loaded from a config file,
//! and the programs operators apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pointsflow_core::ports::{
    Enrollments, MemberLink, ProgramCatalog, ProgramStore, StoreError, StoredProgram,
};
use pointsflow_core::program::Program;
use pointsflow_core::values::{ProgramId, RecipientId};

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

    pub fn all(&self) -> impl Iterator<Item = &Arc<Program>> {
        self.programs.values()
    }
}

#[async_trait]
impl ProgramCatalog for StaticCatalog {
    fn program(&self, id: &ProgramId) -> Option<Arc<Program>> {
        self.programs.get(id).cloned()
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

#[derive(Debug, Default)]
pub struct StaticEnrollments {
    links: HashMap<(ProgramId, RecipientId), MemberLink>,
}

impl StaticEnrollments {
    pub fn new(links: impl IntoIterator<Item = MemberLink>) -> Self {
        Self {
            links: links
                .into_iter()
                .map(|l| ((l.program.clone(), l.recipient.clone()), l))
                .collect(),
        }
    }
}

#[async_trait]
impl Enrollments for StaticEnrollments {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        Ok(self
            .links
            .get(&(program.clone(), recipient.clone()))
            .cloned())
    }
}
