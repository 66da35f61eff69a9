//! The simulated partner: an airline's points API on the simulated clock,
//! answering from the seed with everything real ones do: credits, 5xx
//! before doing anything, timeouts after crediting, 429, pending credits
//! that settle later (credited or failed), slow answers, refusals and
//! outages long enough to open the circuit. It keeps every credit it
//! applied, which the invariants compare with the ledger.
//!
//! Idempotent on our reference, or (from the seed) not: then a credit sent
//! again under the same reference is credited again, so dispatch must look
//! the reference up before it retries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use pointsflow_core::partner::{
    CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome, ReversalInstruction,
    ReversalOutcome,
};
use pointsflow_core::ports::{Clock, PartnerConnector, StatementError};
use pointsflow_core::reason::{Reason, ReasonCode};
use pointsflow_core::reconcile::{StatementLine, StatementStatus};
use pointsflow_core::values::{MemberNumber, PartnerReference};
use pointsflow_memory::ManualClock;

use crate::exec::yield_now;
use crate::faults::Faults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    Credited,
    /// Accepted; settles at `at`, credited when `ok`.
    Pending {
        at: DateTime<Utc>,
        ok: bool,
    },
    Failed,
}

#[derive(Debug, Clone)]
struct Credit {
    member: MemberNumber,
    points: u64,
    state: Settled,
    transaction: String,
    reversals: BTreeMap<String, u64>,
    created_at: DateTime<Utc>,
    /// When a look-up first finds it: a partner that commits late records
    /// an order some time after the call that placed it.
    committed_at: DateTime<Utc>,
}

impl Credit {
    fn reversed(&self) -> u64 {
        self.reversals.values().sum()
    }

    fn settle(&mut self, now: DateTime<Utc>) {
        if let Settled::Pending { at, ok } = self.state
            && now >= at
        {
            self.state = if ok {
                Settled::Credited
            } else {
                Settled::Failed
            };
        }
    }
}

#[derive(Default)]
struct Book {
    /// Every credit applied under each reference (more than one only at a
    /// partner that is not idempotent on references).
    credits: BTreeMap<String, Vec<Credit>>,
    next_transaction: u64,
    /// Credits and reversals applied: unchanged since a check, nothing to check.
    changes: u64,
}

pub struct SimPartner {
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    idempotent: bool,
    /// A partner that commits an order up to this long after the call
    /// (its `commit_within_ms`); `None` commits at once.
    commit_within: Option<Duration>,
    /// Times when the partner answers nothing but 503.
    outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    book: Mutex<Book>,
}

fn unknown(detail: &str) -> CreditOutcome {
    CreditOutcome::Unknown {
        detail: detail.to_owned(),
    }
}

