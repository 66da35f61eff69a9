//! The stack's EventBridge bus: `PutEvents`, ten entries a call, source
//! `pointsflow`, the detail-type and detail of each event, its time.
//! EventBridge answers each entry on its own; the positions of those with
//! an error code are returned to be sent again.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use pointsflow_core::events::{Event, SOURCE};
use pointsflow_core::ports::{BusError, EventBus};

#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    /// `bus`: the event bus's name or ARN.
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// The entry `PutEvents` carries for `event`.
    pub fn entry(&self, event: &Event) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.detail_type.as_str())
            .detail(event.detail_json())
            .time(DateTime::from_millis(event.time.timestamp_millis()))
            .build()
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn put(&self, events: &[Event]) -> Result<Vec<usize>, BusError> {
        let answer = self
            .client
            .put_events()
            .set_entries(Some(events.iter().map(|e| self.entry(e)).collect()))
            .send()
            .await
            .map_err(|e| {
                BusError(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
            })?;
        let results = answer.entries();
        if results.len() != events.len() && answer.failed_entry_count() > 0 {
            // Every entry is answered in order; without that, send all again.
            return Ok((0..events.len()).collect());
        }
        Ok(results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(i, _)| i)
            .collect())
    }
}
