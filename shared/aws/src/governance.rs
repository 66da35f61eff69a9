//! Partners' rate limits and circuits in DynamoDB, shared by every
//! invocation of every function: `PARTNER#{partner}` / `RATE` holds when
//! the next call may start (`next_free`, microseconds since the epoch), and
//! `PARTNER#{partner}` / `CIRCUIT` the circuit. Both change only by a write
//! conditional on the value read, so two invocations never take the same
//! slot or both become the probe.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use chrono::{DateTime, Utc};
use pointsflow_core::governance::{Circuit, Slot, next_slot};
use pointsflow_core::ports::{CircuitStore, RateLimiter, StoreError};
use pointsflow_core::values::PartnerId;

use crate::item::unavailable;
use crate::item::{self, DOC, Item, counter, doc, n};
use crate::versioned::VersionedTable;

/// Attempts at a slot when other invocations keep taking the one read
/// (each after a short random pause).
const SLOT_ATTEMPTS: usize = 50;

#[derive(Debug, Clone)]
pub struct DynamoPartnerState {
    items: VersionedTable,
}

fn key(partner: &PartnerId, what: &str) -> Item {
    item::key(format!("PARTNER#{partner}"), what)
}

impl DynamoPartnerState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            items: VersionedTable {
                client,
                table: table.into(),
            },
        }
    }

    /// Puts `item` if `attribute` still holds `read` (or is absent, for `None`).
    async fn put_if(
        &self,
        item: Item,
        attribute: &str,
        read: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut put = self
            .items
            .client
            .put_item()
            .table_name(&self.items.table)
            .set_item(Some(item));
        put = match read {
            None => put.condition_expression(format!("attribute_not_exists({attribute})")),
            Some(v) => put
                .condition_expression(format!("{attribute} = :read"))
                .expression_attribute_values(":read", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(unavailable(other)),
            },
        }
    }
}

fn micros(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_micros()).unwrap_or(0)
}

#[async_trait]
impl RateLimiter for DynamoPartnerState {
    async fn reserve(
        &self,
        partner: &PartnerId,
        spacing: Duration,
        max_wait: Duration,
        now: DateTime<Utc>,
    ) -> Result<Slot, StoreError> {
        // Times are kept to the microsecond.
        let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        for _ in 0..SLOT_ATTEMPTS {
            let read = match self.items.get(key(partner, "RATE")).await? {
                Some(item) => Some(counter(&item, "next_free").map_err(StoreError::from)?),
                None => None,
            };
            let next_free =
                read.and_then(|m| DateTime::from_timestamp_micros(i64::try_from(m).ok()?));
            let (slot, next) = next_slot(next_free, now, spacing, max_wait);
            let Some(next) = next else {
                return Ok(slot);
            };
            let mut item = key(partner, "RATE");
            item.insert("next_free".into(), n(micros(next)));
            if self.put_if(item, "next_free", read).await? {
                return Ok(slot);
            }
            let pause = 1 + rand::random::<u64>() % 4;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        // Contended beyond reason: the caller defers and comes back.
        Ok(Slot::Denied(spacing))
    }
}

#[async_trait]
impl CircuitStore for DynamoPartnerState {
    async fn circuit(&self, partner: &PartnerId) -> Result<Circuit, StoreError> {
        let Some(item) = self.items.get(key(partner, "CIRCUIT")).await? else {
            return Ok(Circuit::default());
        };
        let mut circuit: Circuit = doc(&item).map_err(StoreError::from)?;
        circuit.version = counter(&item, "version").map_err(StoreError::from)?;
        Ok(circuit)
    }

    async fn save_circuit(
        &self,
        partner: &PartnerId,
        circuit: &Circuit,
    ) -> Result<u64, StoreError> {
        let next = circuit.version + 1;
        let mut item = key(partner, "CIRCUIT");
        let body = serde_json::to_string(circuit)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the circuit: {e}")))?;
        item.insert(DOC.into(), item::doc_value(body));
        item.insert("version".into(), n(next));
        let read = (circuit.version > 0).then_some(circuit.version);
        if self.put_if(item, "version", read).await? {
            Ok(next)
        } else {
            Err(StoreError::Conflict {
                expected: circuit.version,
            })
        }
    }
}
