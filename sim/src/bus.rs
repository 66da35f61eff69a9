//! The stack's event bus with faults: a call may fail whole or refuse some
//! of its entries (as EventBridge answers), the bus may be down for minutes
//! (longer than one invocation tries, so the stream's records are retried),
//! and the events function may crash right before or right after the bus
//! takes a batch, so a batch it put is put again when the stream's records
//! are read again.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::events::Event;
use pointsflow_core::ports::Clock;
use pointsflow_core::ports::{BusError, EventBus};
use pointsflow_memory::MemoryBus;

use crate::faults::Faults;

pub struct SimBus {
    pub inner: Arc<MemoryBus>,
    pub faults: Arc<Faults>,
    pub clock: Arc<dyn Clock>,
    /// When the bus takes nothing (while faults are on).
    pub outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

#[async_trait]
impl EventBus for SimBus {
    async fn put(&self, events: &[Event]) -> Result<Vec<usize>, BusError> {
        self.faults.boundary("before put events").await;
        let now = self.clock.now();
        let down = self.faults.enabled()
            && self
                .outages
                .iter()
                .any(|(from, to)| *from <= now && now < *to);
        if down {
            self.faults.count("bus down");
            return Err(BusError("ServiceUnavailable (simulated outage)".into()));
        }
        if self
            .faults
            .fault("put events failed", self.faults.rates.send_error)
        {
            return Err(BusError("ThrottlingException (simulated)".into()));
        }
        let refused = (0..events.len())
            .filter(|_| {
                self.faults
                    .fault("event refused", self.faults.rates.send_error / 2.0)
            })
            .count();
        if refused > 0 {
            self.inner.refuse_entries(refused);
        }
        let answer = self.inner.put(events).await;
        self.faults.boundary("after put events").await;
        answer
    }
}
