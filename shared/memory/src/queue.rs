//! A queue with the semantics of an SQS standard queue: batches of up to 10,
//! a visibility timeout, a receive count per message, a dead-letter queue
//! that takes a message once it has been received `max_receive_count` times,
//! and a retention period after which a message is deleted unreceived.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::ports::{
    PipelineMessage, Publish, PublishError, PublishWork, QueueError, Redelivery,
};
use pointsflow_core::window::WindowWork;
use tokio::sync::Notify;
use tokio::time::Instant;

/// SQS limits: at most 10 entries per batch call.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    pub visibility_timeout: Duration,
    /// Receives after which the next receive moves the message to the DLQ; 0 means never.
    pub max_receive_count: u32,
    /// How long a message is kept (`MessageRetentionPeriod`): one older
    /// is deleted, not received and not moved to the dead-letter queue.
    pub retention: Duration,
}

/// SQS's default retention, 4 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(4 * 24 * 3_600);
/// The longest retention SQS allows, 14 days (the dead-letter queues').
pub const MAX_RETENTION: Duration = Duration::from_secs(14 * 24 * 3_600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryQueueError {
    #[error("a batch holds 1 to {MAX_BATCH} entries, not {0}")]
    BatchSize(usize),
    #[error("the receipt handle is not valid (the message was deleted or received again)")]
    InvalidReceipt,
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

impl From<MemoryQueueError> for QueueError {
    fn from(e: MemoryQueueError) -> Self {
        match e {
            MemoryQueueError::Unavailable(why) => QueueError::Unavailable(why),
            refused => QueueError::Refused(refused.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Stored {
    body: String,
    receive_count: u32,
    receipt: u64,
    sent_at: DateTime<Utc>,
    /// Deleted unreceived from this moment (the retention period).
    expires: Instant,
    /// When an invisible message becomes visible again: only the latest
    /// timeout counts (`ChangeMessageVisibility` may extend it too).
    visible_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    messages: HashMap<u64, Stored>,
    ready: VecDeque<u64>,
    /// (visible again at, message, receipt): stale rows are skipped when popped.
    in_flight: BinaryHeap<Reverse<(Instant, u64, u64)>>,
}

#[derive(Debug)]
pub struct MemoryQueue {
    config: QueueConfig,
    inner: Mutex<Inner>,
    notify: Notify,
    dead_letter: Option<Arc<MemoryQueue>>,
}

fn poisoned() -> MemoryQueueError {
    MemoryQueueError::Unavailable("queue lock poisoned".into())
}

fn receipt_handle(id: u64, receipt: u64) -> String {
    format!("{id}:{receipt}")
}

fn parse_receipt(handle: &str) -> Option<(u64, u64)> {
    let (id, receipt) = handle.split_once(':')?;
    Some((id.parse().ok()?, receipt.parse().ok()?))
}

impl MemoryQueue {
    pub fn new(config: QueueConfig, dead_letter: Option<Arc<MemoryQueue>>) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            dead_letter,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn arn(&self) -> String {
        format!("arn:aws:sqs:local:000000000000:{}", self.config.name)
    }

    /// `SendMessageBatch`: 1 to 10 bodies; returns the new message ids.
    pub fn send_batch(&self, bodies: &[String]) -> Result<Vec<String>, MemoryQueueError> {
        if bodies.is_empty() || bodies.len() > MAX_BATCH {
            return Err(MemoryQueueError::BatchSize(bodies.len()));
        }
        let mut ids = Vec::with_capacity(bodies.len());
        {
            let mut inner = self.inner.lock().map_err(|_| poisoned())?;
            for body in bodies {
                inner.next_id += 1;
                let id = inner.next_id;
                inner.messages.insert(
                    id,
                    Stored {
                        body: body.clone(),
                        receive_count: 0,
                        receipt: 0,
                        sent_at: Utc::now(),
                        expires: Instant::now() + self.config.retention,
                        visible_at: None,
                    },
                );
                inner.ready.push_back(id);
                ids.push(id.to_string());
            }
        }
        self.notify.notify_waiters();
        Ok(ids)
    }

    /// `SendMessage` with `DelaySeconds`: the message becomes visible after `delay`.
    pub fn send_delayed(&self, body: &str, delay: Duration) -> Result<String, MemoryQueueError> {
        let visible_at = Instant::now() + delay;
        let id = {
            let mut inner = self.inner.lock().map_err(|_| poisoned())?;
            inner.next_id += 1;
            let id = inner.next_id;
            inner.messages.insert(
                id,
                Stored {
                    body: body.to_owned(),
                    receive_count: 0,
                    receipt: 0,
                    sent_at: Utc::now(),
                    expires: Instant::now() + self.config.retention,
                    visible_at: Some(visible_at),
                },
            );
            inner.in_flight.push(Reverse((visible_at, id, 0)));
            id
        };
        self.notify.notify_waiters();
        Ok(id.to_string())
    }

    /// Takes up to `max` visible messages without waiting. A message received
    /// `max_receive_count` times already goes to the dead-letter queue instead,
    /// and leaves this queue only once the dead-letter queue has it.
    fn take(
        &self,
        max: usize,
    ) -> Result<(Vec<ReceivedMessage>, Option<Instant>), MemoryQueueError> {
        let now = Instant::now();
        let visibility = self.config.visibility_timeout;
        let mut out = Vec::new();
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let inner = &mut *inner;
        while let Some(Reverse((at, id, receipt))) = inner.in_flight.peek().copied() {
            if at > now {
                break;
            }
            inner.in_flight.pop();
            if let Some(m) = inner.messages.get_mut(&id)
                && m.receipt == receipt
                && m.visible_at == Some(at)
            {
                m.visible_at = None;
                inner.ready.push_back(id);
            }
        }
        while out.len() < max {
            let Some(id) = inner.ready.pop_front() else {
                break;
            };
            let Some(message) = inner.messages.get_mut(&id) else {
                continue;
            };
            if now >= message.expires {
                inner.messages.remove(&id);
                tracing::warn!(queue = %self.config.name, message_id = id, "message deleted: older than the queue's retention period");
                continue;
            }
            if let Some(dlq) = &self.dead_letter
                && self.config.max_receive_count > 0
                && message.receive_count >= self.config.max_receive_count
            {
                // Lock order is always queue, then its dead-letter queue.
                match dlq.send_batch(std::slice::from_ref(&message.body)) {
                    Ok(_) => {
                        inner.messages.remove(&id);
                        tracing::warn!(queue = %self.config.name, dlq = %dlq.name(), message_id = id, "message moved to the dead-letter queue");
                    }
                    Err(e) => {
                        inner.ready.push_back(id);
                        return Err(e);
                    }
                }
                continue;
            }
            message.receive_count += 1;
            message.receipt += 1;
            message.visible_at = Some(now + visibility);
            inner
                .in_flight
                .push(Reverse((now + visibility, id, message.receipt)));
            out.push(ReceivedMessage {
                message_id: id.to_string(),
                receipt_handle: receipt_handle(id, message.receipt),
                body: message.body.clone(),
                receive_count: message.receive_count,
                sent_at: message.sent_at,
            });
        }
        let next_visible = inner.in_flight.peek().map(|Reverse((at, _, _))| *at);
        Ok((out, next_visible))
    }

    /// `ReceiveMessage` with long polling: waits up to `wait` for at least one message.
    pub async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, MemoryQueueError> {
        let max = max.clamp(1, MAX_BATCH);
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (messages, next_visible) = self.take(max)?;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_visible.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// `DeleteMessage`: only with the handle of the latest receive.
    pub fn delete(&self, handle: &str) -> Result<(), MemoryQueueError> {
        let (id, receipt) = parse_receipt(handle).ok_or(MemoryQueueError::InvalidReceipt)?;
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        match inner.messages.get(&id) {
            Some(m) if m.receipt == receipt => {
                inner.messages.remove(&id);
                Ok(())
            }
            _ => Err(MemoryQueueError::InvalidReceipt),
        }
    }

    /// `ChangeMessageVisibility`: the message becomes visible again after `timeout`.
    pub fn change_visibility(
        &self,
        handle: &str,
        timeout: Duration,
    ) -> Result<(), MemoryQueueError> {
        let (id, receipt) = parse_receipt(handle).ok_or(MemoryQueueError::InvalidReceipt)?;
        {
            let mut inner = self.inner.lock().map_err(|_| poisoned())?;
            let at = Instant::now() + timeout;
            match inner.messages.get_mut(&id) {
                // In flight under this receipt: the new timeout replaces the
                // old one, shorter or longer.
                Some(m) if m.receipt == receipt && m.visible_at.is_some() => {
                    m.visible_at = Some(at);
                    inner.in_flight.push(Reverse((at, id, receipt)));
                }
                _ => return Err(MemoryQueueError::InvalidReceipt),
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }

    /// Messages in the queue, visible or in flight (`ApproximateNumberOfMessages` + `...NotVisible`).
    pub fn depth(&self) -> usize {
        self.inner.lock().map(|i| i.messages.len()).unwrap_or(0)
    }

    /// The bodies of every message, in no particular order (for operators and tests).
    pub fn peek_bodies(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|i| i.messages.values().map(|m| m.body.clone()).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Publish for MemoryQueue {
    async fn publish(&self, messages: &[PipelineMessage]) -> Result<(), PublishError> {
        let mut failed = Vec::new();
        let mut cause = QueueError::Unavailable(String::new());
        for chunk in messages.chunks(MAX_BATCH) {
            let bodies: Vec<String> = chunk
                .iter()
                .filter_map(|m| serde_json::to_string(m).ok())
                .collect();
            if let Err(e) = self.send_batch(&bodies) {
                failed.extend(chunk.iter().map(|m| m.request_id.clone()));
                cause = e.into();
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PublishError {
                failed,
                total: messages.len(),
                cause,
            })
        }
    }
}

#[async_trait]
impl Redelivery for MemoryQueue {
    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        Ok(self.change_visibility(receipt_handle, delay)?)
    }

    async fn send_later(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.send_delayed(body, delay)?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str) -> Result<(), QueueError> {
        let dlq = self.dead_letter.as_ref().ok_or_else(|| {
            QueueError::Refused(format!("{} has no dead-letter queue", self.config.name))
        })?;
        dlq.send_batch(&[body.to_owned()])?;
        tracing::warn!(queue = %self.config.name, dlq = %dlq.name(), "message sent to the dead-letter queue");
        Ok(())
    }
}

#[async_trait]
impl PublishWork for MemoryQueue {
    async fn publish_work(&self, work: &[WindowWork]) -> Result<(), QueueError> {
        for chunk in work.chunks(MAX_BATCH) {
            let bodies = chunk
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<String>, _>>()
                .map_err(|e| QueueError::Refused(format!("cannot encode window work: {e}")))?;
            self.send_batch(&bodies)?;
        }
        Ok(())
    }
}

#[async_trait]
impl pointsflow_core::ports::PublishCallback for MemoryQueue {
    async fn publish_callback(
        &self,
        message: &pointsflow_core::callback::CallbackMessage,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(message)
            .map_err(|e| QueueError::Refused(format!("cannot encode the callback: {e}")))?;
        self.send_batch(&[body])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_receive_count: u32) -> (Arc<MemoryQueue>, Arc<MemoryQueue>) {
        queue_keeping(max_receive_count, DEFAULT_RETENTION)
    }

    /// A queue that keeps its messages `retention`, and its dead-letter queue.
    fn queue_keeping(
        max_receive_count: u32,
        retention: Duration,
    ) -> (Arc<MemoryQueue>, Arc<MemoryQueue>) {
        let dlq = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: "dlq".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count: 0,
                retention: MAX_RETENTION,
            },
            None,
        ));
        let q = Arc::new(MemoryQueue::new(
            QueueConfig {
                name: "q".into(),
                visibility_timeout: Duration::from_secs(30),
                max_receive_count,
                retention,
            },
            Some(dlq.clone()),
        ));
        (q, dlq)
    }

    fn bodies(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[tokio::test]
    async fn batches_hold_one_to_ten_entries() {
        let (q, _) = queue(5);
        assert_eq!(q.send_batch(&[]), Err(MemoryQueueError::BatchSize(0)));
        assert_eq!(
            q.send_batch(&bodies(11)),
            Err(MemoryQueueError::BatchSize(11))
        );
        assert_eq!(q.depth(), 0, "a refused batch sends nothing");
        assert_eq!(q.send_batch(&bodies(10)).unwrap().len(), 10);
        let got = q.receive(25, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_received_message_is_invisible_until_its_timeout() {
        let (q, _) = queue(5);
        q.send_batch(&bodies(1)).unwrap();
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first[0].receive_count, 1);
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(31)).await;
        let again = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(
            q.delete(&first[0].receipt_handle),
            Err(MemoryQueueError::InvalidReceipt)
        );
        q.delete(&again[0].receipt_handle).unwrap();
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn long_polling_wakes_when_a_message_arrives() {
        let (q, _) = queue(5);
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.receive(10, Duration::from_secs(20)).await });
        tokio::time::advance(Duration::from_secs(1)).await;
        q.send_batch(&bodies(1)).unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_max_receives_the_message_moves_to_the_dead_letter_queue() {
        let (q, dlq) = queue(2);
        q.send_batch(&bodies(1)).unwrap();
        for _ in 0..2 {
            assert_eq!(q.receive(10, Duration::ZERO).await.unwrap().len(), 1);
            tokio::time::advance(Duration::from_secs(31)).await;
        }
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.depth(), 0);
        assert_eq!(dlq.peek_bodies(), vec!["m0".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn changing_visibility_makes_a_message_visible_sooner() {
        let (q, _) = queue(5);
        q.send_batch(&bodies(1)).unwrap();
        let m = q.receive(10, Duration::ZERO).await.unwrap().remove(0);
        q.change_visibility(&m.receipt_handle, Duration::ZERO)
            .unwrap();
        assert_eq!(q.receive(10, Duration::ZERO).await.unwrap().len(), 1);
    }

    /// A longer timeout replaces the receive's, as on SQS: the message
    /// stays invisible past the queue's visibility timeout.
    #[tokio::test(start_paused = true)]
    async fn changing_visibility_can_also_keep_a_message_invisible_longer() {
        let (q, _) = queue(5);
        q.send_batch(&bodies(1)).unwrap();
        let m = q.receive(10, Duration::ZERO).await.unwrap().remove(0);
        q.change_visibility(&m.receipt_handle, Duration::from_secs(3_600))
            .unwrap();
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(3_600)).await;
        assert_eq!(q.receive(10, Duration::ZERO).await.unwrap().len(), 1);
    }

    /// A message older than the retention period is deleted unreceived,
    /// and does not go to the dead-letter queue.
    #[tokio::test(start_paused = true)]
    async fn a_message_past_its_retention_is_deleted() {
        let (q, dlq) = queue_keeping(1_000, Duration::from_secs(3_600));
        q.send_batch(&bodies(1)).unwrap();
        let mut receives = 0;
        loop {
            let got = q.receive(10, Duration::from_secs(60)).await.unwrap();
            if got.is_empty() && q.depth() == 0 {
                break;
            }
            receives += got.len();
        }
        assert_eq!(receives, 120, "received every 30 s for an hour");
        assert_eq!(dlq.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_message_is_invisible_until_its_delay() {
        let (q, _) = queue(5);
        q.send_delayed("later", Duration::from_secs(10)).unwrap();
        assert_eq!(q.depth(), 1);
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(11)).await;
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!((got[0].body.as_str(), got[0].receive_count), ("later", 1));
    }

    #[tokio::test]
    async fn publish_sends_in_chunks_of_ten() {
        let (q, _) = queue(5);
        let messages: Vec<PipelineMessage> = (0..25)
            .map(|i| PipelineMessage {
                request_id: pointsflow_core::values::RequestId::derive(
                    &pointsflow_core::values::SourceId::parse("s").unwrap(),
                    &pointsflow_core::values::IdempotencyKey::parse(&format!("k{i}")).unwrap(),
                ),
            })
            .collect();
        q.publish(&messages).await.unwrap();
        assert_eq!(q.depth(), 25);
    }
}
