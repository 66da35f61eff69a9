//! An event-source mapping: polls a queue and invokes a handler with SQS
//! events the way Lambda does. Messages named in `batchItemFailures` stay on
//! the queue (visible again after the timeout); the rest are deleted. A failed
//! invocation, or a response naming an id that was not in the batch, leaves
//! the whole batch on the queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use tokio_util::sync::CancellationToken;

use pointsflow_memory::{MemoryQueue, ReceivedMessage};

#[derive(Debug, Clone)]
pub struct MappingConfig {
    /// Messages per invocation, 1 to 10.
    pub batch_size: usize,
    /// Invocations in flight at once.
    pub concurrency: usize,
    /// The function timeout, given to handlers as the invocation deadline.
    pub function_timeout: Duration,
    /// The function's name, for the context's ARN and logs.
    pub function_name: String,
}

#[derive(Debug)]
pub struct EventSourceMapping {
    queue: Arc<MemoryQueue>,
    config: MappingConfig,
}

fn to_sqs_message(queue: &MemoryQueue, m: ReceivedMessage) -> SqsMessage {
    let mut out = SqsMessage::default();
    out.message_id = Some(m.message_id);
    out.receipt_handle = Some(m.receipt_handle);
    out.body = Some(m.body);
    out.attributes.insert(
        "ApproximateReceiveCount".into(),
        m.receive_count.to_string(),
    );
    out.attributes.insert(
        "SentTimestamp".into(),
        m.sent_at.timestamp_millis().to_string(),
    );
    out.event_source = Some("aws:sqs".into());
    out.event_source_arn = Some(queue.arn());
    out.aws_region = Some("local".into());
    out
}

impl EventSourceMapping {
    pub fn new(queue: Arc<MemoryQueue>, config: MappingConfig) -> Self {
        Self { queue, config }
    }

    /// Runs until `shutdown` is cancelled; in-flight invocations finish first.
    pub async fn run<H, F>(self, handler: H, shutdown: CancellationToken)
    where
        H: Fn(LambdaEvent<SqsEvent>) -> F + Send + Sync + Clone + 'static,
        F: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send,
    {
        // Dropping this future (an aborted task: a crash) aborts the
        // workers mid-invocation; their messages come back after the
        // visibility timeout, as after a Lambda crash.
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..self.config.concurrency.max(1) {
            let queue = self.queue.clone();
            let config = self.config.clone();
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            workers.spawn(async move {
                let mut invocation: u64 = 0;
                loop {
                    let received = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = queue.receive(config.batch_size, Duration::from_secs(1)) => r,
                    };
                    let messages = match received {
                        Ok(m) if m.is_empty() => continue,
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(queue = %queue.name(), error = %e, "receive failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    invocation += 1;
                    invoke(&queue, &config, &handler, messages, worker, invocation).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }
}

async fn invoke<H, F>(
    queue: &MemoryQueue,
    config: &MappingConfig,
    handler: &H,
    messages: Vec<ReceivedMessage>,
    worker: usize,
    invocation: u64,
) where
    H: Fn(LambdaEvent<SqsEvent>) -> F,
    F: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
{
    let handles: Vec<(String, String)> = messages
        .iter()
        .map(|m| (m.message_id.clone(), m.receipt_handle.clone()))
        .collect();
    let mut event = SqsEvent::default();
    event.records = messages
        .into_iter()
        .map(|m| to_sqs_message(queue, m))
        .collect();
    let failed = super::invoke_sqs_handler(
        &config.function_name,
        format!("{}-{worker}-{invocation}", config.function_name),
        config.function_timeout,
        event,
        handler,
    )
    .await;
    for (message_id, handle) in &handles {
        if failed.contains(message_id) {
            continue;
        }
        if let Err(e) = queue.delete(handle) {
            tracing::warn!(queue = %queue.name(), %message_id, error = %e, "could not delete a processed message");
        }
    }
}
