//! An embedded event bus: keeps what is put on it, in order (the latest
//! `capacity` events, numbered from 1 as they arrive, so a reader can follow
//! it), takes at most 10 events a call as EventBridge does, and can be told
//! to refuse entries (as EventBridge answers some entries of a call with an
//! error code).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use pointsflow_core::events::Event;
use pointsflow_core::ports::{BusError, EventBus};

#[derive(Debug)]
pub struct MemoryBus {
    taken: Mutex<Taken>,
    capacity: usize,
    /// Entries still to refuse, one per entry.
    refuse: AtomicUsize,
    /// Calls still to fail whole.
    fail_calls: AtomicUsize,
}

#[derive(Debug, Default)]
struct Taken {
    /// How many events were taken before `events[0]`.
    dropped: u64,
    events: VecDeque<Event>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::keeping(usize::MAX)
    }
}

impl MemoryBus {
    /// A bus that keeps every event (tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus that keeps the latest `capacity` events (a long-running stack).
    pub fn keeping(capacity: usize) -> Self {
        Self {
            taken: Mutex::default(),
            capacity: capacity.max(1),
            refuse: AtomicUsize::new(0),
            fail_calls: AtomicUsize::new(0),
        }
    }

    /// Every event kept, in the order taken (a re-sent one again).
    pub fn events(&self) -> Vec<Event> {
        self.taken
            .lock()
            .map(|t| t.events.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many events the bus has taken since it started.
    pub fn taken(&self) -> u64 {
        self.taken
            .lock()
            .map(|t| t.dropped + t.events.len() as u64)
            .unwrap_or(0)
    }

    /// Up to `limit` kept events numbered after `after`, with their numbers
    /// (events no longer kept are skipped).
    pub fn events_after(&self, after: u64, limit: usize) -> Vec<(u64, Event)> {
        let Ok(t) = self.taken.lock() else {
            return Vec::new();
        };
        let skip = usize::try_from(after.saturating_sub(t.dropped)).unwrap_or(usize::MAX);
        t.events
            .iter()
            .enumerate()
            .skip(skip)
            .take(limit)
            .map(|(i, e)| (t.dropped + i as u64 + 1, e.clone()))
            .collect()
    }

    /// Refuses the next `n` entries (each answered with an error, the
    /// others of its call taken).
    pub fn refuse_entries(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Fails the next `n` calls whole.
    pub fn fail_calls(&self, n: usize) {
        self.fail_calls.store(n, Ordering::SeqCst);
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn put(&self, events: &[Event]) -> Result<Vec<usize>, BusError> {
        if events.len() > self.batch_limit() {
            return Err(BusError(format!(
                "{} entries in one call; at most {}",
                events.len(),
                self.batch_limit()
            )));
        }
        if take_one(&self.fail_calls) {
            return Err(BusError("throttled".into()));
        }
        let mut refused = Vec::new();
        let mut taken = self.taken.lock().map_err(|_| BusError("poisoned".into()))?;
        for (i, event) in events.iter().enumerate() {
            if take_one(&self.refuse) {
                refused.push(i);
            } else {
                taken.events.push_back(event.clone());
                if taken.events.len() > self.capacity {
                    taken.events.pop_front();
                    taken.dropped += 1;
                }
            }
        }
        Ok(refused)
    }
}
