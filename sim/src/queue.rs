//! A simulated SQS standard queue on the simulated clock: at-least-once
//! (a message in flight may be delivered again), any order, a visibility
//! timeout after each receive, a receive limit and a dead-letter queue, and
//! sends that fail from the seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{
    Clock, DeadLetters, PipelineMessage, Publish, PublishCallback, PublishError, PublishWork,
    QueueError, Redelivery, RedriveReport,
};
use pointsflow_core::window::WindowWork;
use pointsflow_memory::ManualClock;

use crate::faults::Faults;

struct Message {
    body: String,
    visible_at: DateTime<Utc>,
    receives: u32,
    receipt: u64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    messages: BTreeMap<u64, Message>,
    dead: BTreeMap<u64, String>,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: u64,
    pub handle: String,
    pub body: String,
    pub receives: u32,
}

pub struct SimQueue {
    pub name: &'static str,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    visibility: TimeDelta,
    max_receives: u32,
    state: Mutex<State>,
    /// When status callbacks cannot be queued (while faults are on).
    outages: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The longest delay SQS allows on a message.
const MAX_DELAY: Duration = Duration::from_secs(900);

impl SimQueue {
    pub fn new(
        name: &'static str,
        faults: Arc<Faults>,
        clock: Arc<ManualClock>,
        visibility: Duration,
        max_receives: u32,
    ) -> Self {
        Self {
            name,
            faults,
            clock,
            visibility: TimeDelta::from_std(visibility).unwrap_or(TimeDelta::seconds(30)),
            max_receives,
            state: Mutex::new(State::default()),
            outages: Vec::new(),
        }
    }

    /// The queue, refusing status callbacks during `outages`.
    pub fn with_outages(mut self, outages: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Self {
        self.outages = outages;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn put(&self, body: String, delay: Duration) {
        let at = self.clock.now() + TimeDelta::from_std(delay.min(MAX_DELAY)).unwrap_or_default();
        let mut s = self.state();
        s.next_id += 1;
        let id = s.next_id;
        s.messages.insert(
            id,
            Message {
                body,
                visible_at: at,
                receives: 0,
                receipt: 0,
            },
        );
    }

    /// Sends each body, to be visible after `delay`; returns the indexes
    /// of those that failed.
    async fn send(&self, bodies: Vec<String>, delay: Duration) -> Vec<usize> {
        self.faults.boundary("before queue send").await;
        let mut failed = Vec::new();
        for (i, body) in bodies.into_iter().enumerate() {
            if self
                .faults
                .fault("queue send failed", self.faults.rates.send_error)
            {
                failed.push(i);
            } else {
                self.faults
                    .note(|| format!("{} <- {}", self.name, short(&body)));
                self.put(body, delay);
            }
        }
        self.faults.boundary("after queue send").await;
        failed
    }

    /// Receives up to `max` visible messages, in an order the seed picks.
    /// A message received more often than the limit goes to the DLQ instead.
    pub fn receive(&self, max: usize) -> Vec<Received> {
        let now = self.clock.now();
        let visible: Vec<u64> = {
            let s = self.state();
            s.messages
                .iter()
                .filter(|(_, m)| m.visible_at <= now)
                .map(|(id, _)| *id)
                .collect()
        };
        let mut pool = visible;
        let mut out = Vec::new();
        while out.len() < max && !pool.is_empty() {
            let i = self.faults.below(pool.len() as u64) as usize;
            let id = pool.swap_remove(i);
            let duplicate = self
                .faults
                .fault("duplicate delivery", self.faults.rates.duplicate);
            let mut s = self.state();
            let Some(m) = s.messages.get_mut(&id) else {
                continue;
            };
            m.receives += 1;
            if m.receives > self.max_receives {
                if let Some(m) = s.messages.remove(&id) {
                    self.faults
                        .note(|| format!("{} -> DLQ {}", self.name, short(&m.body)));
                    s.dead.insert(id, m.body);
                }
                continue;
            }
            m.receipt += 1;
            if !duplicate {
                m.visible_at = now + self.visibility;
            }
            out.push(Received {
                id,
                handle: format!("{id}:{}", m.receipt),
                body: m.body.clone(),
                receives: m.receives,
            });
        }
        out
    }

    /// Deletes a message by its receipt handle; a stale handle (the message
    /// was received again since) deletes nothing.
    pub fn delete(&self, handle: &str) {
        let Some((id, receipt)) = parse_handle(handle) else {
            return;
        };
        let mut s = self.state();
        if s.messages.get(&id).is_some_and(|m| m.receipt == receipt) {
            s.messages.remove(&id);
        }
    }

    /// When the next message becomes visible.
    pub fn next_visible(&self) -> Option<DateTime<Utc>> {
        self.state().messages.values().map(|m| m.visible_at).min()
    }

    pub fn depth(&self) -> usize {
        self.state().messages.len()
    }

    pub fn dead_letters(&self) -> Vec<String> {
        self.state().dead.values().cloned().collect()
    }

    /// The bodies of the messages on the queue.
    pub fn bodies(&self) -> Vec<String> {
        self.state()
            .messages
            .values()
            .map(|m| m.body.clone())
            .collect()
    }

    /// A delay for a retry: the seed's choice, up to `cap`, whatever the
    /// handler asked (its jitter is not seeded), so a run replays exactly.
    fn sim_delay(&self, cap: Duration) -> Duration {
        Duration::from_millis(self.faults.below(cap.as_millis() as u64 + 1))
    }
}

fn parse_handle(handle: &str) -> Option<(u64, u64)> {
    let (id, receipt) = handle.split_once(':')?;
    Some((id.parse().ok()?, receipt.parse().ok()?))
}

fn short(body: &str) -> String {
    body.chars().take(90).collect()
}

#[async_trait]
impl Publish for SimQueue {
    async fn publish(&self, messages: &[PipelineMessage]) -> Result<(), PublishError> {
        let bodies = messages
            .iter()
            .map(|m| serde_json::to_string(m).unwrap_or_default())
            .collect();
        let failed = self.send(bodies, Duration::ZERO).await;
        if failed.is_empty() {
            return Ok(());
        }
        Err(PublishError {
            failed: failed
                .iter()
                .filter_map(|i| messages.get(*i).map(|m| m.request_id.clone()))
                .collect(),
            total: messages.len(),
            cause: QueueError::Unavailable("SendMessageBatch failed (simulated)".into()),
        })
    }
}

#[async_trait]
impl PublishWork for SimQueue {
    async fn publish_work(&self, work: &[WindowWork]) -> Result<(), QueueError> {
        let bodies = work
            .iter()
            .map(|w| serde_json::to_string(w).unwrap_or_default())
            .collect();
        if self.send(bodies, Duration::ZERO).await.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Unavailable(
                "SendMessageBatch failed (simulated)".into(),
            ))
        }
    }
}

#[async_trait]
impl PublishCallback for SimQueue {
    async fn publish_callback(&self, message: &CallbackMessage) -> Result<(), QueueError> {
        // Status callbacks are queued, not delivered: the simulator checks
        // that each final status was queued, not the receivers.
        let body =
            serde_json::to_string(message).map_err(|e| QueueError::Refused(e.to_string()))?;
        let now = self.clock.now();
        if self.faults.enabled()
            && self
                .outages
                .iter()
                .any(|(from, to)| *from <= now && now < *to)
        {
            self.faults.count("callbacks queue down");
            return Err(QueueError::Unavailable(
                "SQS unavailable (simulated outage)".into(),
            ));
        }
        if self.send(vec![body], Duration::ZERO).await.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Unavailable(
                "SendMessage failed (simulated)".into(),
            ))
        }
    }
}

