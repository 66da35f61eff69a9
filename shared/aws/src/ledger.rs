//! The ledger over DynamoDB. One `TransactWriteItems` per call writes the
//! entries (each conditional on not existing), changes the counters of the
//! accounts they touch (a budget's conditional on enough being available),
//! and charges or releases caps (conditional on the limit); a resolved
//! entry's pending entry is read first. A failed condition is mapped back
//! to the domain error it means, by the position of the cancelled action.
//! A call that comes to one entry and no counter (the post of a credit: a
//! budget counts a reservation as spent when it is made,
//! [`AccountId::tells_pending_apart`]) is one conditional `PutItem`.
//!
//! Only a budget keeps counters ([`AccountId::has_counters`]); a member's
//! balance is the sum of its entries, so a transaction updates no item for
//! it. DynamoDB conditions cannot do arithmetic, so a budget keeps an
//! `available` counter (`credits_posted - debits_posted - debits_pending`)
//! next to the four TigerBeetle-style counters, changed in the same update.
//!
//! A budget is [`shards::COUNT`] items, one per shard, each under its own
//! partition key. A reservation first asks its home shard alone; when that
//! shard is short, every shard is read and the draw is spread
//! ([`shards::draw`]), and the transaction is sent again. The shards are
//! stored on the entry, so its void gives back exactly those (a post
//! moves none).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use pointsflow_core::ledger::rules::Side;
use pointsflow_core::ledger::shards::{self, Draw, Placement};
use pointsflow_core::ledger::{
    AccountId, Applied, Balance, CapKey, Entry, EntryId, EntryKind, LedgerError, rules,
};
use pointsflow_core::ports::{LedgerRead, LedgerWrite};
use pointsflow_core::values::RequestId;

use crate::item::{self, DOC, Item, counter, doc, n, s};

/// DynamoDB's limit on actions in one transaction.
const MAX_ACTIONS: usize = 100;

/// How many times a reservation draws again when the shards it drew from
/// were spent by others in the meantime, before it reports a transient
/// failure (its caller retries).
const DRAW_ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

fn unavailable(e: impl std::error::Error) -> LedgerError {
    LedgerError::Unavailable(DisplayErrorContext(e).to_string())
}

fn malformed(e: item::Malformed) -> LedgerError {
    e.into()
}

/// A request's ledger partition: beside the request, under a prefix of its
/// own, so a policy can grant the request without its entries.
fn ledger_pk(request: &RequestId) -> String {
    format!("LEDGER#{request}")
}

/// Where an entry lives: in its request's ledger partition, so one query
/// finds a request's entries; entries without a request (funding) stand
/// alone under their own id.
fn entry_key(id: &EntryId, request: Option<&RequestId>) -> Item {
    match request {
        Some(r) => item::key(ledger_pk(r), format!("ENTRY#{id}")),
        None => item::key(format!("LEDGER#{id}"), format!("ENTRY#{id}")),
    }
}

/// An account's item, or one shard's of a budget. Shard 0 keeps the key of
/// the single budget item that came before shards, so a table written then
/// reads the same.
fn account_key(account: &AccountId, shard: u16) -> Item {
    match shard {
        0 => item::key(format!("ACCT#{account}"), "BALANCE"),
        k => item::key(format!("ACCT#{account}#{k}"), "BALANCE"),
    }
}

fn cap_key(key: &CapKey) -> Item {
    item::key(
        format!("CAP#{}#{}#{}", key.program, key.recipient, key.period),
        "USAGE",
    )
}

/// Signed changes to one account's counters.
#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    debits_pending: i128,
    debits_posted: i128,
    credits_pending: i128,
    credits_posted: i128,
    /// What must be available before the change, for a budget being spent.
    needs: u64,
}

impl Delta {
    fn available(&self) -> i128 {
        self.credits_posted - self.debits_posted - self.debits_pending
    }

    /// Adds what `points` of an entry of `kind` do to one side's counters
    /// of `account` ([`rules::signs`]).
    fn add(&mut self, account: &AccountId, kind: &EntryKind, side: Side, points: u64) {
        let n = i128::from(points);
        let (pending, posted) = match side {
            Side::Debit => (&mut self.debits_pending, &mut self.debits_posted),
            Side::Credit => (&mut self.credits_pending, &mut self.credits_posted),
        };
        let (on_pending, on_posted) = rules::signs(account, kind);
        *pending += i128::from(on_pending) * n;
        *posted += i128::from(on_posted) * n;
    }
}

/// What each action of the transaction stands for, to read a cancellation back.
#[derive(Debug, Clone)]
enum Role {
    Entry,
    /// An account's item, or one shard of a budget.
    Account(AccountId),
    Cap(CapKey, u64, u64),
}

