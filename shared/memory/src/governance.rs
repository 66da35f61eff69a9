//! Partners' rate limits and circuits, shared by every handler of the
//! process, with the conditional writes of the DynamoDB adapter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::governance::{Circuit, Slot, next_slot};
use pointsflow_core::ports::{CircuitStore, RateLimiter, StoreError};
use pointsflow_core::values::PartnerId;

#[derive(Debug, Default)]
pub struct MemoryPartnerState {
    next_free: Mutex<HashMap<PartnerId, DateTime<Utc>>>,
    circuits: Mutex<HashMap<PartnerId, Circuit>>,
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("partner state lock poisoned".into())
}

impl MemoryPartnerState {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for MemoryPartnerState {
    async fn reserve(
        &self,
        partner: &PartnerId,
        spacing: Duration,
        max_wait: Duration,
        now: DateTime<Utc>,
    ) -> Result<Slot, StoreError> {
        let mut next_free = self.next_free.lock().map_err(|_| poisoned())?;
        let (slot, next) = next_slot(next_free.get(partner).copied(), now, spacing, max_wait);
        if let Some(next) = next {
            next_free.insert(partner.clone(), next);
        }
        Ok(slot)
    }
}

#[async_trait]
impl CircuitStore for MemoryPartnerState {
    async fn circuit(&self, partner: &PartnerId) -> Result<Circuit, StoreError> {
        let circuits = self.circuits.lock().map_err(|_| poisoned())?;
        Ok(circuits.get(partner).copied().unwrap_or_default())
    }

    async fn save_circuit(
        &self,
        partner: &PartnerId,
        circuit: &Circuit,
    ) -> Result<u64, StoreError> {
        let mut circuits = self.circuits.lock().map_err(|_| poisoned())?;
        let stored = circuits.get(partner).map_or(0, |c| c.version);
        if stored != circuit.version {
            return Err(StoreError::Conflict {
                expected: circuit.version,
            });
        }
        let next = Circuit {
            version: circuit.version + 1,
            ..*circuit
        };
        circuits.insert(partner.clone(), next);
        Ok(next.version)
    }
}
