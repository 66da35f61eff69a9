//! What applying one entry does to the counters it touches. Both adapters use
//! this one definition; the DynamoDB adapter states the same checks as
//! condition expressions.

use super::{AccountId, Balance, CapCharge, CapUsage, Entry, EntryId, EntryKind, LedgerError};

/// The counters an entry touches, before or after it is applied. The side
/// of an account without counters ([`AccountId::has_counters`]) is left as
/// it is.
///
/// [`AccountId::has_counters`]: super::AccountId::has_counters
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub debit: Balance,
    pub credit: Balance,
    /// The caps charged by a reservation, or released by the void of one,
    /// in the order of [`caps_touched`].
    pub caps: [Option<CapUsage>; MAX_CAPS],
}

/// The most caps one reservation charges: a day and a month.
pub const MAX_CAPS: usize = 2;

fn add(a: u64, b: u64, id: &EntryId) -> Result<u64, LedgerError> {
    a.checked_add(b).ok_or_else(|| LedgerError::Malformed {
        id: id.clone(),
        problem: "counter overflow".into(),
    })
}

/// Which side of an entry an account is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Debit,
    Credit,
}

/// What an entry of `kind` does, per point, to the pending and posted
/// counters of `account` on one side: the one definition of each kind of
/// entry. An account that does not tell pending from posted (a budget:
/// [`AccountId::tells_pending_apart`]) takes a reservation as posted at
/// once, gives it back when it is voided, and is not moved by its post.
pub fn signs(account: &AccountId, kind: &EntryKind) -> (i8, i8) {
    match (kind, account.tells_pending_apart()) {
        (EntryKind::Posted, _) => (0, 1),
        (EntryKind::Pending, true) => (1, 0),
        (EntryKind::Pending, false) => (0, 1),
        (EntryKind::PostPending { .. }, true) => (-1, 1),
        (EntryKind::PostPending { .. }, false) => (0, 0),
        (EntryKind::VoidPending { .. }, true) => (-1, 0),
        (EntryKind::VoidPending { .. }, false) => (0, -1),
    }
}

fn step(value: u64, sign: i8, n: u64) -> Option<u64> {
    match sign {
        1 => value.checked_add(n),
        -1 => value.checked_sub(n),
        _ => Some(value),
    }
}

/// Moves `n` points of an entry of `kind` on one `side` of `account`'s
/// `balance` ([`signs`]). `None` when a counter would overflow or go below
/// zero.
pub fn moved(
    account: &AccountId,
    kind: &EntryKind,
    side: Side,
    n: u64,
    balance: Balance,
) -> Option<Balance> {
    let mut b = balance;
    let (pending, posted) = match side {
        Side::Debit => (&mut b.debits_pending, &mut b.debits_posted),
        Side::Credit => (&mut b.credits_pending, &mut b.credits_posted),
    };
    let (on_pending, on_posted) = signs(account, kind);
    *pending = step(*pending, on_pending, n)?;
    *posted = step(*posted, on_posted, n)?;
    Some(b)
}

fn move_side(entry: &Entry, side: Side, before: Balance) -> Result<Balance, LedgerError> {
    let account = match side {
        Side::Debit => &entry.debit,
        Side::Credit => &entry.credit,
    };
    moved(account, &entry.kind, side, entry.amount.get(), before).ok_or_else(|| {
        LedgerError::Malformed {
            id: entry.id.clone(),
            problem: "a counter would overflow or go below zero".into(),
        }
    })
}

