//! Changes others rely on, under a second pair of eyes: a program revision,
//! changing or removing a link in force, a reversal above the program's
//! `reversal_limit`. One admin proposes, another confirms by id; then the
//! change is carried out as the proposer described it, with both names on
//! it. Linking a recipient who has none, and reversals within the limit,
//! are an operator's alone.

use pointsflow_core::access::{OperatorIdentity, Principal, Role, Verified};
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ports::{StoreError, StoredProgram};
use pointsflow_core::proposal::{Change, Proposal, ProposalError, ProposalId};
use pointsflow_core::values::{Points, ProgramId, RecipientId, RequestId};
use pointsflow_usecases::link::{self, LinkPorts};
use pointsflow_usecases::programs::ApplyPorts;
use serde_json::{Value, json};

use crate::views::{LinkView, ProgramView};
use crate::{OpError, Operations, state_name};

/// The most proposals one `proposals` lists.
const MAX_PROPOSALS: usize = 1_000;

fn reason_needed(reason: Option<&str>, what: &str) -> Result<String, OpError> {
    match reason.map(str::trim) {
        Some(r) if !r.is_empty() && r.chars().count() <= 500 => Ok(r.to_owned()),
        _ => Err(OpError::new(
            "invalid_command",
            format!("reason: {what} needs a reason of 1 to 500 characters"),
        )),
    }
}

