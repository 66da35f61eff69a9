//! Publishing pipeline messages to SQS: `SendMessageBatch` in chunks of 10;
//! entries the service failed are sent once more, and any still failing are
//! reported by request id. No message is dropped silently.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use pointsflow_core::ports::{PipelineMessage, Publish, PublishError};
use pointsflow_core::values::RequestId;

/// SQS takes at most 10 entries per batch.
const MAX_BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsPublisher {
    client: Client,
    queue_url: String,
}

impl SqsPublisher {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Sends one batch; returns the messages that were not accepted, with why.
    async fn send(&self, batch: &[PipelineMessage]) -> Vec<(PipelineMessage, String)> {
        let mut entries = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            let built = serde_json::to_string(message)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| e.to_string())
                });
            match built {
                Ok(entry) => entries.push(entry),
                Err(e) => return batch.iter().map(|m| (m.clone(), e.clone())).collect(),
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
                    let message = f.id().parse::<usize>().ok().and_then(|i| batch.get(i))?;
                    let why = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                    Some((message.clone(), why))
                })
                .collect(),
            Err(e) => {
                let why = DisplayErrorContext(e).to_string();
                batch.iter().map(|m| (m.clone(), why.clone())).collect()
            }
        }
    }
}

#[async_trait]
impl Publish for SqsPublisher {
    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    async fn publish(&self, messages: &[PipelineMessage]) -> Result<(), PublishError> {
        let mut failed: Vec<RequestId> = Vec::new();
        let mut reason = String::new();
        for chunk in messages.chunks(MAX_BATCH) {
            let first = self.send(chunk).await;
            if first.is_empty() {
                continue;
            }
            let again: Vec<PipelineMessage> = first.into_iter().map(|(m, _)| m).collect();
            for (message, why) in self.send(&again).await {
                tracing::error!(request_id = %message.request_id, %why, "message not sent");
                failed.push(message.request_id);
                reason = why;
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PublishError {
                failed,
                total: messages.len(),
                reason,
            })
        }
    }
}
