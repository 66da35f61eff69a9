//! Links: a recipient linked to a member account at a program's partner.
//! A link is created for a recipient who has none (by a source the program
//! lists, or an operator), which releases the recipient's requests waiting
//! for enrollment; changing or removing a link in force is an admin's
//! proposal a second admin confirms. Every change is kept in the link's
//! history: a link a source created carries its creation on itself (the
//! source's function may not write the history), which is entered in the
//! history before the link is first changed ([`history`] shows it either
//! way). The configuration's links stand under the stored ones
//! ([`LayeredEnrollments`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::enrollment::{LinkChange, LinkEvent, MemberLink};
use pointsflow_core::ports::{
    Enrollments, LinkHistory, PipelineMessage, Publish, PublishError, StoreError, WaitingRequests,
};
use pointsflow_core::program::Program;
use pointsflow_core::request::StatusKind;
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};

/// The longest name accepted.
const MAX_NAME_CHARS: usize = 100;

/// What a link uses.
#[derive(Clone, Copy)]
pub struct LinkPorts<'a> {
    pub enrollments: &'a dyn Enrollments,
    /// Where link changes are kept (none for a source: its creation stays
    /// on the link).
    pub history: Option<&'a dyn LinkHistory>,
    pub waiting: &'a dyn WaitingRequests,
    pub eligibility: &'a dyn Publish,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link could not be read or stored: {0}")]
    Store(#[from] StoreError),
    #[error("the link is stored but its waiting requests could not be released: {0}")]
    NotReleased(PublishError),
    /// A create for a recipient linked already (to another member, or
    /// under other names): only an admin changes a link in force.
    #[error(
        "recipient {recipient} is linked already in program {program}; an operator with the admin role changes a link"
    )]
    AlreadyLinked {
        program: ProgramId,
        recipient: RecipientId,
    },
    #[error("recipient {recipient} has no link in program {program}")]
    NotLinked {
        program: ProgramId,
        recipient: RecipientId,
    },
    /// The link is no longer the one a proposal was made against.
    #[error(
        "the link of {recipient} in {program} changed since it was proposed (to {now}); propose again"
    )]
    Moved {
        program: ProgramId,
        recipient: RecipientId,
        now: String,
    },
    /// A change without the history to keep it in (a source's function).
    #[error("a link change needs the link history")]
    NoHistory,
}

impl LinkError {
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::Store(_) | LinkError::NotReleased(_) | LinkError::NoHistory => "unavailable",
            LinkError::AlreadyLinked { .. } => "already_linked",
            LinkError::NotLinked { .. } => "not_found",
            LinkError::Moved { .. } => "conflict",
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            LinkError::Store(e) => e.is_transient(),
            LinkError::NotReleased(_) => true,
            _ => false,
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
    /// Whether this call stored it (false: the same link was there).
    pub created: bool,
}

/// A field of a link that is not acceptable: a JSON pointer and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {problem}")]
pub struct InvalidLink {
    pub pointer: &'static str,
    pub problem: String,
}

fn name(pointer: &'static str, raw: &str) -> Result<String, InvalidLink> {
    let invalid = |problem: String| InvalidLink { pointer, problem };
    let trimmed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if trimmed.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "must be at most {MAX_NAME_CHARS} characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid("must not hold control characters".into()));
    }
    Ok(trimmed)
}

/// The link asked for, checked: the recipient id, the member number in the
/// program's format (trimmed, upper-cased), and the names.
pub fn link_from(
    program: &Program,
    recipient: &str,
    member_number: &str,
    first_name: &str,
    last_name: &str,
) -> Result<MemberLink, InvalidLink> {
    let recipient = RecipientId::parse(recipient).map_err(|e| InvalidLink {
        pointer: "/recipient",
        problem: e.problem,
    })?;
    let member = match &program.member_format {
        Some(format) => format.normalise(member_number),
        None => MemberNumber::parse(member_number.trim().to_ascii_uppercase().as_str())
            .map_err(|e| e.problem),
    }
    .map_err(|problem| InvalidLink {
        pointer: "/member_number",
        problem,
    })?;
    Ok(MemberLink::new(
        program.id.clone(),
        recipient,
        member,
        name("/first_name", first_name)?,
        name("/last_name", last_name)?,
    ))
}

