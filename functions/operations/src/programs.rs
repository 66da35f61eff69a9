//! Programs and windows as operators read them, and program revisions an
//! admin proposes (confirmed by another: see `changes`).

use pointsflow_config::ConfigError;
use pointsflow_core::access::{OperatorIdentity, Role};
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ports::{StoreError, StoredProgram};
use pointsflow_core::program::Program;
use pointsflow_core::proposal::Change;
use pointsflow_core::values::{ProgramId, RecipientId};
use pointsflow_core::window::WindowId;
use serde_json::{Value, json};

use crate::views::{self, LinkView, ProgramView, WindowView};
use crate::{OpError, Operations};

impl Operations {
    /// The applied revisions, read now (not the catalog's snapshot): an
    /// operator sees what was just applied.
    async fn applied(&self) -> Result<Vec<StoredProgram>, OpError> {
        Ok(self.ports.program_store.programs().await?)
    }

    pub(crate) async fn list_programs(&self) -> Result<(Value, String), OpError> {
        let applied = self.applied().await?;
        let all = views::in_force(&self.config.programs, &applied);
        let list: Vec<&ProgramView> = all.values().collect();
        let summary = format!("{} programs", list.len());
        Ok((json!({ "programs": list }), summary))
    }

    pub(crate) async fn show_program(&self, id: &ProgramId) -> Result<(Value, String), OpError> {
        let applied = self.applied().await?;
        let all = views::in_force(&self.config.programs, &applied);
        let view = all
            .get(id)
            .ok_or_else(|| OpError::new("not_found", format!("no program {id}")))?;
        let summary = format!("{id} at revision {}", view.revision);
        Ok((json!(view), summary))
    }

    /// The program in force named `id` (the catalog's copy).
    pub(crate) fn program_named(&self, id: &ProgramId) -> Result<std::sync::Arc<Program>, OpError> {
        self.ports
            .programs
            .program(id)
            .ok_or_else(|| OpError::new("not_found", format!("no program {id}")))
    }

    /// Proposes `program` as revision `revision`: checked now against this
    /// stack's partners and sources and the revision in force, applied
    /// when another admin confirms it.
    pub(crate) async fn propose_program(
        &self,
        operator: &OperatorIdentity,
        revision: u64,
        program: &Program,
        reason: Option<&str>,
    ) -> Result<(Value, String), OpError> {
        operator.require(Role::Admin, "propose a program revision")?;
        self.config.known.check(program).map_err(|e| {
            let field = match &e {
                ConfigError::Invalid { field, .. } => format!("program.{field}"),
                _ => "program".to_owned(),
            };
            OpError::new("invalid_command", format!("{field}: {e}"))
        })?;
        let applied = self.applied().await?;
        let current = applied
            .iter()
            .find(|p| p.program.id == program.id)
            .map_or(0, |p| p.revision);
        if revision != current + 1 {
            return Err(OpError::new(
                "revision_conflict",
                format!(
                    "program {} is at revision {current}: read it again and propose revision {}",
                    program.id,
                    current + 1
                ),
            ));
        }
        self.propose(
            operator,
            Change::ProgramRevision {
                program: program.clone(),
                revision,
            },
            reason.unwrap_or(""),
        )
        .await
    }

    /// `GET` of a window: its run and progress.
    pub(crate) async fn show_window(&self, raw: &str) -> Result<(Value, String), OpError> {
        let window = WindowId::parse(raw)
            .map_err(|e| OpError::new("invalid_command", format!("window: {e}")))?;
        let unavailable = |e: StoreError| OpError::unavailable("the window store", e);
        let run = self
            .ports
            .windows
            .run(&window)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                OpError::new(
                    "not_found",
                    format!("window {window} has not been dispatched (yet)"),
                )
            })?;
        let settled = self
            .ports
            .windows
            .settled(&window)
            .await
            .map_err(unavailable)?;
        let view = WindowView::of(&run.with_settled(&settled));
        let summary = format!(
            "{window}: {} of {} credits credited",
            view.credited, view.credits
        );
        Ok((json!(view), summary))
    }

    /// A recipient's link in force.
    pub(crate) async fn show_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<(Value, String), OpError> {
        let link = self.link_in_force(program, recipient).await?;
        let summary = format!("{recipient} in {program} is linked to {}", link.member);
        Ok((json!(LinkView::of(&link)), summary))
    }

    /// A recipient's link in force, or `not_found`.
    pub(crate) async fn link_in_force(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<MemberLink, OpError> {
        self.ports
            .enrollments
            .member_link(program, recipient)
            .await?
            .ok_or_else(|| {
                OpError::new(
                    "not_found",
                    format!("recipient {recipient} is not linked in program {program}"),
                )
            })
    }
}
