//! The ledger over DynamoDB. One `TransactWriteItems` per call writes the
//! entries (each conditional on not existing), changes the counters of the
//! accounts they touch (a budget's conditional on enough being available),
//! charges or releases caps (conditional on the limit), and checks that a
//! resolved entry's pending entry exists. A failed condition is mapped back
//! to the domain error it means, by the position of the cancelled action.
//!
//! DynamoDB conditions cannot do arithmetic, so every account keeps an
//! `available` counter (`credits_posted - debits_posted - debits_pending`)
//! next to the four TigerBeetle-style counters, changed in the same update.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use pointsflow_core::ledger::{
    AccountId, Applied, Balance, CapKey, Entry, EntryId, EntryKind, LedgerError, rules,
};
use pointsflow_core::ports::{LedgerRead, LedgerWrite};
use pointsflow_core::values::RequestId;

use crate::item::{self, DOC, Item, counter, doc, n, s};

/// DynamoDB's limit on actions in one transaction.
const MAX_ACTIONS: usize = 100;

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

fn account_key(account: &AccountId) -> Item {
    item::key(format!("ACCT#{account}"), "BALANCE")
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
}

/// What each action of the transaction stands for, to read a cancellation back.
#[derive(Debug, Clone)]
enum Role {
    Entry,
    Account(AccountId, u64),
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
        let mut accounts: BTreeMap<AccountId, Delta> = BTreeMap::new();
        let mut caps: BTreeMap<CapKey, (i128, u64)> = BTreeMap::new();

        for entry in tx {
            rules::check_cap_charges(entry)?;
            let body = serde_json::to_string(entry).map_err(|e| {
                LedgerError::Unavailable(format!("cannot encode entry {}: {e}", entry.id))
            })?;
            let mut item = entry_key(&entry.id, entry.request.as_ref());
            item.insert(DOC.into(), s(body));
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

            let amount = i128::from(entry.amount.get());
            let (debit, credit) = (entry.debit.clone(), entry.credit.clone());
            {
                let d = accounts.entry(debit.clone()).or_default();
                match entry.kind {
                    EntryKind::Posted => d.debits_posted += amount,
                    EntryKind::Pending => d.debits_pending += amount,
                    EntryKind::PostPending { .. } => {
                        d.debits_pending -= amount;
                        d.debits_posted += amount;
                    }
                    EntryKind::VoidPending { .. } => d.debits_pending -= amount,
                }
                if debit.debits_must_not_exceed_credits()
                    && matches!(entry.kind, EntryKind::Posted | EntryKind::Pending)
                {
                    d.needs = d.needs.saturating_add(entry.amount.get());
                }
            }
            {
                let c = accounts.entry(credit).or_default();
                match entry.kind {
                    EntryKind::Posted => c.credits_posted += amount,
                    EntryKind::Pending => c.credits_pending += amount,
                    EntryKind::PostPending { .. } => {
                        c.credits_pending -= amount;
                        c.credits_posted += amount;
                    }
                    EntryKind::VoidPending { .. } => c.credits_pending -= amount,
                }
            }
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

        for (account, delta) in &accounts {
            let mut terms = Vec::new();
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(account_key(account)));
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
            roles.push(Role::Account(account.clone(), delta.needs));
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
        let (actions, roles) = match self.transaction(entries, &pendings) {
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
            return Err(LedgerError::TransactionSize(entries.len()));
        }
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        let cancelled = match sent {
            Ok(_) => return Ok(Applied::Now),
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
            Role::Entry => self.existing(entries).await,
            Role::Account(account, needs) => {
                let available = self.balance(account).await?.available();
                Err(LedgerError::InsufficientBudget {
                    account: account.clone(),
                    available,
                    requested: *needs,
                })
            }
            Role::Cap(key, limit, requested) => Err(LedgerError::CapExceeded {
                key: key.clone(),
                limit: *limit,
                used: self.cap_used(key).await?,
                requested: *requested,
            }),
        }
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
        let Some(item) = self.get_item(account_key(account)).await? else {
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
