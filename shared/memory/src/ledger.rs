//! The ledger: entries, account counters and cap counters behind one lock, so
//! a transaction is all-or-nothing exactly as a DynamoDB `TransactWriteItems` is.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pointsflow_core::ledger::rules::{self, Counters};
use pointsflow_core::ledger::shards::{self, Draw, Placement};
use pointsflow_core::ledger::{
    AccountId, Applied, Balance, CapKey, CapUsage, Entry, EntryId, LedgerError, invariants,
};
use pointsflow_core::ports::{LedgerRead, LedgerWrite};
use pointsflow_core::values::RequestId;

/// An entry in the id index: ordered by its id alone, so the index needs no
/// second copy of every id.
#[derive(Debug, Clone)]
struct ById(Arc<Entry>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl Borrow<EntryId> for ById {
    fn borrow(&self) -> &EntryId {
        &self.0.id
    }
}

// Entries are shared between the log and the indexes rather than copied.
// The indexes are B-trees: they grow a node at a time, where a hash map
// would stop every writer to rehash everything at once.
#[derive(Debug, Default)]
struct Book {
    entries: Vec<Arc<Entry>>,
    index: BTreeSet<ById>,
    by_request: BTreeMap<RequestId, Vec<Arc<Entry>>>,
    /// Each budget's counters, the sums of its shards' (no other account
    /// keeps counters: [`AccountId::has_counters`]).
    accounts: HashMap<AccountId, Balance>,
    shards: HashMap<(AccountId, u16), Balance>,
    caps: HashMap<CapKey, CapUsage>,
}

/// Everything in the ledger at one instant, for invariant checks and reports.
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    pub entries: Vec<Entry>,
    /// The counters of the accounts that keep them: the budgets.
    pub accounts: BTreeMap<AccountId, Balance>,
    /// Each budget's counters, per shard.
    pub shards: BTreeMap<(AccountId, u16), Balance>,
    pub caps: BTreeMap<CapKey, CapUsage>,
}

impl LedgerSnapshot {
    /// Checks every ledger invariant of DESIGN.md against this snapshot.
    pub fn check(&self) -> Result<(), invariants::Violation> {
        invariants::check_all(&self.entries, &self.accounts, &self.shards, &self.caps)
    }
}

#[derive(Debug, Default)]
pub struct MemoryLedger {
    book: Mutex<Book>,
}

fn poisoned() -> LedgerError {
    LedgerError::Unavailable("ledger lock poisoned".into())
}

impl Book {
    fn get(&self, id: &EntryId) -> Option<&Entry> {
        self.index.get(id).map(|e| &*e.0)
    }

    fn apply(&mut self, tx: &[Entry]) -> Result<Applied, LedgerError> {
        // Entries already present: identical ones make this a retry; anything
        // else under an existing id is refused, as a failed condition would be.
        let mut existing = 0;
        for entry in tx {
            if let Some(stored) = self.get(&entry.id) {
                if !stored.same_effect(entry) {
                    return Err(match entry.pending_id() {
                        Some(pending) => LedgerError::AlreadyResolved {
                            pending: pending.clone(),
                            entry: entry.id.clone(),
                        },
                        None => LedgerError::EntryConflict {
                            id: entry.id.clone(),
                        },
                    });
                }
                existing += 1;
            }
        }
        if existing == tx.len() {
            return Ok(Applied::Already);
        }
        if existing > 0 {
            let first = tx.iter().find(|e| self.index.contains(&e.id));
            return Err(LedgerError::EntryConflict {
                id: first
                    .map(|e| e.id.clone())
                    .unwrap_or_else(|| tx[0].id.clone()),
            });
        }

        // Work on copies of the touched counters; commit only if all succeed.
        let mut accounts: HashMap<AccountId, Balance> = HashMap::new();
        let mut shard_counters: HashMap<(AccountId, u16), Balance> = HashMap::new();
        let mut caps: HashMap<CapKey, CapUsage> = HashMap::new();
        let mut placed: Vec<Entry> = Vec::with_capacity(tx.len());
        for (i, entry) in tx.iter().enumerate() {
            if tx[..i].iter().any(|e| e.id == entry.id) {
                return Err(LedgerError::Malformed {
                    id: entry.id.clone(),
                    problem: "appears twice in one transaction".into(),
                });
            }
            let pending = match entry.pending_id() {
                Some(p) => self.get(p).or_else(|| placed.iter().find(|e| &e.id == p)),
                None => None,
            };
            let touched = rules::caps_touched(entry, pending);
            let counter = |map: &HashMap<AccountId, Balance>, id: &AccountId| {
                map.get(id)
                    .or_else(|| self.accounts.get(id))
                    .copied()
                    .unwrap_or_default()
            };
            let before = Counters {
                debit: counter(&accounts, &entry.debit),
                credit: counter(&accounts, &entry.credit),
                caps: std::array::from_fn(|i| {
                    touched.get(i).map(|c| {
                        caps.get(&c.key)
                            .or_else(|| self.caps.get(&c.key))
                            .copied()
                            .unwrap_or_default()
                    })
                }),
            };
            let after = rules::apply(entry, pending, before)?;
            let draws = self.place(entry, pending, &shard_counters)?;
            for (account, counters) in [(&entry.debit, after.debit), (&entry.credit, after.credit)]
            {
                if account.has_counters() {
                    accounts.insert(account.clone(), counters);
                }
            }
            for (charge, usage) in touched.iter().zip(after.caps) {
                if let Some(usage) = usage {
                    caps.insert(charge.key.clone(), usage);
                }
            }
            if let Some((budget, side)) = shards::budget_side(entry) {
                for draw in &draws {
                    let key = (budget.clone(), draw.shard);
                    let was = self.shard(&shard_counters, &key);
                    let now = rules::moved(budget, &entry.kind, side, draw.points, was)
                        .ok_or_else(|| LedgerError::Malformed {
                            id: entry.id.clone(),
                            problem: format!("shard {} would go below zero", draw.shard),
                        })?;
                    shard_counters.insert(key, now);
                }
            }
            placed.push(Entry {
                shards: draws,
                ..entry.clone()
            });
        }

        self.accounts.extend(accounts);
        self.shards.extend(shard_counters);
        self.caps.extend(caps);
        for entry in placed {
            let entry = Arc::new(entry);
            self.index.insert(ById(entry.clone()));
            if let Some(request) = &entry.request {
                self.by_request
                    .entry(request.clone())
                    .or_default()
                    .push(entry.clone());
            }
            self.entries.push(entry);
        }
        Ok(Applied::Now)
    }

