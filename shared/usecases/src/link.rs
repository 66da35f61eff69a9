//! Link: a recipient linked to a member account at a program's partner,
//! which releases the recipient's requests waiting for enrollment. The
//! configuration's links stand under the stored ones
//! ([`LayeredEnrollments`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ports::{
    Enrollments, PipelineMessage, Publish, PublishError, StoreError, WaitingRequests,
};
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::{ProgramId, RecipientId};

/// What a link uses.
#[derive(Clone, Copy)]
pub struct LinkPorts<'a> {
    pub enrollments: &'a dyn Enrollments,
    pub waiting: &'a dyn WaitingRequests,
    pub eligibility: &'a dyn Publish,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link could not be read or stored: {0}")]
    Store(#[from] StoreError),
    #[error("the link is stored but its waiting requests could not be released: {0}")]
    NotReleased(PublishError),
}

impl LinkError {
    pub fn code(&self) -> &'static str {
        "unavailable"
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            LinkError::Store(e) => e.is_transient(),
            LinkError::NotReleased(_) => true,
        }
    }
}

/// What a link did.
#[derive(Debug, Clone)]
pub struct Linked {
    /// The link as stored (with the partner's validation, when the same
    /// link was made before and validated).
    pub link: MemberLink,
    /// Requests that were waiting for it and go back to eligibility.
    pub released: usize,
}

/// Links `link.recipient` to `link.member` in `link.program`. The same
/// link again keeps the partner's validation of it; either way the
/// recipient's waiting requests are released.
pub async fn link(ports: LinkPorts<'_>, mut link: MemberLink) -> Result<Linked, LinkError> {
    let current = ports
        .enrollments
        .member_link(&link.program, &link.recipient)
        .await?;
    match current {
        Some(same) if same.same_member(&link) => link = same,
        _ => ports.enrollments.put_link(&link).await?,
    }
    let waiting = ports
        .waiting
        .waiting(
            &link.program,
            StatusKind::AwaitingEnrollment,
            Some(&link.recipient),
        )
        .await?;
    let messages: Vec<PipelineMessage> = waiting
        .into_iter()
        .map(|request_id| PipelineMessage { request_id })
        .collect();
    if !messages.is_empty() {
        ports
            .eligibility
            .publish(&messages)
            .await
            .map_err(LinkError::NotReleased)?;
    }
    tracing::info!(member = %link.member, released = messages.len(), "linked");
    Ok(Linked {
        link,
        released: messages.len(),
    })
}

/// The configuration's links under a store's: a link stored since (a new
/// one, or a configured one with its validation) wins.
pub struct LayeredEnrollments {
    configured: HashMap<(ProgramId, RecipientId), MemberLink>,
    store: Arc<dyn Enrollments>,
}

impl LayeredEnrollments {
    pub fn new(
        configured: impl IntoIterator<Item = MemberLink>,
        store: Arc<dyn Enrollments>,
    ) -> Self {
        Self {
            configured: configured
                .into_iter()
                .map(|l| ((l.program.clone(), l.recipient.clone()), l))
                .collect(),
            store,
        }
    }
}

#[async_trait]
impl Enrollments for LayeredEnrollments {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        match self.store.member_link(program, recipient).await? {
            Some(link) => Ok(Some(link)),
            None => Ok(self
                .configured
                .get(&(program.clone(), recipient.clone()))
                .cloned()),
        }
    }

    async fn put_link(&self, link: &MemberLink) -> Result<(), StoreError> {
        self.store.put_link(link).await
    }

    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError> {
        self.store.record_validation(link).await
    }
}
