//! Apply a program revision: stored only over the revision its author read,
//! then set going: requests a paused program held are released when it is
//! active, and a scheduled program's next window is armed.

use pointsflow_core::ports::{
    Clock, PipelineMessage, ProgramStore, Publish, PublishError, StoreError, StoredProgram,
    WaitingRequests, WindowSchedules,
};
use pointsflow_core::program::{Program, ProgramState};
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::ProgramId;
use pointsflow_core::window::WindowId;

/// What applying a program uses.
#[derive(Clone, Copy)]
pub struct ApplyPorts<'a> {
    pub store: &'a dyn ProgramStore,
    pub waiting: &'a dyn WaitingRequests,
    pub eligibility: &'a dyn Publish,
    pub schedules: &'a dyn WindowSchedules,
    pub clock: &'a dyn Clock,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Another revision was applied since the author read the program.
    #[error("program {program} is at revision {stored}: read it again and apply revision {}", stored + 1)]
    Conflict { program: ProgramId, stored: u64 },
    #[error("the program could not be stored: {0}")]
    Store(StoreError),
    #[error(
        "the program is applied but its held requests could not be released ({0}); apply it again"
    )]
    NotReleased(String),
    #[error(
        "the program is applied but its next window could not be scheduled ({0}); apply it again"
    )]
    NotArmed(StoreError),
}

impl ApplyError {
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Conflict { .. } => "revision_conflict",
            ApplyError::Store(_) | ApplyError::NotReleased(_) | ApplyError::NotArmed(_) => {
                "unavailable"
            }
        }
    }
}

/// Stores `revision` and sets it going. The same revision applied again
/// (a retry) answers as the first time did, and sets it going again.
pub async fn apply(
    ports: ApplyPorts<'_>,
    revision: StoredProgram,
) -> Result<StoredProgram, ApplyError> {
    let stored = match ports.store.put_program(&revision).await {
        Ok(()) => {
            tracing::info!(program = %revision.program.id, revision = revision.revision, "program applied");
            revision
        }
        Err(StoreError::Conflict { expected }) => {
            let applied = ports.store.programs().await.map_err(ApplyError::Store)?;
            match applied
                .into_iter()
                .find(|p| p.program.id == revision.program.id)
            {
                Some(same)
                    if same.revision == revision.revision && same.program == revision.program =>
                {
                    same
                }
                _ => {
                    return Err(ApplyError::Conflict {
                        program: revision.program.id.clone(),
                        stored: expected,
                    });
                }
            }
        }
        Err(e) => return Err(ApplyError::Store(e)),
    };
    set_going(ports, &stored.program).await?;
    Ok(stored)
}

/// What applying a program sets going: its held requests released (if it
/// is active) and its next window armed (if it is scheduled).
async fn set_going(ports: ApplyPorts<'_>, program: &Program) -> Result<(), ApplyError> {
    release_held(ports, program).await?;
    match program.window_after(ports.clock.now()) {
        Ok(Some(window)) => {
            let window = WindowId::new(&program.id, window.closes_at);
            ports
                .schedules
                .arm(&window)
                .await
                .map_err(ApplyError::NotArmed)?;
            tracing::info!(%window, "next window armed");
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "the program's windows cannot be computed"),
    }
    Ok(())
}

/// A program no longer paused releases the requests it held: they go back
/// to eligibility (which reloads the programs to see the change).
async fn release_held(ports: ApplyPorts<'_>, program: &Program) -> Result<(), ApplyError> {
    if program.state == ProgramState::Paused {
        return Ok(());
    }
    let held = ports
        .waiting
        .waiting(&program.id, StatusKind::Held, None)
        .await
        .map_err(|e| ApplyError::NotReleased(e.to_string()))?;
    let messages: Vec<PipelineMessage> = held
        .into_iter()
        .map(|request_id| PipelineMessage { request_id })
        .collect();
    for chunk in messages.chunks(10) {
        ports
            .eligibility
            .publish(chunk)
            .await
            .map_err(|e: PublishError| ApplyError::NotReleased(e.to_string()))?;
    }
    if !messages.is_empty() {
        tracing::info!(released = messages.len(), "held requests released");
    }
    Ok(())
}