    /// A shard's counters: staged in this transaction, else stored.
    fn shard(
        &self,
        staged: &HashMap<(AccountId, u16), Balance>,
        key: &(AccountId, u16),
    ) -> Balance {
        staged
            .get(key)
            .or_else(|| self.shards.get(key))
            .copied()
            .unwrap_or_default()
    }

    /// Where `entry` lands on its budget's shards ([`shards::placement`]).
    fn place(
        &self,
        entry: &Entry,
        pending: Option<&Entry>,
        staged: &HashMap<(AccountId, u16), Balance>,
    ) -> Result<Vec<Draw>, LedgerError> {
        match shards::placement(entry, pending) {
            Placement::Outside => Ok(Vec::new()),
            Placement::Fixed(draws) => Ok(draws),
            Placement::Draw { home } => {
                // Nearly always the home shard alone has the points.
                let points = entry.amount.get();
                let key = (entry.debit.clone(), home);
                if self.shard(staged, &key).available() >= points {
                    return Ok(vec![Draw {
                        shard: home,
                        points,
                    }]);
                }
                let available: Vec<u64> = (0..shards::COUNT)
                    .map(|k| self.shard(staged, &(entry.debit.clone(), k)).available())
                    .collect();
                shards::draw(home, entry.amount.get(), &available).ok_or_else(|| {
                    LedgerError::InsufficientBudget {
                        account: entry.debit.clone(),
                        available: available.iter().sum(),
                        requested: entry.amount.get(),
                    }
                })
            }
        }
    }
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        let book = self.book.lock().map_err(|_| poisoned())?;
        Ok(LedgerSnapshot {
            entries: book.entries.iter().map(|e| (**e).clone()).collect(),
            accounts: book.accounts.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            shards: book.shards.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            caps: book.caps.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        })
    }

    /// How many entries the ledger holds: entries are only ever added, so
    /// a count unchanged since a check means nothing changed.
    pub fn len(&self) -> usize {
        self.book.lock().map(|b| b.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cap_usage(&self, key: &CapKey) -> Result<CapUsage, LedgerError> {
        let book = self.book.lock().map_err(|_| poisoned())?;
        Ok(book.caps.get(key).copied().unwrap_or_default())
    }
}

#[async_trait]
impl LedgerWrite for MemoryLedger {
    async fn apply(&self, entries: &[Entry]) -> Result<Applied, LedgerError> {
        if entries.is_empty() || entries.len() > 100 {
            // DynamoDB transactions take 1 to 100 actions.
            return Err(LedgerError::TransactionSize(entries.len()));
        }
        let mut book = self.book.lock().map_err(|_| poisoned())?;
        book.apply(entries)
    }
}

#[async_trait]
impl LedgerRead for MemoryLedger {
    async fn entries_for(&self, request: &RequestId) -> Result<Vec<Entry>, LedgerError> {
        let book = self.book.lock().map_err(|_| poisoned())?;
        Ok(book
            .by_request
            .get(request)
            .map(|entries| entries.iter().map(|e| (**e).clone()).collect())
            .unwrap_or_default())
    }

    async fn balance(&self, account: &AccountId) -> Result<Balance, LedgerError> {
        if !account.has_counters() {
            return Err(LedgerError::NotCounted(account.clone()));
        }
        let book = self.book.lock().map_err(|_| poisoned())?;
        Ok(book.accounts.get(account).copied().unwrap_or_default())
    }

    async fn shards(&self, account: &AccountId) -> Result<Vec<Balance>, LedgerError> {
        if !account.has_counters() {
            return Err(LedgerError::NotCounted(account.clone()));
        }
        let book = self.book.lock().map_err(|_| poisoned())?;
        Ok((0..shards::COUNT)
            .map(|k| book.shard(&HashMap::new(), &(account.clone(), k)))
            .collect())
    }
}