fn build_err(e: impl std::error::Error) -> LedgerError {
    LedgerError::Unavailable(format!("cannot build the transaction: {e}"))
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(out.item().cloned())
    }

    async fn get_entry(
        &self,
        id: &EntryId,
        request: Option<&RequestId>,
    ) -> Result<Option<Entry>, LedgerError> {
        self.get_item(entry_key(id, request))
            .await?
            .map(|i| doc(&i).map_err(malformed))
            .transpose()
    }

    async fn cap_used(&self, key: &CapKey) -> Result<u64, LedgerError> {
        Ok(match self.get_item(cap_key(key)).await? {
            Some(i) => counter(&i, "used").map_err(malformed)?,
            None => 0,
        })
    }

    /// The pending entries the resolutions in `tx` resolve, from the
    /// transaction itself or the table.
    async fn pendings(&self, tx: &[Entry]) -> Result<BTreeMap<EntryId, Entry>, LedgerError> {
        let mut out = BTreeMap::new();
        for entry in tx {
            let Some(pending_id) = entry.pending_id() else {
                continue;
            };
            let pending = match tx.iter().find(|e| &e.id == pending_id) {
                Some(p) => Some(p.clone()),
                None => self.get_entry(pending_id, entry.request.as_ref()).await?,
            };
            rules::check_resolution(entry, pending.as_ref())?;
            if let Some(p) = pending {
                out.insert(pending_id.clone(), p);
            }
        }
        Ok(out)
    }

    /// After an entry's condition failed: a retry if every entry is there
    /// with the same effect, else the conflict.
    async fn existing(&self, tx: &[Entry]) -> Result<Applied, LedgerError> {
        let mut present = 0;
        let mut first_present = None;
        for entry in tx {
            if let Some(stored) = self.get_entry(&entry.id, entry.request.as_ref()).await? {
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
                present += 1;
                first_present.get_or_insert_with(|| entry.id.clone());
            }
        }
        match (present == tx.len(), first_present) {
            (true, _) => Ok(Applied::Already),
            (false, Some(id)) => Err(LedgerError::EntryConflict { id }),
            (false, None) => Err(LedgerError::Unavailable(
                "an entry's condition failed but no entry is there; retry".into(),
            )),
        }
    }

    fn transaction(
        &self,
        tx: &[Entry],
        pendings: &BTreeMap<EntryId, Entry>,
    ) -> Result<(Vec<TransactWriteItem>, Vec<Role>), LedgerError> {
        let mut actions = Vec::new();
        let mut roles = Vec::new();
        let mut accounts: BTreeMap<(AccountId, u16), Delta> = BTreeMap::new();
        let mut caps: BTreeMap<CapKey, (i128, u64)> = BTreeMap::new();

        for entry in tx {
            rules::check_cap_charges(entry)?;
            let body = serde_json::to_string(entry).map_err(|e| {
                LedgerError::Unavailable(format!("cannot encode entry {}: {e}", entry.id))
            })?;
            let mut item = entry_key(&entry.id, entry.request.as_ref());
            item.insert(DOC.into(), item::doc_value(body));
            item.insert("amount".into(), n(entry.amount.get()));
            item.insert("at".into(), s(entry.at.to_rfc3339()));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_err)?;
            actions.push(TransactWriteItem::builder().put(put).build());
            roles.push(Role::Entry);

            // A resolution needs its pending entry, which `pendings` read
            // (consistently) before this transaction. Entries are never
            // deleted, so no condition check is needed here: it would only
            // cost two write units.

            // Only the budget keeps counters, and its points move on the
            // shards placed on the entry; a member's or funding account's
            // balance is the sum of its entries: no item, no write units.
            if let Some((budget, side)) = shards::budget_side(entry) {
                for draw in &entry.shards {
                    let d = accounts.entry((budget.clone(), draw.shard)).or_default();
                    d.add(budget, &entry.kind, side, draw.points);
                    if side == Side::Debit
                        && matches!(entry.kind, EntryKind::Posted | EntryKind::Pending)
                    {
                        d.needs = d.needs.saturating_add(draw.points);
                    }
                }
            }
            let amount = i128::from(entry.amount.get());
            let pending = entry.pending_id().and_then(|p| pendings.get(p));
            for c in rules::caps_touched(entry, pending) {
                let charge = caps.entry(c.key.clone()).or_default();
                if entry.kind == EntryKind::Pending {
                    charge.0 += amount;
                    charge.1 = c.limit.get();
                } else {
                    charge.0 -= amount;
                }
            }
        }

        for ((account, shard), delta) in &accounts {
            let mut terms = Vec::new();
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(account_key(account, *shard)));
            for (name, value) in [
                ("debits_pending", delta.debits_pending),
                ("debits_posted", delta.debits_posted),
                ("credits_pending", delta.credits_pending),
                ("credits_posted", delta.credits_posted),
                ("available", delta.available()),
            ] {
                if value != 0 {
                    terms.push(format!("{name} :{name}"));
                    update = update.expression_attribute_values(format!(":{name}"), n(value));
                }
            }
            if terms.is_empty() {
                continue;
            }
            update = update.update_expression(format!("ADD {}", terms.join(", ")));
            if delta.needs > 0 {
                update = update
                    .condition_expression("available >= :needs")
                    .expression_attribute_values(":needs", n(delta.needs));
            }
            actions.push(
                TransactWriteItem::builder()
                    .update(update.build().map_err(build_err)?)
                    .build(),
            );
            roles.push(Role::Account(account.clone()));
        }

        for (key, (change, limit)) in &caps {
            if *change == 0 {
                continue;
            }
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(cap_key(key)))
                .update_expression("ADD used :change")
                .expression_attribute_values(":change", n(change));
            if *change > 0 {
                let charge = u64::try_from(*change).unwrap_or(u64::MAX);
                let Some(room) = limit.checked_sub(charge) else {
                    // Over the limit on its own: no transaction can succeed.
                    return Err(LedgerError::CapExceeded {
                        key: key.clone(),
                        limit: *limit,
                        used: 0,
                        requested: charge,
                    });
                };
                update = update
                    .condition_expression("attribute_not_exists(used) OR used <= :room")
                    .expression_attribute_values(":room", n(room));
                roles.push(Role::Cap(key.clone(), *limit, charge));
            } else {
                roles.push(Role::Cap(key.clone(), *limit, 0));
            }
            actions.push(
                TransactWriteItem::builder()
                    .update(update.build().map_err(build_err)?)
                    .build(),
            );
        }
        Ok((actions, roles))
    }
}

