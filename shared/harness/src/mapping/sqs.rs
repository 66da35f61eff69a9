//! An SQS event-source mapping for running the handlers outside Lambda (the
//! local stack on AWS or on the emulator): long-polls a queue, hands each
//! batch to the handler as the `SqsEvent` Lambda would, and deletes the
//! messages the handler did not report in `batchItemFailures`. Failed
//! messages come back after the queue's visibility timeout, and the queue's
//! redrive policy moves them to its dead-letter queue after
//! `maxReceiveCount` receives, as on AWS.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use lambda_runtime::LambdaEvent;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SqsMappingConfig {
    pub queue_url: String,
    pub queue_arn: String,
    /// Messages per invocation, 1 to 10.
    pub batch_size: i32,
    /// Invocations in flight at once.
    pub concurrency: usize,
    pub function_timeout: Duration,
    pub function_name: String,
}

fn to_event_message(config: &SqsMappingConfig, m: &Message) -> SqsMessage {
    let mut out = SqsMessage::default();
    out.message_id = m.message_id().map(str::to_owned);
    out.receipt_handle = m.receipt_handle().map(str::to_owned);
    out.body = m.body().map(str::to_owned);
    if let Some(attributes) = m.attributes() {
        for (name, value) in attributes {
            out.attributes
                .insert(name.as_str().to_owned(), value.clone());
        }
    }
    out.event_source = Some("aws:sqs".into());
    out.event_source_arn = Some(config.queue_arn.clone());
    out
}

/// Runs the mapping until `shutdown` is cancelled; in-flight batches finish first.
pub async fn run<H, F>(
    client: Client,
    config: SqsMappingConfig,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(LambdaEvent<SqsEvent>) -> F + Send + Sync + Clone + 'static,
    F: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send,
{
    // Dropping this future (an aborted task: a crash) aborts the workers
    // mid-invocation; their messages come back after the visibility timeout.
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..config.concurrency.max(1) {
        let (client, config, handler, shutdown) = (
            client.clone(),
            config.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        workers.spawn(async move {
            let mut invocation: u64 = 0;
            loop {
                let received = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = client
                        .receive_message()
                        .queue_url(&config.queue_url)
                        .max_number_of_messages(config.batch_size.clamp(1, 10))
                        .wait_time_seconds(1)
                        .message_system_attribute_names(MessageSystemAttributeName::All)
                        .send() => r,
                };
                let messages = match received {
                    Ok(out) if out.messages().is_empty() => continue,
                    Ok(out) => out.messages().to_vec(),
                    Err(e) => {
                        tracing::error!(function = %config.function_name, error = %DisplayErrorContext(e), "receive failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                invocation += 1;
                invoke(&client, &config, &handler, &messages, worker, invocation).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn invoke<H, F>(
    client: &Client,
    config: &SqsMappingConfig,
    handler: &H,
    messages: &[Message],
    worker: usize,
    invocation: u64,
) where
    H: Fn(LambdaEvent<SqsEvent>) -> F,
    F: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
{
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| to_event_message(config, m))
        .collect();
    let failed = super::invoke_sqs_handler(
        &config.function_name,
        format!("{}-{worker}-{invocation}", config.function_name),
        config.function_timeout,
        event,
        handler,
    )
    .await;
    if failed.len() == messages.len() {
        return;
    }
    let mut entries = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
            continue;
        };
        if failed.contains(id) {
            continue;
        }
        match DeleteMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .receipt_handle(handle)
            .build()
        {
            Ok(entry) => entries.push(entry),
            Err(e) => tracing::error!(error = %e, "cannot build a delete entry"),
        }
    }
    if entries.is_empty() {
        return;
    }
    match client
        .delete_message_batch()
        .queue_url(&config.queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        // A message not deleted is delivered again: handlers are idempotent.
        Ok(out) => {
            for f in out.failed() {
                tracing::warn!(function = %config.function_name, entry = f.id(), code = f.code(), "processed message not deleted; it will be delivered again");
            }
        }
        Err(e) => {
            tracing::warn!(function = %config.function_name, error = %DisplayErrorContext(e), "processed messages not deleted; they will be delivered again")
        }
    }
}
