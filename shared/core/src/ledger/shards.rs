//! A program's budget is spread over [`COUNT`] shards, so that no single
//! stored item takes every reservation of a busy program. The budget is
//! one account; its counters are the sums of its shards'. Each shard obeys
//! the budget's rule on its own (debits never exceed credits), so the sum
//! does too, and the total stays exact.
//!
//! A reservation draws from its home shard (a hash of its entry id). When
//! that shard is short, the adapter reads every shard and draws from
//! several: its home first, then the fullest. The shards drawn are stored
//! on the entry, and its void gives back exactly those (a post moves
//! none: [`AccountId::tells_pending_apart`]). Credits to the
//! budget need no check: a funding is spread evenly, a reversal goes to
//! its own home shard.

use serde::{Deserialize, Serialize};

use super::rules::Side;
use super::{AccountId, Balance, Entry, EntryId, EntryKind};

/// How many shards a budget has. At 2,500 reservations a second, each
/// writing its shard once (2 units in a transaction; a post does not move
/// a budget), a shard takes about 312 write units a second, under
/// DynamoDB's 1,000 per item, with room for voids and an uneven spread.
pub const COUNT: u16 = 16;

/// Points an entry moves on one shard of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    pub shard: u16,
    pub points: u64,
}

/// An entry's home shard: stable across processes and releases, so every
/// retry of a reservation looks at the same shard first.
pub fn home(id: &EntryId) -> u16 {
    bucket(id.as_str(), COUNT)
}

/// One of `count` buckets for `key`, the same in every process and release
/// (FNV-1a): how a key is spread over shards.
pub fn bucket(key: &str, count: u16) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(count.max(1))) as u16
}

/// `points` spread evenly over every shard, the remainder one point each
/// to the first shards. Shards that would get nothing are left out.
pub fn spread(points: u64) -> Vec<Draw> {
    let n = u64::from(COUNT);
    (0..COUNT)
        .map(|shard| Draw {
            shard,
            points: points / n + u64::from(u64::from(shard) < points % n),
        })
        .filter(|d| d.points > 0)
        .collect()
}

/// Draws `points` from the shards' `available` points: all from `home`
/// when it has them, else from `home` and then the fullest shards, as few
/// as possible. `None` when the shards together hold too few.
pub fn draw(home: u16, points: u64, available: &[u64]) -> Option<Vec<Draw>> {
    let at = |shard: u16| available.get(usize::from(shard)).copied().unwrap_or(0);
    if at(home) >= points {
        return Some(vec![Draw {
            shard: home,
            points,
        }]);
    }
    let mut order: Vec<u16> = (0..COUNT).filter(|s| *s != home).collect();
    // The fullest first; equal ones in shard order, so a draw is repeatable.
    order.sort_by_key(|s| (std::cmp::Reverse(at(*s)), *s));
    let mut left = points;
    let mut draws = Vec::new();
    for shard in std::iter::once(home).chain(order) {
        let take = at(shard).min(left);
        if take > 0 {
            draws.push(Draw {
                shard,
                points: take,
            });
            left -= take;
        }
        if left == 0 {
            return Some(draws);
        }
    }
    None
}

/// Where an entry's points land on a budget's shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The entry touches no budget.
    Outside,
    /// The shards are known before the transaction.
    Fixed(Vec<Draw>),
    /// A spend from the budget: drawn from the shards' available points,
    /// starting with `home`.
    Draw { home: u16 },
}

/// The budget an entry touches, if any: an entry moves points between two
/// accounts and at most one of them is a budget.
pub fn budget_of(entry: &Entry) -> Option<&AccountId> {
    budget_side(entry).map(|(budget, _)| budget)
}

/// The budget an entry touches and the side it is on.
pub fn budget_side(entry: &Entry) -> Option<(&AccountId, Side)> {
    [(&entry.debit, Side::Debit), (&entry.credit, Side::Credit)]
        .into_iter()
        .find(|(a, _)| a.debits_must_not_exceed_credits())
}

/// How `entry` is placed on its budget's shards. `pending` is the entry a
/// post or void resolves: it moves the shards the reservation drew. A
/// reservation stored before budgets had shards drew from shard 0, which is
/// where the single budget item of that time is kept.
pub fn placement(entry: &Entry, pending: Option<&Entry>) -> Placement {
    let Some(budget) = budget_of(entry) else {
        return Placement::Outside;
    };
    let points = entry.amount.get();
    match (&entry.kind, pending) {
        (EntryKind::PostPending { .. } | EntryKind::VoidPending { .. }, Some(p)) => {
            if p.shards.is_empty() {
                Placement::Fixed(vec![Draw { shard: 0, points }])
            } else {
                Placement::Fixed(p.shards.clone())
            }
        }
        _ if &entry.debit == budget => Placement::Draw {
            home: home(&entry.id),
        },
        _ if matches!(entry.debit, AccountId::Funding { .. }) => Placement::Fixed(spread(points)),
        _ => Placement::Fixed(vec![Draw {
            shard: home(&entry.id),
            points,
        }]),
    }
}

/// Sums the shards' counters into the budget's.
pub fn total(shards: &[Balance]) -> Balance {
    shards.iter().fold(Balance::default(), |sum, b| Balance {
        debits_pending: sum.debits_pending + b.debits_pending,
        debits_posted: sum.debits_posted + b.debits_posted,
        credits_pending: sum.credits_pending + b.credits_pending,
        credits_posted: sum.credits_posted + b.credits_posted,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::values::{IdempotencyKey, RequestId, SourceId};

    #[test]
    fn a_funding_is_spread_evenly_and_exactly() {
        let draws = spread(1_000);
        assert_eq!(draws.len(), 16);
        assert_eq!(draws.iter().map(|d| d.points).sum::<u64>(), 1_000);
        assert!(draws.iter().all(|d| d.points == 62 || d.points == 63));
        assert_eq!(spread(3).len(), 3);
        assert!(spread(0).is_empty());
    }

    #[test]
    fn a_draw_takes_the_home_shard_alone_when_it_can() {
        let available = [100; 16];
        assert_eq!(
            draw(5, 100, &available).unwrap(),
            vec![Draw {
                shard: 5,
                points: 100
            }]
        );
    }

    #[test]
    fn a_short_home_shard_is_topped_up_from_the_fullest() {
        let mut available = [10; 16];
        available[3] = 50;
        available[9] = 40;
        let draws = draw(0, 95, &available).unwrap();
        assert_eq!(
            draws,
            vec![
                Draw {
                    shard: 0,
                    points: 10
                },
                Draw {
                    shard: 3,
                    points: 50
                },
                Draw {
                    shard: 9,
                    points: 35
                },
            ]
        );
        assert_eq!(draw(0, 231, &available), None, "only 230 in all");
        assert_eq!(draw(0, 230, &available).unwrap().len(), 16);
    }

    #[test]
    fn home_shards_spread_requests_over_every_shard() {
        let mut seen = [0u32; 16];
        for n in 0..16_000 {
            let id = EntryId::reservation(&RequestId::derive(
                &SourceId::parse("crm").unwrap(),
                &IdempotencyKey::parse(&format!("deal-{n}")).unwrap(),
            ));
            seen[usize::from(home(&id))] += 1;
        }
        // Each shard gets its sixteenth, within 10%.
        assert!(seen.iter().all(|n| (900..=1_100).contains(n)), "{seen:?}");
    }
}