/// Checks that a resolution matches the pending entry it resolves.
pub fn check_resolution(entry: &Entry, pending: Option<&Entry>) -> Result<(), LedgerError> {
    let Some(pending_id) = entry.pending_id() else {
        return Ok(());
    };
    let pending = pending.ok_or_else(|| LedgerError::PendingNotFound {
        pending: pending_id.clone(),
    })?;
    let malformed = |problem: &str| LedgerError::Malformed {
        id: entry.id.clone(),
        problem: problem.to_owned(),
    };
    if pending.kind != EntryKind::Pending || &pending.id != pending_id {
        return Err(malformed("resolves an entry that is not pending"));
    }
    if entry.id != EntryId::resolution_of(pending_id) {
        return Err(malformed(
            "a resolution's id must be derived from its pending entry",
        ));
    }
    if entry.debit != pending.debit
        || entry.credit != pending.credit
        || entry.amount != pending.amount
    {
        return Err(malformed(
            "a resolution must match its pending entry's accounts and amount",
        ));
    }
    if !entry.caps.is_empty() {
        return Err(malformed("a resolution carries no cap charge"));
    }
    Ok(())
}

/// Checks an entry's own cap charges: at most [`MAX_CAPS`], each cap once.
pub fn check_cap_charges(entry: &Entry) -> Result<(), LedgerError> {
    let caps = &entry.caps;
    if caps.len() > MAX_CAPS
        || caps
            .iter()
            .enumerate()
            .any(|(i, c)| caps[..i].iter().any(|d| d.key == c.key))
    {
        return Err(LedgerError::Malformed {
            id: entry.id.clone(),
            problem: format!("charges more than {MAX_CAPS} caps, or one cap twice"),
        });
    }
    Ok(())
}

/// Applies `entry` to `before`, refusing what would overdraw a budget or
/// exceed a cap. `pending` is the entry a post or void resolves.
pub fn apply(
    entry: &Entry,
    pending: Option<&Entry>,
    before: Counters,
) -> Result<Counters, LedgerError> {
    check_resolution(entry, pending)?;
    if entry.debit == entry.credit {
        return Err(LedgerError::Malformed {
            id: entry.id.clone(),
            problem: "debit and credit accounts are the same".into(),
        });
    }
    let id = &entry.id;
    let n = entry.amount.get();
    let mut after = before;
    if entry.debit.has_counters() {
        after.debit = move_side(entry, Side::Debit, before.debit)?;
    }
    if entry.credit.has_counters() {
        after.credit = move_side(entry, Side::Credit, before.credit)?;
    }
    if entry.debit.debits_must_not_exceed_credits()
        && matches!(entry.kind, EntryKind::Pending | EntryKind::Posted)
    {
        let spent = add(after.debit.debits_pending, after.debit.debits_posted, id)?;
        if spent > after.debit.credits_posted {
            return Err(LedgerError::InsufficientBudget {
                account: entry.debit.clone(),
                available: before.debit.available(),
                requested: n,
            });
        }
    }
    check_cap_charges(entry)?;
    let caps = caps_touched(entry, pending);
    for ((charge, was), slot) in caps.iter().zip(before.caps).zip(after.caps.iter_mut()) {
        let usage = was.unwrap_or_default();
        *slot = Some(match entry.kind {
            EntryKind::Pending => {
                let used = add(usage.used, n, id)?;
                if used > charge.limit.get() {
                    return Err(LedgerError::CapExceeded {
                        key: charge.key.clone(),
                        limit: charge.limit.get(),
                        used: usage.used,
                        requested: n,
                    });
                }
                CapUsage { used }
            }
            _ => CapUsage {
                used: usage
                    .used
                    .checked_sub(n)
                    .ok_or_else(|| LedgerError::Malformed {
                        id: id.clone(),
                        problem: "a cap's usage would go below zero".into(),
                    })?,
            },
        });
    }
    Ok(after)
}

/// The caps an entry touches: a reservation's own charges, or its pending
/// entry's when voided (a post leaves them charged).
pub fn caps_touched<'a>(entry: &'a Entry, pending: Option<&'a Entry>) -> &'a [CapCharge] {
    match &entry.kind {
        EntryKind::Pending => &entry.caps,
        EntryKind::VoidPending { .. } => pending.map_or(&[], |p| p.caps.as_slice()),
        _ => &[],
    }
}
