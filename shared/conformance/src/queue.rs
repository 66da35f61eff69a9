//! Publishing to a queue: every message arrives, in batches the service accepts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pointsflow_core::ports::{PipelineMessage, Publish, QueueError, Redelivery};

use crate::request;

/// Reads back every message body the queue holds (removing them).
pub type Drain = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

pub struct Queue {
    pub publish: Arc<dyn Publish>,
    pub drain: Drain,
    /// The same queue's redelivery, with a dead-letter queue.
    pub redelivery: Arc<dyn Redelivery>,
    /// Reads back (removing) what the dead-letter queue holds.
    pub drain_dead_letters: Drain,
    /// The same queue without a dead-letter queue.
    pub without_dead_letters: Arc<dyn Redelivery>,
}

pub async fn run_all(queue: &Queue) {
    every_message_arrives_whatever_the_count(queue).await;
    a_message_dead_lettered_is_in_the_dead_letter_queue_only(queue).await;
}

pub async fn a_message_dead_lettered_is_in_the_dead_letter_queue_only(queue: &Queue) {
    let body = r#"{"request_id":"pr_given_up"}"#;
    queue.redelivery.dead_letter(body).await.unwrap();
    assert_eq!((queue.drain_dead_letters)().await, [body]);
    assert!((queue.drain)().await.is_empty(), "the queue itself got it");
    let refused = queue.without_dead_letters.dead_letter(body).await;
    assert!(
        matches!(refused, Err(QueueError::Refused(_))),
        "{refused:?}"
    );
}

pub async fn every_message_arrives_whatever_the_count(queue: &Queue) {
    let messages: Vec<PipelineMessage> = (0..25)
        .map(|i| PipelineMessage {
            request_id: request(&format!("queue-{i}")).id,
        })
        .collect();
    queue.publish.publish(&messages).await.unwrap();
    queue.publish.publish(&messages[..1]).await.unwrap();
    let mut got = (queue.drain)().await;
    got.sort();
    let mut want: Vec<String> = messages
        .iter()
        .chain(&messages[..1])
        .map(|m| serde_json::to_string(m).unwrap())
        .collect();
    want.sort();
    assert_eq!(got, want, "messages were lost or altered");
}
