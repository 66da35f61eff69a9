//! Programs and enrollments held in memory, as loaded from a config file.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use pointsflow_core::ports::{Enrollments, MemberLink, ProgramCatalog, StoreError};
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

impl ProgramCatalog for StaticCatalog {
    fn program(&self, id: &ProgramId) -> Option<Arc<Program>> {
        self.programs.get(id).cloned()
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