/// Releases the recipient's requests waiting for enrollment.
async fn release(ports: LinkPorts<'_>, link: &MemberLink) -> Result<usize, LinkError> {
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
    Ok(messages.len())
}

/// Links a recipient who has no link in force (`by`: an operator's
/// principal, or `source:{id}`). The same link again is a repeat (it keeps
/// the partner's validation); another link for a linked recipient is
/// refused, changing nothing. Either way that succeeds, the recipient's
/// waiting requests are released.
pub async fn create(
    ports: LinkPorts<'_>,
    mut link: MemberLink,
    by: &str,
    at: DateTime<Utc>,
) -> Result<Linked, LinkError> {
    link.linked_by = Some(by.to_owned());
    link.linked_at = Some(at);
    let (link, created) = match ports.enrollments.create_link(&link).await? {
        Some(existing) if existing.same_member(&link) => (existing, false),
        Some(_) => {
            return Err(LinkError::AlreadyLinked {
                program: link.program,
                recipient: link.recipient,
            });
        }
        None => {
            if let Some(history) = ports.history {
                history.record(&created(&link)).await?;
            }
            (link, true)
        }
    };
    let released = release(ports, &link).await?;
    tracing::info!(member = %link.member, released, created, "linked");
    Ok(Linked {
        link,
        released,
        created,
    })
}

/// The creation of `link`, as its history keeps it (from the link itself).
fn created(link: &MemberLink) -> LinkEvent {
    LinkEvent {
        program: link.program.clone(),
        recipient: link.recipient.clone(),
        at: link.linked_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        by: link
            .linked_by
            .clone()
            .unwrap_or_else(|| "configuration".to_owned()),
        from: link.changed.as_ref().map(|c| c.from.clone()),
        to: Some(link.member.clone()),
        confirmed_by: None,
    }
}

/// Every change of the recipient's link, oldest first: the history, and the
/// creation of the link in force when the history does not have it (a
/// source's link, which it keeps on itself).
pub async fn history(
    enrollments: &dyn Enrollments,
    history: &dyn LinkHistory,
    program: &ProgramId,
    recipient: &RecipientId,
) -> Result<Vec<LinkEvent>, LinkError> {
    let mut events = history.history(program, recipient).await?;
    if let Some(link) = enrollments.member_link(program, recipient).await?
        && link.linked_at.is_some()
        && !events
            .iter()
            .any(|e| Some(e.at) == link.linked_at && e.to.as_ref() == Some(&link.member))
    {
        events.push(created(&link));
        events.sort_by_key(|e| e.at);
    }
    Ok(events)
}

/// Records the creation of the link in force before it is changed, so the
/// history has it (a repeat is harmless).
async fn keep_creation(history: &dyn LinkHistory, link: &MemberLink) -> Result<(), LinkError> {
    if link.linked_at.is_some() && link.changed.is_none() {
        history.record(&created(link)).await?;
    }
    Ok(())
}

/// The link in force for the recipient, if it is still to `previous`.
async fn current(
    ports: LinkPorts<'_>,
    program: &ProgramId,
    recipient: &RecipientId,
    previous: &MemberNumber,
) -> Result<MemberLink, LinkError> {
    let link = ports
        .enrollments
        .member_link(program, recipient)
        .await?
        .ok_or_else(|| LinkError::NotLinked {
            program: program.clone(),
            recipient: recipient.clone(),
        })?;
    if &link.member != previous {
        return Err(LinkError::Moved {
            program: program.clone(),
            recipient: recipient.clone(),
            now: link.member.to_string(),
        });
    }
    Ok(link)
}

/// The link was changed or removed between reading it and replacing it.
async fn moved(ports: LinkPorts<'_>, program: &ProgramId, recipient: &RecipientId) -> LinkError {
    let now = match ports.enrollments.member_link(program, recipient).await {
        Ok(Some(link)) => link.member.to_string(),
        Ok(None) => "no link".to_owned(),
        Err(e) => return e.into(),
    };
    LinkError::Moved {
        program: program.clone(),
        recipient: recipient.clone(),
        now,
    }
}