#[async_trait]
impl LedgerWrite for DynamoLedger {
    #[tracing::instrument(skip_all, fields(entries = entries.len()))]
    async fn apply(&self, entries: &[Entry]) -> Result<Applied, LedgerError> {
        if entries.is_empty() {
            return Err(LedgerError::TransactionSize(0));
        }
        let pendings = self.pendings(entries).await?;
        // Each spend from a budget starts at its home shard alone.
        let mut drawn: BTreeMap<EntryId, Vec<Draw>> = BTreeMap::new();
        for _ in 0..DRAW_ATTEMPTS {
            let placed = place(entries, &pendings, &drawn);
            let short = match self.send(&placed, &pendings).await? {
                Sent::Done(applied) => return Ok(applied),
                Sent::Short(account) => account,
            };
            // A shard was short: read them all and spread the draws.
            let mut available: Vec<u64> = self
                .shards(&short)
                .await?
                .iter()
                .map(Balance::available)
                .collect();
            let spends: Vec<&Entry> = placed
                .iter()
                .filter(|e| {
                    e.debit == short && matches!(e.kind, EntryKind::Posted | EntryKind::Pending)
                })
                .collect();
            let requested: u64 = spends.iter().map(|e| e.amount.get()).sum();
            let total: u64 = available.iter().sum();
            if total < requested {
                return Err(LedgerError::InsufficientBudget {
                    account: short,
                    available: total,
                    requested,
                });
            }
            for entry in spends {
                let draws = shards::draw(shards::home(&entry.id), entry.amount.get(), &available)
                    .ok_or_else(|| {
                    LedgerError::Unavailable("budget shards changed while drawing".into())
                })?;
                for d in &draws {
                    available[usize::from(d.shard)] -= d.points;
                }
                drawn.insert(entry.id.clone(), draws);
            }
        }
        Err(LedgerError::Unavailable(
            "the budget's shards were spent by others while this reservation drew; retry".into(),
        ))
    }
}

/// What one transaction came to.
enum Sent {
    Done(Applied),
    /// A budget's shard had too few points for its draw.
    Short(AccountId),
}

