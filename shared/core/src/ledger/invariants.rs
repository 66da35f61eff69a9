//! The ledger's invariants, re-derived from the entries alone and compared
//! with the stored counters. Tests and the simulator call these after every
//! step; none of them trusts the code that maintained the counters.

use std::collections::BTreeMap;

use super::rules::{self, Side};
use super::{AccountId, Balance, CapKey, CapUsage, Entry, EntryId, EntryKind, shards};
use crate::values::{MemberNumber, PartnerId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger invariant violated: {0}")]
pub struct Violation(pub String);

fn violation(s: String) -> Violation {
    Violation(s)
}

/// Recomputes every account's counters from the entries, in order.
pub fn balances_from_entries(entries: &[Entry]) -> Result<BTreeMap<AccountId, Balance>, Violation> {
    let mut out: BTreeMap<AccountId, Balance> = BTreeMap::new();
    for e in entries {
        for (account, side) in [(&e.debit, Side::Debit), (&e.credit, Side::Credit)] {
            let before = out.get(account).copied().unwrap_or_default();
            let after =
                rules::moved(account, &e.kind, side, e.amount.get(), before).ok_or_else(|| {
                    violation(format!("{}: a counter of {account} goes below zero", e.id))
                })?;
            out.insert(account.clone(), after);
        }
    }
    Ok(out)
}

/// Recomputes every budget shard's counters from the shards stored on the
/// entries, and checks each entry's shards: they add up to its amount, a
/// resolution moves its reservation's, and no shard is overdrawn.
pub fn check_shards(
    entries: &[Entry],
    stored: &BTreeMap<(AccountId, u16), Balance>,
) -> Result<(), Violation> {
    let by_id: BTreeMap<&EntryId, &Entry> = entries.iter().map(|e| (&e.id, e)).collect();
    let mut expected: BTreeMap<(AccountId, u16), Balance> = BTreeMap::new();
    for e in entries {
        let Some((budget, side)) = shards::budget_side(e) else {
            if !e.shards.is_empty() {
                return Err(violation(format!(
                    "{} touches no budget but has shards",
                    e.id
                )));
            }
            continue;
        };
        let sum: u64 = e.shards.iter().map(|d| d.points).sum();
        if sum != e.amount.get() || e.shards.iter().any(|d| d.shard >= shards::COUNT) {
            return Err(violation(format!(
                "{}: shards {:?} do not place its {} points",
                e.id, e.shards, e.amount
            )));
        }
        if let Some(pending) = e.pending_id().and_then(|p| by_id.get(p))
            && pending.shards != e.shards
        {
            return Err(violation(format!(
                "{} moves shards {:?}, its reservation drew {:?}",
                e.id, e.shards, pending.shards
            )));
        }
        for draw in &e.shards {
            let key = (budget.clone(), draw.shard);
            let before = expected.get(&key).copied().unwrap_or_default();
            let after =
                rules::moved(budget, &e.kind, side, draw.points, before).ok_or_else(|| {
                    violation(format!(
                        "{}: shard {} of {budget} goes below zero",
                        e.id, draw.shard
                    ))
                })?;
            expected.insert(key, after);
        }
    }
    let zero = Balance::default();
    for (key, want) in &expected {
        let got = stored.get(key).unwrap_or(&zero);
        if got != want {
            return Err(violation(format!(
                "shard {} of {}: counters {got:?} but entries sum to {want:?}",
                key.1, key.0
            )));
        }
    }
    for ((account, shard), got) in stored {
        if !expected.contains_key(&(account.clone(), *shard)) && got != &zero {
            return Err(violation(format!(
                "shard {shard} of {account}: counters {got:?} without entries"
            )));
        }
        if got.debits_pending + got.debits_posted > got.credits_posted {
            return Err(violation(format!(
                "shard {shard} of {account} is overdrawn: {got:?}"
            )));
        }
    }
    Ok(())
}

/// For every account with counters (a budget), the sum of its entries
/// equals its counters, and no budget is overdrawn; no other account keeps
/// counters, and none of its derived counters goes below zero.
pub fn check_balances(
    entries: &[Entry],
    accounts: &BTreeMap<AccountId, Balance>,
) -> Result<(), Violation> {
    let expected = balances_from_entries(entries)?;
    let zero = Balance::default();
    for (id, want) in expected.iter().filter(|(id, _)| id.has_counters()) {
        let got = accounts.get(id).unwrap_or(&zero);
        if got != want {
            return Err(violation(format!(
                "{id}: counters {got:?} but entries sum to {want:?}"
            )));
        }
    }
    for (id, got) in accounts {
        if !id.has_counters() {
            return Err(violation(format!(
                "{id} keeps counters {got:?}; only a budget does"
            )));
        }
        if !expected.contains_key(id) && got != &zero {
            return Err(violation(format!("{id}: counters {got:?} without entries")));
        }
        if id.debits_must_not_exceed_credits()
            && got.debits_pending + got.debits_posted > got.credits_posted
        {
            return Err(violation(format!("{id} is overdrawn: {got:?}")));
        }
    }
    Ok(())
}

/// Every resolution resolves an existing pending entry, with its amount and
/// accounts, and no pending entry is resolved twice.
pub fn check_resolutions(entries: &[Entry]) -> Result<(), Violation> {
    let by_id: BTreeMap<&EntryId, &Entry> = entries.iter().map(|e| (&e.id, e)).collect();
    if by_id.len() != entries.len() {
        return Err(violation("two entries share an id".into()));
    }
    let mut resolved: BTreeMap<&EntryId, &EntryId> = BTreeMap::new();
    for e in entries {
        let Some(pending_id) = e.pending_id() else {
            continue;
        };
        let pending = by_id
            .get(pending_id)
            .ok_or_else(|| violation(format!("{} resolves missing {pending_id}", e.id)))?;
        super::rules::check_resolution(e, Some(pending))
            .map_err(|err| violation(err.to_string()))?;
        if let Some(first) = resolved.insert(pending_id, &e.id) {
            return Err(violation(format!(
                "{pending_id} resolved twice: {first} and {}",
                e.id
            )));
        }
    }
    Ok(())
}

/// Every cap's usage equals its live (not voided) reservations, and never
/// exceeds the limit it was charged under.
pub fn check_caps(entries: &[Entry], caps: &BTreeMap<CapKey, CapUsage>) -> Result<(), Violation> {
    let by_id: BTreeMap<&EntryId, &Entry> = entries.iter().map(|e| (&e.id, e)).collect();
    let mut used: BTreeMap<&CapKey, u64> = BTreeMap::new();
    let mut limit: BTreeMap<&CapKey, u64> = BTreeMap::new();
    for e in entries {
        if e.kind == EntryKind::Pending {
            for charge in &e.caps {
                *used.entry(&charge.key).or_default() += e.amount.get();
                let l = limit.entry(&charge.key).or_default();
                *l = (*l).max(charge.limit.get());
            }
        }
        if let EntryKind::VoidPending { pending } = &e.kind
            && let Some(p) = by_id.get(pending)
        {
            for charge in &p.caps {
                let u = used.entry(&charge.key).or_default();
                *u = u.wrapping_sub(e.amount.get());
            }
        }
    }
    for (key, want) in &used {
        let got = caps.get(*key).map(|c| c.used).unwrap_or(0);
        if got != *want {
            return Err(violation(format!(
                "{key}: usage {got} but live reservations sum to {want}"
            )));
        }
        let max = limit.get(key).copied().unwrap_or(0);
        if *want > max {
            return Err(violation(format!(
                "{key}: {want} used over a limit of {max}"
            )));
        }
    }
    Ok(())
}

/// The partner's credits per member, net of reversals, equal the ledger's
/// posted credits net of its reversal entries.
pub fn check_partner_matches(
    entries: &[Entry],
    partner: &PartnerId,
    partner_credits: &BTreeMap<MemberNumber, u64>,
) -> Result<(), Violation> {
    let accounts = balances_from_entries(entries)?;
    let ledger: BTreeMap<&MemberNumber, u64> = accounts
        .iter()
        .filter_map(|(id, b)| match id {
            AccountId::Member { partner: p, member }
                if p == partner && b.credits_posted > b.debits_posted =>
            {
                Some((member, b.credits_posted - b.debits_posted))
            }
            _ => None,
        })
        .collect();
    let at_partner: BTreeMap<&MemberNumber, u64> = partner_credits
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(m, n)| (m, *n))
        .collect();
    if ledger != at_partner {
        return Err(violation(format!(
            "partner {partner} credited {at_partner:?} but the ledger posted {ledger:?}"
        )));
    }
    Ok(())
}

/// All of the above that need only the ledger's own state.
pub fn check_all(
    entries: &[Entry],
    accounts: &BTreeMap<AccountId, Balance>,
    shard_counters: &BTreeMap<(AccountId, u16), Balance>,
    caps: &BTreeMap<CapKey, CapUsage>,
) -> Result<(), Violation> {
    check_resolutions(entries)?;
    check_balances(entries, accounts)?;
    check_shards(entries, shard_counters)?;
    check_caps(entries, caps)
}