impl SimPartner {
    pub fn new(
        faults: Arc<Faults>,
        clock: Arc<ManualClock>,
        idempotent: bool,
        commit_within: Option<Duration>,
        outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Self {
        Self {
            faults,
            clock,
            idempotent,
            commit_within,
            outages,
            book: Mutex::new(Book::default()),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        match self.book.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn down(&self) -> bool {
        let now = self.clock.now();
        self.faults.enabled()
            && self
                .outages
                .iter()
                .any(|(from, to)| *from <= now && now < *to)
    }

    async fn maybe_slow(&self) {
        if self
            .faults
            .fault("slow partner answer", self.faults.rates.partner_slow)
        {
            for _ in 0..(1 + self.faults.below(6)) {
                yield_now().await;
            }
        }
    }

    fn outcome(credit: &Credit) -> CreditOutcome {
        match credit.state {
            Settled::Credited => CreditOutcome::Credited {
                transaction: credit.transaction.clone(),
            },
            Settled::Pending { .. } => CreditOutcome::Pending {
                transaction: Some(credit.transaction.clone()),
            },
            Settled::Failed => CreditOutcome::Rejected(Reason::new(
                ReasonCode::parse("credit_failed"),
                "the pending credit failed at the partner",
            )),
        }
    }

    /// Net points credited per member (settled credits less reversals).
    pub fn credited_per_member(&self) -> BTreeMap<MemberNumber, u64> {
        let now = self.clock.now();
        let mut book = self.book();
        let mut out: BTreeMap<MemberNumber, u64> = BTreeMap::new();
        for credits in book.credits.values_mut() {
            for c in credits {
                c.settle(now);
                if c.state == Settled::Credited {
                    *out.entry(c.member.clone()).or_default() += c.points - c.reversed();
                }
            }
        }
        out
    }

    /// Net points per member the partner holds or may still credit
    /// (settled and pending credits, less reversals).
    pub fn held_per_member(&self) -> BTreeMap<MemberNumber, u64> {
        let mut out: BTreeMap<MemberNumber, u64> = BTreeMap::new();
        for credits in self.book().credits.values() {
            for c in credits {
                if c.state != Settled::Failed {
                    *out.entry(c.member.clone()).or_default() += c.points - c.reversed();
                }
            }
        }
        out
    }

    /// The references the partner credited (or holds pending), with how
    /// many credits each has.
    pub fn applied_references(&self) -> BTreeMap<String, usize> {
        self.book()
            .credits
            .iter()
            .map(|(r, cs)| {
                (
                    r.clone(),
                    cs.iter().filter(|c| c.state != Settled::Failed).count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// How many credits and reversals the partner has applied.
    pub fn changes(&self) -> u64 {
        self.book().changes
    }

    /// When the last pending credit settles.
    pub fn last_settlement(&self) -> Option<DateTime<Utc>> {
        self.book()
            .credits
            .values()
            .flatten()
            .filter_map(|c| match c.state {
                Settled::Pending { at, .. } => Some(at),
                _ => None,
            })
            .max()
    }
}

#[async_trait]
impl PartnerConnector for SimPartner {
    fn idempotent_on_reference(&self) -> bool {
        self.idempotent
    }

    async fn credit(&self, instruction: &CreditInstruction) -> CreditOutcome {
        self.faults.boundary("before partner credit").await;
        if self.down() {
            self.faults.count("partner outage");
            return unknown("503 Service Unavailable (outage)");
        }
        if self
            .faults
            .fault("partner 429", self.faults.rates.partner_429)
        {
            return CreditOutcome::NotAttempted {
                retry_after: Duration::from_secs(2),
                reason: "429 Too Many Requests".into(),
            };
        }
        if self
            .faults
            .fault("partner 5xx", self.faults.rates.partner_5xx)
        {
            return unknown("500 Internal Server Error");
        }
        self.maybe_slow().await;
        let now = self.clock.now();
        let reference = instruction.reference.as_str().to_owned();
        let outcome = {
            let mut book = self.book();
            let existing = book
                .credits
                .get_mut(&reference)
                .and_then(|cs| cs.first_mut());
            match existing {
                Some(first) if self.idempotent => {
                    first.settle(now);
                    Some(Self::outcome(first))
                }
                _ => None,
            }
        };
        let outcome = match outcome {
            Some(replayed) => replayed,
            None => {
                // A refusal is kept too: asked again, or looked up, the
                // partner answers the same.
                let refused = self
                    .faults
                    .fault("partner refused", self.faults.rates.partner_reject);
                let pending = !refused
                    && self
                        .faults
                        .fault("partner pending", self.faults.rates.partner_pending);
                let state = if refused {
                    Settled::Failed
                } else if pending {
                    Settled::Pending {
                        at: now + TimeDelta::seconds(1 + self.faults.below(300) as i64),
                        ok: self.faults.chance(0.8),
                    }
                } else {
                    Settled::Credited
                };
                let committed_at = match self.commit_within {
                    Some(within) => {
                        now + TimeDelta::seconds(self.faults.below(within.as_secs()) as i64)
                    }
                    None => now,
                };
                let mut book = self.book();
                book.next_transaction += 1;
                let credit = Credit {
                    member: instruction.member.clone(),
                    points: instruction.points.get(),
                    state,
                    transaction: format!("SIM{:08}", book.next_transaction),
                    reversals: BTreeMap::new(),
                    created_at: now,
                    committed_at,
                };
                let outcome = Self::outcome(&credit);
                self.faults.note(|| {
                    format!(
                        "partner applied {} points to {} under {reference} ({state:?})",
                        credit.points, credit.member
                    )
                });
                book.credits.entry(reference).or_default().push(credit);
                book.changes += 1;
                outcome
            }
        };
        if self.faults.fault(
            "partner timeout after crediting",
            self.faults.rates.partner_timeout_after,
        ) {
            return unknown("timeout after the partner applied the credit");
        }
        self.faults.boundary("after partner credit").await;
        outcome
    }

    async fn status(&self, reference: &PartnerReference, _: Option<Duration>) -> CreditOutcome {
        self.faults.boundary("before partner look-up").await;
        if self.down()
            || self
                .faults
                .fault("partner 5xx", self.faults.rates.partner_5xx)
        {
            return unknown("503 Service Unavailable");
        }
        let now = self.clock.now();
        let mut book = self.book();
        match book
            .credits
            .get_mut(reference.as_str())
            .and_then(|cs| cs.first_mut())
        {
            // Not committed yet: the partner does not know the order.
            Some(c) if now < c.committed_at => CreditOutcome::NotFound,
            Some(c) => {
                c.settle(now);
                Self::outcome(c)
            }
            None => CreditOutcome::NotFound,
        }
    }

    async fn validate_member(&self, _: &MemberCheck) -> MemberCheckOutcome {
        self.faults.boundary("before member validation").await;
        if self.down()
            || self
                .faults
                .fault("partner 5xx", self.faults.rates.partner_5xx)
        {
            return MemberCheckOutcome::Unknown {
                detail: "503 Service Unavailable".into(),
            };
        }
        MemberCheckOutcome::Valid
    }

    async fn reverse(&self, reversal: &ReversalInstruction) -> ReversalOutcome {
        self.faults.boundary("before partner reversal").await;
        if self.down()
            || self
                .faults
                .fault("partner 5xx", self.faults.rates.partner_5xx)
        {
            return ReversalOutcome::Unknown {
                detail: "503 Service Unavailable".into(),
            };
        }
        let now = self.clock.now();
        let mut changed = false;
        let outcome = {
            let mut book = self.book();
            let outcome = match book
                .credits
                .get_mut(reversal.reference.as_str())
                .and_then(|cs| cs.first_mut())
            {
                None => ReversalOutcome::Refused(Reason::new(
                    ReasonCode::parse("unknown_reference"),
                    "no credit has this reference",
                )),
                Some(c) => {
                    c.settle(now);
                    if let Some(id) = c.reversals.get(&reversal.reversal_id) {
                        let _ = id;
                        ReversalOutcome::Reversed {
                            reversal: reversal.reversal_id.clone(),
                        }
                    } else if c.state != Settled::Credited {
                        ReversalOutcome::Refused(Reason::new(
                            ReasonCode::parse("not_credited"),
                            "the credit is not credited",
                        ))
                    } else if c.reversed() + reversal.points.get() > c.points {
                        ReversalOutcome::Refused(Reason::new(
                            ReasonCode::parse("reversal_exceeds_credit"),
                            "more than the credit gave",
                        ))
                    } else {
                        c.reversals
                            .insert(reversal.reversal_id.clone(), reversal.points.get());
                        changed = true;
                        self.faults.note(|| {
                            format!(
                                "partner reversed {} points of {}",
                                reversal.points, reversal.reference
                            )
                        });
                        ReversalOutcome::Reversed {
                            reversal: reversal.reversal_id.clone(),
                        }
                    }
                }
            };
            if changed {
                book.changes += 1;
            }
            outcome
        };
        if matches!(outcome, ReversalOutcome::Reversed { .. })
            && self.faults.fault(
                "partner timeout after reversing",
                self.faults.rates.partner_timeout_after,
            )
        {
            return ReversalOutcome::Unknown {
                detail: "timeout after the partner reversed".into(),
            };
        }
        self.faults.boundary("after partner reversal").await;
        outcome
    }

    async fn statement(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StatementLine>, StatementError> {
        yield_now().await;
        let now = self.clock.now();
        let mut book = self.book();
        let mut lines = Vec::new();
        for (reference, credits) in &mut book.credits {
            for c in credits {
                c.settle(now);
                if c.created_at < from || c.created_at >= to {
                    continue;
                }
                let status = match c.state {
                    Settled::Credited => StatementStatus::Credited,
                    Settled::Pending { .. } => StatementStatus::Pending,
                    Settled::Failed => continue,
                };
                lines.push(StatementLine {
                    reference: reference.clone(),
                    transaction: c.transaction.clone(),
                    member: c.member.to_string(),
                    points: c.points,
                    reversed: c.reversed(),
                    status,
                    created_at: c.created_at,
                });
            }
        }
        Ok(lines)
    }
}