#[async_trait]
impl Redelivery for SimQueue {
    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        self.faults.boundary("before change visibility").await;
        let _ = delay;
        let delay = self.sim_delay(Duration::from_secs(60));
        let Some((id, receipt)) = parse_handle(receipt_handle) else {
            return Err(QueueError::Refused("bad receipt handle".into()));
        };
        let at = self.clock.now() + TimeDelta::from_std(delay).unwrap_or_default();
        let mut s = self.state();
        if let Some(m) = s.messages.get_mut(&id)
            && m.receipt == receipt
        {
            m.visible_at = at;
        }
        Ok(())
    }

    async fn send_later(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        let _ = delay;
        let delay = self.sim_delay(Duration::from_secs(120));
        if self.send(vec![body.to_owned()], delay).await.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Unavailable(
                "SendMessage failed (simulated)".into(),
            ))
        }
    }

    async fn dead_letter(&self, body: &str) -> Result<(), QueueError> {
        self.faults
            .boundary("before send to the dead-letter queue")
            .await;
        let mut s = self.state();
        s.next_id += 1;
        let id = s.next_id;
        s.dead.insert(id, body.to_owned());
        Ok(())
    }
}

/// A queue's dead-letter queue, as the operations function redrives it.
pub struct SimDeadLetters(pub Arc<SimQueue>);

#[async_trait]
impl DeadLetters for SimDeadLetters {
    async fn redrive(&self, max: u64) -> Result<RedriveReport, QueueError> {
        let mut moved = 0;
        loop {
            if moved >= max {
                break;
            }
            let first = {
                let s = self.0.state();
                s.dead.iter().next().map(|(id, body)| (*id, body.clone()))
            };
            let Some((id, body)) = first else { break };
            // Sent first, then deleted: a crash between the two duplicates.
            self.0.faults.boundary("before redrive send").await;
            self.0.put(body, Duration::ZERO);
            self.0.faults.boundary("after redrive send").await;
            self.0.state().dead.remove(&id);
            moved += 1;
        }
        let left = self.0.state().dead.len() as u64;
        Ok(RedriveReport {
            moved,
            failed: 0,
            left,
        })
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.0.state().dead.len() as u64)
    }
}
