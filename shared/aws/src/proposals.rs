//! Proposals over DynamoDB: one versioned item per proposal
//! (`PROPOSAL#{id}` / `PROPOSAL`); while open it is also in the `waiting`
//! index under `PROPOSALS#open`, in the order proposed, so the open ones
//! are one query however many were closed before.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use pointsflow_core::ports::{ProposalStore, StoreError};
use pointsflow_core::proposal::{Proposal, ProposalId};

use crate::item::{self, Item, get_s, s, unavailable};
use crate::tables;
use crate::versioned::{Versioned, VersionedTable};

const OPEN_PK: &str = "PROPOSALS#open";

fn proposal_key(id: &ProposalId) -> Item {
    item::key(format!("PROPOSAL#{id}"), "PROPOSAL")
}

impl Versioned for Proposal {
    fn key(&self) -> Item {
        proposal_key(&self.id)
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn extra(&self, item: &mut Item) {
        if self.is_open() {
            item.insert(tables::WAIT_PK.into(), s(OPEN_PK));
            item.insert(
                tables::WAIT_SK.into(),
                s(format!("{}#{}", self.proposed_at.to_rfc3339(), self.id)),
            );
        }
    }
}

#[derive(Debug, Clone)]
pub struct DynamoProposals {
    items: VersionedTable,
}

impl DynamoProposals {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            items: VersionedTable {
                client,
                table: table.into(),
            },
        }
    }
}

#[async_trait]
impl ProposalStore for DynamoProposals {
    async fn create(&self, proposal: &Proposal) -> Result<(), StoreError> {
        match self.items.create(proposal).await? {
            None => Ok(()),
            Some(existing) => Err(StoreError::Conflict {
                expected: existing.version,
            }),
        }
    }

    async fn proposal(&self, id: &ProposalId) -> Result<Option<Proposal>, StoreError> {
        self.items.read(proposal_key(id)).await
    }

    async fn save(&self, proposal: &Proposal) -> Result<u64, StoreError> {
        self.items.save(proposal).await
    }

    async fn open(&self, limit: usize) -> Result<Vec<Proposal>, StoreError> {
        let out = self
            .items
            .client
            .query()
            .table_name(&self.items.table)
            .index_name(tables::WAITING_INDEX)
            .key_condition_expression("wait_pk = :pk")
            .expression_attribute_values(":pk", s(OPEN_PK))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        let mut open = Vec::new();
        for indexed in out.items() {
            let id = get_s(indexed, "pk")?
                .strip_prefix("PROPOSAL#")
                .and_then(|raw| ProposalId::parse(raw).ok())
                .ok_or_else(|| StoreError::Malformed("an open proposal's key".into()))?;
            // The index lags the table: the item itself says whether it is open.
            if let Some(p) = self.proposal(&id).await?
                && p.is_open()
            {
                open.push(p);
            }
        }
        Ok(open)
    }
}