/// The entries with their budget shards placed: a spend takes the draws in
/// `drawn`, else its home shard; a resolution moves its reservation's.
fn place(
    entries: &[Entry],
    pendings: &BTreeMap<EntryId, Entry>,
    drawn: &BTreeMap<EntryId, Vec<Draw>>,
) -> Vec<Entry> {
    let mut placed: Vec<Entry> = Vec::with_capacity(entries.len());
    for entry in entries {
        let pending = entry.pending_id().and_then(|p| {
            placed
                .iter()
                .find(|e| &e.id == p)
                .or_else(|| pendings.get(p))
        });
        let draws = match shards::placement(entry, pending) {
            Placement::Outside => Vec::new(),
            Placement::Fixed(draws) => draws,
            Placement::Draw { home } => drawn.get(&entry.id).cloned().unwrap_or_else(|| {
                vec![Draw {
                    shard: home,
                    points: entry.amount.get(),
                }]
            }),
        };
        placed.push(Entry {
            shards: draws,
            ..entry.clone()
        });
    }
    placed
}

impl DynamoLedger {
    /// Sends one transaction of the placed entries.
    async fn send(
        &self,
        placed: &[Entry],
        pendings: &BTreeMap<EntryId, Entry>,
    ) -> Result<Sent, LedgerError> {
        let (actions, roles) = match self.transaction(placed, pendings) {
            Err(LedgerError::CapExceeded {
                key,
                limit,
                requested,
                ..
            }) => {
                let used = self.cap_used(&key).await?;
                return Err(LedgerError::CapExceeded {
                    key,
                    limit,
                    used,
                    requested,
                });
            }
            other => other?,
        };
        if actions.len() > MAX_ACTIONS {
            return Err(LedgerError::TransactionSize(placed.len()));
        }
        if let ([only], [Role::Entry]) = (actions.as_slice(), roles.as_slice())
            && let Some(put) = only.put()
        {
            return self.put_alone(put, placed).await;
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        let cancelled = match sent {
            Ok(_) => return Ok(Sent::Done(Applied::Now)),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(c) => c,
                other => return Err(unavailable(other)),
            },
        };
        let reasons = cancelled.cancellation_reasons();
        let failed = reasons
            .iter()
            .position(|r| r.code() == Some("ConditionalCheckFailed"));
        let Some(role) = failed.and_then(|i| roles.get(i)) else {
            // Conflicts with concurrent transactions, throttling: transient.
            let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
            return Err(LedgerError::Unavailable(format!(
                "transaction cancelled: {codes:?}"
            )));
        };
        match role {
            Role::Entry => self.existing(placed).await.map(Sent::Done),
            Role::Account(account) => Ok(Sent::Short(account.clone())),
            Role::Cap(key, limit, requested) => Err(LedgerError::CapExceeded {
                key: key.clone(),
                limit: *limit,
                used: self.cap_used(key).await?,
                requested: *requested,
            }),
        }
    }

    /// A transaction of one entry that moves no counter (a post: a budget
    /// is not moved by it) is one conditional `PutItem`, at half the write
    /// units of a transaction's action.
    async fn put_alone(&self, put: &Put, placed: &[Entry]) -> Result<Sent, LedgerError> {
        let sent = self
            .client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_owned))
            .send()
            .await;
        match sent.map_err(|e| e.into_service_error()) {
            Ok(_) => Ok(Sent::Done(Applied::Now)),
            Err(PutItemError::ConditionalCheckFailedException(_)) => {
                self.existing(placed).await.map(Sent::Done)
            }
            Err(other) => Err(unavailable(other)),
        }
    }

    /// One item's counters.
    async fn counters(&self, key: Item) -> Result<Balance, LedgerError> {
        let Some(item) = self.get_item(key).await? else {
            return Ok(Balance::default());
        };
        let read = |name| counter(&item, name).map_err(malformed);
        Ok(Balance {
            debits_pending: read("debits_pending")?,
            debits_posted: read("debits_posted")?,
            credits_pending: read("credits_pending")?,
            credits_posted: read("credits_posted")?,
        })
    }
}

#[async_trait]
impl LedgerRead for DynamoLedger {
    #[tracing::instrument(skip_all, fields(request_id = %request))]
    async fn entries_for(&self, request: &RequestId) -> Result<Vec<Entry>, LedgerError> {
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :entries)")
                .expression_attribute_values(":pk", s(ledger_pk(request)))
                .expression_attribute_values(":entries", s("ENTRY#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in out.items() {
                entries.push(doc::<Entry>(item).map_err(malformed)?);
            }
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(entries)
    }

    async fn balance(&self, account: &AccountId) -> Result<Balance, LedgerError> {
        Ok(shards::total(&self.shards(account).await?))
    }

    /// A budget's shards are read at once, each consistently: 16 read units.
    async fn shards(&self, account: &AccountId) -> Result<Vec<Balance>, LedgerError> {
        if !account.has_counters() {
            return Err(LedgerError::NotCounted(account.clone()));
        }
        futures::future::try_join_all(
            (0..shards::COUNT).map(|k| self.counters(account_key(account, k))),
        )
        .await
    }
}