/// Carries out a confirmed change of a link in force from `previous` to
/// `link` (proposed by `by`, confirmed by `confirmed_by`). Confirmed again
/// after it took effect, it changes nothing.
pub async fn change(
    ports: LinkPorts<'_>,
    mut link: MemberLink,
    previous: &MemberNumber,
    by: &str,
    confirmed_by: &str,
    at: DateTime<Utc>,
) -> Result<Linked, LinkError> {
    if let Some(now) = ports
        .enrollments
        .member_link(&link.program, &link.recipient)
        .await?
        && now.same_member(&link)
    {
        let released = release(ports, &now).await?;
        return Ok(Linked {
            link: now,
            released,
            created: false,
        });
    }
    let before = current(ports, &link.program, &link.recipient, previous).await?;
    let history = ports.history.ok_or(LinkError::NoHistory)?;
    keep_creation(history, &before).await?;
    link.linked_by = Some(by.to_owned());
    link.linked_at = Some(at);
    link.validation = None;
    link.changed = Some(LinkChange {
        from: previous.clone(),
        by: by.to_owned(),
        at,
        confirmed_by: Some(confirmed_by.to_owned()),
    });
    if !ports.enrollments.replace_link(&link, previous).await? {
        return Err(moved(ports, &link.program, &link.recipient).await);
    }
    history
        .record(&LinkEvent {
            program: link.program.clone(),
            recipient: link.recipient.clone(),
            at,
            by: by.to_owned(),
            from: Some(previous.clone()),
            to: Some(link.member.clone()),
            confirmed_by: Some(confirmed_by.to_owned()),
        })
        .await?;
    let released = release(ports, &link).await?;
    tracing::info!(from = %previous, member = %link.member, "link changed");
    Ok(Linked {
        link,
        released,
        created: true,
    })
}

/// Carries out a confirmed removal of a link in force to `previous`: the
/// recipient's next requests wait for a new link. Confirmed again after it
/// took effect, it changes nothing.
pub async fn remove(
    ports: LinkPorts<'_>,
    program: &ProgramId,
    recipient: &RecipientId,
    previous: &MemberNumber,
    by: &str,
    confirmed_by: &str,
    at: DateTime<Utc>,
) -> Result<(), LinkError> {
    let mut link = match current(ports, program, recipient, previous).await {
        Ok(link) => link,
        Err(LinkError::NotLinked { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let history = ports.history.ok_or(LinkError::NoHistory)?;
    keep_creation(history, &link).await?;
    let event = LinkEvent {
        program: program.clone(),
        recipient: recipient.clone(),
        at,
        by: by.to_owned(),
        from: Some(previous.clone()),
        to: None,
        confirmed_by: Some(confirmed_by.to_owned()),
    };
    link.removed = Some(event.clone());
    if !ports.enrollments.replace_link(&link, previous).await? {
        return Err(moved(ports, program, recipient).await);
    }
    history.record(&event).await?;
    tracing::info!(from = %previous, "link removed");
    Ok(())
}

/// The configuration's links under a store's: a link stored since (a new
/// one, a configured one with its validation, or a removal) wins.
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

    fn configured(&self, program: &ProgramId, recipient: &RecipientId) -> Option<&MemberLink> {
        self.configured.get(&(program.clone(), recipient.clone()))
    }
}

#[async_trait]
impl Enrollments for LayeredEnrollments {
    /// The link in force: none when the stored one was removed.
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        match self.store.member_link(program, recipient).await? {
            Some(link) if link.is_active() => Ok(Some(link)),
            Some(_) => Ok(None),
            None => Ok(self.configured(program, recipient).cloned()),
        }
    }

    async fn replace_link(
        &self,
        link: &MemberLink,
        previous: &MemberNumber,
    ) -> Result<bool, StoreError> {
        self.store.replace_link(link, previous).await
    }

    async fn create_link(&self, link: &MemberLink) -> Result<Option<MemberLink>, StoreError> {
        // A configured link is in force until a stored one (or a removal)
        // replaces it.
        if let Some(configured) = self.configured(&link.program, &link.recipient) {
            match self
                .store
                .member_link(&link.program, &link.recipient)
                .await?
            {
                None => return Ok(Some(configured.clone())),
                Some(stored) if stored.is_active() => return Ok(Some(stored)),
                Some(_) => {}
            }
        }
        self.store.create_link(link).await
    }

    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError> {
        self.store.record_validation(link).await
    }
}