impl Operations {
    fn link_ports(&self) -> LinkPorts<'_> {
        LinkPorts {
            enrollments: self.ports.enrollments.as_ref(),
            history: Some(self.ports.link_history.as_ref()),
            waiting: self.ports.waiting.as_ref(),
            eligibility: self.ports.eligibility.as_ref(),
        }
    }

    /// Stores a proposal of `change` by `operator`, who needs its role.
    pub(crate) async fn propose(
        &self,
        operator: &OperatorIdentity,
        change: Change,
        reason: &str,
    ) -> Result<(Value, String), OpError> {
        operator.require(change.role(), "propose this change")?;
        if operator.verified == Verified::Declared {
            // A name anyone may write proposes nothing that a second
            // operator's confirmation would make look reviewed.
            return Err(OpError::new(
                "four_eyes",
                "a declared identity cannot propose a change for a second operator: propose it over the admin API",
            ));
        }
        let proposal = Proposal::new(
            ProposalId::from_bits(rand::random()),
            change,
            reason,
            &operator.principal,
            self.ports.clock.now(),
        );
        self.ports.proposals.create(&proposal).await?;
        let summary = format!("proposed {}: {}", proposal.id, proposal.change.describe());
        Ok((
            json!({
                "proposal": proposal,
                "next": format!("another operator with the {} role confirms it: confirm {}", proposal.change.role(), proposal.id),
            }),
            summary,
        ))
    }

    /// `link`: a recipient without a link is linked now; a recipient linked
    /// to another member (or under other names) gets a proposal.
    pub(crate) async fn link(
        &self,
        operator: &OperatorIdentity,
        link: MemberLink,
        reason: Option<&str>,
    ) -> Result<(Value, String), OpError> {
        let current = self
            .ports
            .enrollments
            .member_link(&link.program, &link.recipient)
            .await?;
        match current {
            Some(current) if !current.same_member(&link) => {
                operator.require(Role::Admin, "change a link in force")?;
                let reason = reason_needed(reason, "changing a link")?;
                self.propose(
                    operator,
                    Change::LinkChange {
                        link,
                        previous: current.member,
                    },
                    &reason,
                )
                .await
            }
            _ => {
                operator.require(Role::Operator, "link a recipient")?;
                let linked = link::create(
                    self.link_ports(),
                    link,
                    operator.principal.as_str(),
                    self.ports.clock.now(),
                )
                .await?;
                let summary = format!(
                    "{} in {} {} {}; {} released",
                    linked.link.recipient,
                    linked.link.program,
                    if linked.created {
                        "linked to"
                    } else {
                        "already linked to"
                    },
                    linked.link.member,
                    linked.released
                );
                Ok((
                    json!({ "link": LinkView::of(&linked.link), "created": linked.created, "released": linked.released }),
                    summary,
                ))
            }
        }
    }

    /// `unlink`: proposes removing a link in force.
    pub(crate) async fn unlink(
        &self,
        operator: &OperatorIdentity,
        program: &ProgramId,
        recipient: &RecipientId,
        reason: &str,
    ) -> Result<(Value, String), OpError> {
        operator.require(Role::Admin, "remove a link")?;
        let reason = reason_needed(Some(reason), "removing a link")?;
        let current = self.link_in_force(program, recipient).await?;
        self.propose(
            operator,
            Change::LinkRemoval {
                program: program.clone(),
                recipient: recipient.clone(),
                previous: current.member,
            },
            &reason,
        )
        .await
    }

    /// `reverse`: within the program's `reversal_limit` (counting what was
    /// reversed of the request before) an operator reverses now; above it
    /// an admin proposes it. A reversal recorded on the request already is
    /// a repeat, finished whatever its size.
    pub(crate) async fn reverse_command(
        &self,
        operator: &OperatorIdentity,
        request_id: &RequestId,
        reversal_id: &str,
        points: Option<Points>,
        reason: &str,
    ) -> Result<(Value, String), OpError> {
        let request = self.load(request_id).await?;
        let repeat = request.reversals.iter().any(|r| r.id == reversal_id);
        let left = request
            .credited_points()
            .saturating_sub(request.reversed_points());
        let amount = points.map_or(left, Points::get);
        let total = Points::new(request.reversed_points().saturating_add(amount)).ok();
        let limit = self
            .ports
            .programs
            .program(&request.program)
            .and_then(|program| program.reversal_limit);
        let within = limit
            .zip(total)
            .is_some_and(|(limit, total)| total <= limit);
        if !repeat && !within {
            operator.require(
                Role::Admin,
                "reverse more than the program's reversal_limit",
            )?;
            let points = match Points::new(amount) {
                Ok(p) => Some(p),
                Err(_) => points,
            };
            return self
                .propose(
                    operator,
                    Change::Reversal {
                        request_id: request_id.clone(),
                        reversal_id: reversal_id.to_owned(),
                        points,
                        reason: reason.to_owned(),
                    },
                    reason,
                )
                .await;
        }
        if !repeat {
            operator.require(Role::Operator, "reverse points")?;
        }
        // The limit again, where the reversal is recorded: reversals sent
        // at once cannot pass it together.
        self.reversed(
            request_id,
            reversal_id,
            points,
            reason,
            operator.principal.as_str(),
            limit,
        )
        .await
    }

    async fn reversed(
        &self,
        request_id: &RequestId,
        reversal_id: &str,
        points: Option<Points>,
        reason: &str,
        by: &str,
        limit: Option<Points>,
    ) -> Result<(Value, String), OpError> {
        let reversal = self
            .reverse(request_id, reversal_id, points, reason, by, limit)
            .await?;
        let summary = format!(
            "reversal {} of {} points: {}",
            reversal.id,
            reversal.points,
            state_name(&reversal.state)
        );
        Ok((
            json!({ "request_id": request_id, "reversal": reversal }),
            summary,
        ))
    }

    pub(crate) async fn proposal(&self, id: &ProposalId) -> Result<Proposal, OpError> {
        self.ports
            .proposals
            .proposal(id)
            .await?
            .ok_or_else(|| OpError::new("not_found", format!("no proposal {id}")))
    }

    pub(crate) async fn open_proposals(
        &self,
        limit: Option<usize>,
    ) -> Result<(Value, String), OpError> {
        let limit = limit.unwrap_or(100);
        if limit == 0 || limit > MAX_PROPOSALS {
            return Err(OpError::new(
                "invalid_command",
                format!("limit: must be 1 to {MAX_PROPOSALS}"),
            ));
        }
        let open = self.ports.proposals.open(limit).await?;
        let summary = format!("{} proposals open", open.len());
        Ok((json!({ "proposals": open }), summary))
    }

    /// `confirm`: a second operator, with the role the change needs and an
    /// identity the stack established (not declared), carries it out.
    pub(crate) async fn confirm(
        &self,
        operator: &OperatorIdentity,
        id: &ProposalId,
    ) -> Result<(Value, String), OpError> {
        let mut proposal = self.proposal(id).await?;
        operator.require(proposal.change.role(), "confirm this proposal")?;
        if operator.verified == Verified::Declared {
            return Err(OpError::new(
                "four_eyes",
                "a declared identity cannot be the second pair of eyes: confirm over the admin API",
            ));
        }
        let by = &operator.principal;
        // Claimed first, so a withdrawal cannot race the change; a confirm
        // by the same operator again is a repeat that finishes a change cut
        // short (each change is a repeat when made again).
        let first = proposal.check_confirmer(by)?;
        if first {
            proposal.confirmed(by, self.ports.clock.now());
            match self.ports.proposals.save(&proposal).await {
                Ok(version) => proposal.version = version,
                Err(StoreError::Conflict { .. }) => {
                    // Confirmed or withdrawn meanwhile: what is stored decides.
                    proposal = self.proposal(id).await?;
                    if proposal.check_confirmer(by)? {
                        return Err(OpError::unavailable(
                            "the proposal",
                            format!("{id} changed while it was being confirmed"),
                        ));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let result = match self.carry_out(&proposal, by).await {
            Ok(result) => result,
            Err(e) if first && !e.retryable => {
                // Nothing took effect (the proposal was open until this
                // claim): it is open again, to be withdrawn or confirmed
                // once its cause is fixed.
                proposal.reopen();
                if let Err(reopen) = self.ports.proposals.save(&proposal).await {
                    tracing::warn!(proposal = %id, error = %reopen, "could not reopen the proposal");
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if !first {
            let summary = format!("{id} was confirmed by {by} already");
            return Ok((
                json!({ "proposal": proposal, "changed": false, "result": result }),
                summary,
            ));
        }
        let summary = format!(
            "{id} confirmed: {} (proposed by {})",
            proposal.change.describe(),
            proposal.proposed_by
        );
        Ok((
            json!({ "proposal": proposal, "changed": true, "result": result }),
            summary,
        ))
    }

    /// Makes the change `proposal` describes, proposed by its author and
    /// confirmed by `by`. Each kind is a repeat when made again.
    async fn carry_out(&self, proposal: &Proposal, by: &Principal) -> Result<Value, OpError> {
        let proposer = &proposal.proposed_by;
        let now = self.ports.clock.now();
        match &proposal.change {
            Change::ProgramRevision { program, revision } => {
                let stored = StoredProgram {
                    program: program.clone(),
                    revision: *revision,
                    applied_by: proposer.clone(),
                    confirmed_by: Some(by.clone()),
                    applied_at: now,
                };
                let ports = ApplyPorts {
                    store: self.ports.program_store.as_ref(),
                    waiting: self.ports.waiting.as_ref(),
                    eligibility: self.ports.eligibility.as_ref(),
                    schedules: self.ports.schedules.as_ref(),
                    clock: self.ports.clock.as_ref(),
                };
                let applied = pointsflow_usecases::programs::apply(ports, stored).await?;
                Ok(json!(ProgramView::applied(&applied)))
            }
            Change::LinkChange { link, previous } => {
                let linked = link::change(
                    self.link_ports(),
                    link.clone(),
                    previous,
                    proposer.as_str(),
                    by.as_str(),
                    now,
                )
                .await?;
                Ok(json!({ "link": LinkView::of(&linked.link), "released": linked.released }))
            }
            Change::LinkRemoval {
                program,
                recipient,
                previous,
            } => {
                link::remove(
                    self.link_ports(),
                    program,
                    recipient,
                    previous,
                    proposer.as_str(),
                    by.as_str(),
                    now,
                )
                .await?;
                Ok(json!({ "program": program, "recipient": recipient, "removed": previous }))
            }
            Change::Reversal {
                request_id,
                reversal_id,
                points,
                reason,
            } => {
                let by = format!("{proposer}, confirmed by {by}");
                let (value, _) = self
                    .reversed(request_id, reversal_id, *points, reason, &by, None)
                    .await?;
                Ok(value)
            }
        }
    }

    /// `withdraw`: an open proposal is closed without effect.
    pub(crate) async fn withdraw(
        &self,
        operator: &OperatorIdentity,
        id: &ProposalId,
        reason: &str,
    ) -> Result<(Value, String), OpError> {
        let mut proposal = self.proposal(id).await?;
        operator.require(proposal.change.role(), "withdraw this proposal")?;
        let reason = reason_needed(Some(reason), "withdrawing a proposal")?;
        proposal
            .withdraw(&operator.principal, &reason, self.ports.clock.now())
            .map_err(|e: ProposalError| OpError::from(e))?;
        proposal.version = self.ports.proposals.save(&proposal).await?;
        let summary = format!("{id} withdrawn: {reason}");
        Ok((json!({ "proposal": proposal }), summary))
    }
}
