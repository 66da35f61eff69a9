//! An embedded event bus: keeps what is put on it, in order, takes at most
//! 10 events a call as EventBridge does, and can be told to refuse entries
//! (as EventBridge answers some entries of a call with an error code).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use pointsflow_core::events::Event;
use pointsflow_core::ports::{BusError, EventBus};

#[derive(Debug, Default)]
pub struct MemoryBus {
    events: Mutex<Vec<Event>>,
    /// Entries still to refuse, one per entry.
    refuse: AtomicUsize,
    /// Calls still to fail whole.
    fail_calls: AtomicUsize,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event taken, in the order taken (a re-sent one again).
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
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
        let mut taken = self
            .events
            .lock()
            .map_err(|_| BusError("poisoned".into()))?;
        for (i, event) in events.iter().enumerate() {
            if take_one(&self.refuse) {
                refused.push(i);
            } else {
                taken.push(event.clone());
            }
        }
        Ok(refused)
    }
}
