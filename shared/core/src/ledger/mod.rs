//! The double-entry points ledger. Accounts hold TigerBeetle-style balance
//! counters; entries are immutable; a pending entry (a reservation) is resolved
//! exactly once, by a post or a void whose id is derived from it. Per-recipient
//! caps are counters charged in the same transaction as the reservation.
//!
//! [`rules`] computes what applying an entry does to the counters (the one
//! definition both adapters use); [`invariants`] re-derives everything from the
//! entries and checks it, for tests and the simulator.

pub mod invariants;
pub mod rules;
pub mod shards;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{MemberNumber, PartnerId, Points, ProgramId, RecipientId, RequestId};

/// A ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccountId {
    /// Where a program's budget comes from: debited once per funding.
    Funding { program: ProgramId },
    /// A program's spendable budget: debits (pending + posted) never exceed credits.
    Budget { program: ProgramId },
    /// A member's account at a partner: what we have sent (pending) and
    /// credited (posted), derived from its entries (it keeps no counters).
    Member {
        partner: PartnerId,
        member: MemberNumber,
    },
}

impl AccountId {
    pub fn budget(program: &ProgramId) -> Self {
        AccountId::Budget {
            program: program.clone(),
        }
    }

    pub fn funding(program: &ProgramId) -> Self {
        AccountId::Funding {
            program: program.clone(),
        }
    }

    pub fn member(partner: &PartnerId, member: &MemberNumber) -> Self {
        AccountId::Member {
            partner: partner.clone(),
            member: member.clone(),
        }
    }

    /// Budgets may not be overdrawn; the other accounts are unconstrained.
    pub fn debits_must_not_exceed_credits(&self) -> bool {
        matches!(self, AccountId::Budget { .. })
    }

    /// Whether the ledger keeps counters for this account: only for a
    /// budget, whose rule every reservation must check as it is written.
    /// A member's or a funding account's balance is the sum of its entries
    /// ([`invariants::balances_from_entries`]); keeping counters for them
    /// would add an item to every transaction and check nothing.
    pub fn has_counters(&self) -> bool {
        self.debits_must_not_exceed_credits()
    }

    /// Whether the account tells points pending from points posted. A
    /// budget does not: a reservation spends from it at once (its
    /// `debits_posted`), a void gives the points back, and a post moves
    /// nothing on it, so the post of a credit writes its entry alone.
    /// Whether the partner has credited a reservation yet is on the
    /// member's side, which tells them apart ([`rules::signs`]).
    pub fn tells_pending_apart(&self) -> bool {
        !self.has_counters()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountId::Funding { program } => write!(f, "funding#{program}"),
            AccountId::Budget { program } => write!(f, "budget#{program}"),
            AccountId::Member { partner, member } => write!(f, "member#{partner}#{member}"),
        }
    }
}

/// An account's counters. Available budget is
/// `credits_posted - debits_posted - debits_pending`. A budget counts a
/// reservation as posted from the start
/// ([`AccountId::tells_pending_apart`]), so its pending counters stay zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balance {
    pub debits_pending: u64,
    pub debits_posted: u64,
    pub credits_pending: u64,
    pub credits_posted: u64,
}

impl Balance {
    /// What a debit-limited account can still spend.
    pub fn available(&self) -> u64 {
        self.credits_posted
            .saturating_sub(self.debits_posted)
            .saturating_sub(self.debits_pending)
    }
}

/// A per-recipient cap: who, in which program, in which period.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CapKey {
    pub program: ProgramId,
    pub recipient: RecipientId,
    /// The calendar period in the program's time zone: a month (`2026-11`)
    /// or a day (`2026-11-27`).
    pub period: String,
}

impl fmt::Display for CapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cap#{}#{}#{}", self.program, self.recipient, self.period)
    }
}

/// A cap charged by a reservation, with the limit in force when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapCharge {
    pub key: CapKey,
    pub limit: Points,
}

/// Points held against a cap: reserved or posted, not voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapUsage {
    pub used: u64,
}

/// An entry's id. Reservation and funding ids are chosen by the caller;
/// a resolution's id is derived from the pending entry, so a pending entry
/// can be resolved once and only once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryId(String);

impl EntryId {
    pub fn reservation(request: &RequestId) -> Self {
        Self(format!("{request}:reserve"))
    }

    /// The reservation of a request's `round` (0 for the first; an
    /// operator's retry starts another).
    pub fn reservation_in(request: &RequestId, round: u32) -> Self {
        match round {
            0 => Self::reservation(request),
            n => Self(format!("{request}:reserve#{}", n + 1)),
        }
    }

    pub fn resolution_of(pending: &EntryId) -> Self {
        Self(format!("{}:resolve", pending.0))
    }

    /// A reversal of a request's credit, under the reversal's id.
    pub fn reversal(request: &RequestId, reversal: &str) -> Self {
        Self(format!("{request}:reverse:{reversal}"))
    }

