//! The events function: for each stored change of a points request (a
//! record of the table's stream, deployed), the events of the timeline
//! lines the change added ([`pointsflow_core::events`]), put on the
//! stack's event bus in order, ten to a call, entries the bus did not take
//! sent again. Because the events come from the store's own record of
//! its writes, no crash between a handler's write and anything after it
//! can lose one (a transactional outbox); a record is read at least once,
//! and reading it again makes identical events, which consumers
//! de-duplicate on their id.
//!
//! A change whose events the bus still refuses after [`SEND_ATTEMPTS`] is
//! reported failed with every change after it, so the stream retries from
//! it (events of later changes already sent are sent again, identical).

use std::sync::Arc;
use std::time::Duration;

use pointsflow_core::events::{Change, Event, MemberNumbers, request_events};
use pointsflow_core::ports::{EventBus, ProgramCatalog};
use pointsflow_runtime::metrics::Unit;

/// How many times an entry the bus did not take is sent before its change
/// is reported failed.
pub const SEND_ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub struct EventsPorts {
    pub bus: Arc<dyn EventBus>,
    /// Which programs show member numbers in their events.
    pub programs: Arc<dyn ProgramCatalog>,
}

/// What one batch of changes came to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// Events the bus took.
    pub events: usize,
    /// The position of the first change not wholly published: retry from it.
    pub failed_from: Option<String>,
}

#[derive(Clone)]
pub struct Events {
    ports: EventsPorts,
    /// The first pause before an entry is sent again (doubled each time).
    backoff: Duration,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    pub fn new(ports: EventsPorts) -> Self {
        Self {
            ports,
            backoff: Duration::from_millis(100),
        }
    }

    /// The events of `change`, members masked unless its program shows them.
    pub fn events_of(&self, change: &Change) -> Vec<Event> {
        let members = match self.ports.programs.program(&change.after.program) {
            Some(p) if p.events_show_member => MemberNumbers::Shown,
            _ => MemberNumbers::Masked,
        };
        request_events(change.before.as_ref(), &change.after, members)
    }

    /// Publishes the events of `changes`, in their order.
    #[tracing::instrument(name = "events", skip_all, fields(changes = changes.len()))]
    pub async fn publish(&self, changes: &[Change]) -> Published {
        if let Err(e) = self.ports.programs.refresh().await {
            tracing::warn!(error = %e, "programs not refreshed; the last snapshot stands");
        }
        // Each event with the index of the change it came from.
        let pending: Vec<(usize, Event)> = changes
            .iter()
            .enumerate()
            .flat_map(|(i, c)| self.events_of(c).into_iter().map(move |e| (i, e)))
            .collect();
        let limit = self.ports.bus.batch_limit().max(1);
        let mut published = Published::default();
        let mut first_failed: Option<usize> = None;
        for batch in pending.chunks(limit) {
            let unsent = self.send(batch).await;
            published.events += batch.len() - unsent.len();
            if let Some((change, event)) = unsent.first() {
                tracing::error!(event_id = event.id(), "the bus did not take the event");
                first_failed = Some(first_failed.map_or(*change, |f: usize| f.min(*change)));
            }
        }
        let failed = pending.len() - published.events;
        pointsflow_runtime::metrics::put(
            ("Function", "events"),
            &[
                ("EventsPublished", published.events as f64, Unit::Count),
                ("EventsNotPublished", failed as f64, Unit::Count),
            ],
        );
        if let Some(i) = first_failed {
            published.failed_from = Some(changes[i].position.clone());
        }
        published
    }

    /// Sends `batch`, then what the bus did not take, up to
    /// [`SEND_ATTEMPTS`] times; what it still did not take.
    async fn send<'a>(&self, batch: &'a [(usize, Event)]) -> Vec<&'a (usize, Event)> {
        let mut left: Vec<&(usize, Event)> = batch.iter().collect();
        let mut pause = self.backoff;
        for attempt in 1..=SEND_ATTEMPTS {
            let events: Vec<Event> = left.iter().map(|(_, e)| e.clone()).collect();
            match self.ports.bus.put(&events).await {
                Ok(refused) => {
                    left = refused
                        .iter()
                        .filter_map(|&i| left.get(i).copied())
                        .collect();
                }
                Err(e) => tracing::warn!(error = %e, attempt, "the bus took none of the batch"),
            }
            if left.is_empty() || attempt == SEND_ATTEMPTS {
                break;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        left
    }
}
