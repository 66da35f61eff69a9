//! The events function: for each stored change of a points request, a
//! member link or a window credit (a record of the table's stream,
//! deployed), the events the change made ([`pointsflow_core::events`]):
//! for a request, those of the timeline lines it added; put on the
//! stack's event bus in order, ten to a call, entries the bus did not take
//! sent again. Because the events come from the store's own record of
//! its writes, no crash between a handler's write and anything after it
//! can lose one (a transactional outbox); a record is read at least once,
//! and reading it again makes identical events, which consumers
//! de-duplicate on their id.
//!
//! For a source with a callback URL, a change that moved its request into
//! a final status also queues the status callback, under the event's id:
//! the callback comes from the same record as the event, so a status
//! stored is a status called back.
//!
//! A change whose events the bus still refuses, or whose callback the
//! queue still refuses, after [`SEND_ATTEMPTS`] is reported failed with
//! every change after it, so the stream retries from it (events and
//! callbacks of later changes already sent are sent again, identical).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::events::{Change, Event, MemberNumbers};
use pointsflow_core::ports::{EventBus, ProgramCatalog, PublishCallback};
use pointsflow_core::values::SourceId;
use pointsflow_runtime::metrics::Unit;

/// How many times an entry the bus did not take is sent before its change
/// is reported failed.
pub const SEND_ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub struct EventsPorts {
    pub bus: Arc<dyn EventBus>,
    /// Which programs show member numbers in their events.
    pub programs: Arc<dyn ProgramCatalog>,
    /// The callbacks queue, when a source has a callback URL.
    pub callbacks: Option<StatusCallbacks>,
}

/// Where status callbacks are queued, and for which sources.
#[derive(Clone)]
pub struct StatusCallbacks {
    pub queue: Arc<dyn PublishCallback>,
    /// The sources with a callback URL; other requests queue nothing.
    pub sources: HashSet<SourceId>,
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
        let members = match self.ports.programs.program(change.write.program()) {
            Some(p) if p.events_show_member => MemberNumbers::Shown,
            _ => MemberNumbers::Masked,
        };
        change.write.events(members)
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
        let (queued, not_queued) = self.queue_callbacks(changes, &mut first_failed).await;
        if queued + not_queued > 0 {
            pointsflow_runtime::metrics::put(
                ("Function", "events"),
                &[
                    ("CallbacksQueued", queued as f64, Unit::Count),
                    ("CallbacksNotQueued", not_queued as f64, Unit::Count),
                ],
            );
        }
        if let Some(i) = first_failed {
            published.failed_from = Some(changes[i].position.clone());
        }
        published
    }

    /// Queues the status callbacks of `changes` (up to the first that
    /// failed already: the stream sends the rest again), lowering
    /// `first_failed` to a change whose callback could not be queued;
    /// how many were queued and not.
    async fn queue_callbacks(
        &self,
        changes: &[Change],
        first_failed: &mut Option<usize>,
    ) -> (usize, usize) {
        let Some(callbacks) = &self.ports.callbacks else {
            return (0, 0);
        };
        let (mut queued, mut not_queued) = (0, 0);
        for (i, change) in changes.iter().enumerate() {
            if first_failed.is_some_and(|f| i >= f) {
                break;
            }
            let Some((before, after)) = change.write.request() else {
                continue;
            };
            if !callbacks.sources.contains(&after.source) {
                continue;
            }
            for message in CallbackMessage::of_write(before, after) {
                if self.queue_one(&*callbacks.queue, &message).await {
                    queued += 1;
                } else {
                    tracing::error!(request_id = %message.request_id, event_id = message.event_id(), "the status callback could not be queued");
                    not_queued += 1;
                    *first_failed = Some(i);
                    break;
                }
            }
        }
        (queued, not_queued)
    }

    /// Queues `message`, up to [`SEND_ATTEMPTS`] times; whether it was.
    async fn queue_one(&self, queue: &dyn PublishCallback, message: &CallbackMessage) -> bool {
        let mut pause = self.backoff;
        for attempt in 1..=SEND_ATTEMPTS {
            match queue.publish_callback(message).await {
                Ok(()) => return true,
                Err(e) => tracing::warn!(error = %e, attempt, "the callbacks queue refused"),
            }
            if attempt < SEND_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        false
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