    pub fn funding(program: &ProgramId, label: &str) -> Self {
        Self(format!("fund:{program}:{label}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryKind {
    /// Moves points at once (funding a budget).
    Posted,
    /// Holds points (a reservation) until posted or voided.
    Pending,
    /// Completes a pending entry: the partner credited the points.
    PostPending { pending: EntryId },
    /// Releases a pending entry: the points were never credited.
    VoidPending { pending: EntryId },
}

/// An immutable ledger entry: `amount` moves from `debit` to `credit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: EntryId,
    #[serde(flatten)]
    pub kind: EntryKind,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Points,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestId>,
    /// The caps a reservation charges (a recipient's day and month), all
    /// in the same transaction as the points.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<CapCharge>,
    /// Where the points landed on the budget's shards: filled in by the
    /// ledger when the entry is stored ([`shards`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<shards::Draw>,
    pub at: DateTime<Utc>,
}

impl Entry {
    /// Whether `other` is this entry written again (a retry): everything but
    /// the time and the shards the ledger chose must match.
    pub fn same_effect(&self, other: &Entry) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.debit == other.debit
            && self.credit == other.credit
            && self.amount == other.amount
            && self.request == other.request
            && self.caps == other.caps
    }

    /// A reservation of `amount` from the program's budget towards a member.
    pub fn reserve(
        request: &RequestId,
        budget: AccountId,
        member: AccountId,
        amount: Points,
        caps: Vec<CapCharge>,
        at: DateTime<Utc>,
    ) -> Self {
        Entry {
            id: EntryId::reservation(request),
            kind: EntryKind::Pending,
            debit: budget,
            credit: member,
            amount,
            request: Some(request.clone()),
            caps,
            shards: Vec::new(),
            at,
        }
    }

    /// The entry that posts `pending`: the partner confirmed the credit.
    pub fn post(pending: &Entry, at: DateTime<Utc>) -> Self {
        Self::resolve(
            pending,
            EntryKind::PostPending {
                pending: pending.id.clone(),
            },
            at,
        )
    }

    /// The entry that voids `pending`: nothing was credited, the hold is released.
    pub fn void(pending: &Entry, at: DateTime<Utc>) -> Self {
        Self::resolve(
            pending,
            EntryKind::VoidPending {
                pending: pending.id.clone(),
            },
            at,
        )
    }

    fn resolve(pending: &Entry, kind: EntryKind, at: DateTime<Utc>) -> Self {
        Entry {
            id: EntryId::resolution_of(&pending.id),
            kind,
            debit: pending.debit.clone(),
            credit: pending.credit.clone(),
            amount: pending.amount,
            request: pending.request.clone(),
            caps: Vec::new(),
            shards: Vec::new(),
            at,
        }
    }

    /// Takes `amount` of a posted reservation back from the member to the
    /// budget it came from: a new entry, the reservation is not touched.
    pub fn reversal(
        reservation: &Entry,
        reversal: &str,
        amount: Points,
        at: DateTime<Utc>,
    ) -> Option<Self> {
        let request = reservation.request.as_ref()?;
        Some(Entry {
            id: EntryId::reversal(request, reversal),
            kind: EntryKind::Posted,
            debit: reservation.credit.clone(),
            credit: reservation.debit.clone(),
            amount,
            request: Some(request.clone()),
            caps: Vec::new(),
            shards: Vec::new(),
            at,
        })
    }

    /// Funds a program's budget with `amount`.
    pub fn fund(program: &ProgramId, label: &str, amount: Points, at: DateTime<Utc>) -> Self {
        Entry {
            id: EntryId::funding(program, label),
            kind: EntryKind::Posted,
            debit: AccountId::funding(program),
            credit: AccountId::budget(program),
            amount,
            request: None,
            caps: Vec::new(),
            shards: Vec::new(),
            at,
        }
    }

    pub fn pending_id(&self) -> Option<&EntryId> {
        match &self.kind {
            EntryKind::PostPending { pending } | EntryKind::VoidPending { pending } => {
                Some(pending)
            }
            _ => None,
        }
    }
}

/// Why the ledger refused a transaction. Nothing in the transaction was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{account} has {available} points available, {requested} requested")]
    InsufficientBudget {
        account: AccountId,
        available: u64,
        requested: u64,
    },
    #[error("{key} allows {limit} points, {used} already used, {requested} requested")]
    CapExceeded {
        key: CapKey,
        limit: u64,
        used: u64,
        requested: u64,
    },
    #[error("entry {id} already exists with different contents")]
    EntryConflict { id: EntryId },
    #[error("pending entry {pending} does not exist")]
    PendingNotFound { pending: EntryId },
    #[error("entry {entry} does not resolve {pending} the way it was resolved already")]
    AlreadyResolved { pending: EntryId, entry: EntryId },
    #[error("entry {id} is malformed: {problem}")]
    Malformed { id: EntryId, problem: String },
    #[error("{0} keeps no counters: its balance is the sum of its entries")]
    NotCounted(AccountId),
    #[error("a transaction holds 1 to 100 entries, not {0}")]
    TransactionSize(usize),
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    /// A stored entry or balance that cannot be read back: corruption, not
    /// retried.
    #[error("unreadable ledger item: {0}")]
    Unreadable(String),
}

impl LedgerError {
    /// Transient failures are retried by the caller; the rest are answers.
    pub fn is_transient(&self) -> bool {
        matches!(self, LedgerError::Unavailable(_))
    }
}

/// The result of a transaction that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The entries were written now.
    Now,
    /// Every entry was already there with the same effect: a retry.
    Already,
}
