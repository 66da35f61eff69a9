//! One SQS queue in every role a handler takes: publishing pipeline
//! messages, window work and callbacks (`SendMessageBatch` in chunks of 10;
//! entries the service failed are sent once more, and any still failing
//! are reported, by request id where there is one: no message is dropped
//! silently), and putting a received message back for a retry
//! (`ChangeMessageVisibility`) or sending it again later (`DelaySeconds`).

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{
    PipelineMessage, Publish, PublishCallback, PublishError, PublishWork, QueueError, Redelivery,
};
use pointsflow_core::values::RequestId;
use pointsflow_core::window::WindowWork;

/// SQS takes at most 10 entries per batch.
const MAX_BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: None,
        }
    }

    /// The queue's dead-letter queue, for [`Redelivery::dead_letter`].
    pub fn with_dead_letter(mut self, url: Option<String>) -> Self {
        self.dead_letter_url = url;
        self
    }

    /// Sends one batch of at most ten bodies; returns the positions of
    /// those that were not accepted, with why.
    async fn send_bodies(&self, bodies: &[String]) -> Vec<(usize, String)> {
        let mut entries = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            match SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
            {
                Ok(entry) => entries.push(entry),
                Err(e) => return (0..bodies.len()).map(|i| (i, e.to_string())).collect(),
            }
        }
        let sent = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(out) => out
                .failed()
                .iter()
                .filter_map(|f| {
                    let i = f.id().parse::<usize>().ok().filter(|i| *i < bodies.len())?;
                    Some((i, format!("{}: {}", f.code(), f.message().unwrap_or(""))))
                })
                .collect(),
            Err(e) => {
                let why = DisplayErrorContext(e).to_string();
                (0..bodies.len()).map(|i| (i, why.clone())).collect()
            }
        }
    }

    /// Sends `messages` in batches of ten; entries the service failed are
    /// sent once more. Returns those still not sent, with why.
    async fn send_all<M: serde::Serialize + Clone>(&self, messages: &[M]) -> Vec<(M, String)> {
        let mut failed = Vec::new();
        for chunk in messages.chunks(MAX_BATCH) {
            let encoded: Result<Vec<String>, _> = chunk.iter().map(serde_json::to_string).collect();
            let bodies = match encoded {
                Ok(b) => b,
                Err(e) => {
                    failed.extend(chunk.iter().map(|m| (m.clone(), e.to_string())));
                    continue;
                }
            };
            let first = self.send_bodies(&bodies).await;
            if first.is_empty() {
                continue;
            }
            let again: Vec<String> = first.iter().map(|(i, _)| bodies[*i].clone()).collect();
            for (j, why) in self.send_bodies(&again).await {
                let i = first[j].0;
                failed.push((chunk[i].clone(), why));
            }
        }
        failed
    }
}

#[async_trait]
impl Publish for SqsQueue {
    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    async fn publish(&self, messages: &[PipelineMessage]) -> Result<(), PublishError> {
        let mut failed: Vec<RequestId> = Vec::new();
        let mut cause = QueueError::Unavailable(String::new());
        for (message, why) in self.send_all(messages).await {
            tracing::error!(request_id = %message.request_id, %why, "message not sent");
            failed.push(message.request_id);
            cause = QueueError::Unavailable(why);
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
impl PublishWork for SqsQueue {
    #[tracing::instrument(skip_all, fields(messages = work.len()))]
    async fn publish_work(&self, work: &[WindowWork]) -> Result<(), QueueError> {
        let failed = self.send_all(work).await;
        match failed.first() {
            None => Ok(()),
            Some((_, why)) => Err(QueueError::Unavailable(format!(
                "{} of {} window messages not sent: {why}",
                failed.len(),
                work.len()
            ))),
        }
    }
}

/// Whole seconds, rounded up, at most `max`.
fn seconds(delay: std::time::Duration, max: u64) -> i32 {
    i32::try_from(delay.as_millis().div_ceil(1_000).min(u128::from(max))).unwrap_or(0)
}

#[async_trait]
impl Redelivery for SqsQueue {
    async fn retry_after(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            // SQS allows up to 12 hours.
            .visibility_timeout(seconds(delay, 43_200))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))
    }

    async fn send_later(&self, body: &str, delay: std::time::Duration) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(seconds(delay, 900))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))
    }

    async fn dead_letter(&self, body: &str) -> Result<(), QueueError> {
        let Some(url) = &self.dead_letter_url else {
            return Err(QueueError::Refused(
                "the queue's dead-letter queue is not known to this function".into(),
            ));
        };
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Unavailable(DisplayErrorContext(e).to_string()))
    }
}

#[async_trait]
impl PublishCallback for SqsQueue {
    async fn publish_callback(&self, message: &CallbackMessage) -> Result<(), QueueError> {
        let body = serde_json::to_string(message)
            .map_err(|e| QueueError::Refused(format!("cannot encode the callback: {e}")))?;
        match self.send_bodies(std::slice::from_ref(&body)).await.first() {
            None => Ok(()),
            Some((_, why)) => Err(QueueError::Unavailable(why.clone())),
        }
    }
}
