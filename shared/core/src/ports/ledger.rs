//! The ledger: entries applied all together or not at all, and balances.

use async_trait::async_trait;

use crate::ledger::{AccountId, Applied, Balance, Entry, LedgerError};
use crate::values::RequestId;

#[async_trait]
pub trait LedgerWrite: Send + Sync {
    /// Applies the entries all together or not at all. Entries that exist
    /// already with the same effect make the call a retry ([`Applied::Already`]).
    async fn apply(&self, entries: &[Entry]) -> Result<Applied, LedgerError>;
}

#[async_trait]
pub trait LedgerRead: Send + Sync {
    async fn entries_for(&self, request: &RequestId) -> Result<Vec<Entry>, LedgerError>;
    /// A budget's counters, the sums of its shards'. Any other account
    /// keeps none ([`LedgerError::NotCounted`]): its balance is the sum of
    /// its entries.
    async fn balance(&self, account: &AccountId) -> Result<Balance, LedgerError>;
    /// A budget's counters per shard, [`shards::COUNT`] of them in shard
    /// order; [`LedgerError::NotCounted`] for any other account.
    ///
    /// [`shards::COUNT`]: crate::ledger::shards::COUNT
    async fn shards(&self, account: &AccountId) -> Result<Vec<Balance>, LedgerError>;
}

/// Both roles of a ledger.
pub trait Ledger: LedgerRead + LedgerWrite {}

impl<T: LedgerRead + LedgerWrite> Ledger for T {}
