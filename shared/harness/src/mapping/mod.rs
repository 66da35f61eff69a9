//! Event-source mappings: what runs a queue's handler outside Lambda, with
//! Lambda's semantics (batches, a deadline per invocation, partial batch
//! failures, a whole batch retried when the invocation fails): over the
//! embedded queue ([`embedded`]) and over SQS ([`sqs`]).

pub mod embedded;
pub mod sqs;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_runtime::SqsHandler;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use embedded::{EventSourceMapping, MappingConfig};
pub use sqs::SqsMappingConfig;

/// Runs an embedded queue's mapping over `handler` until `shutdown`.
pub fn spawn_embedded<H: SqsHandler>(
    mapping: EventSourceMapping,
    handler: H,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        mapping
            .run(
                move |event| {
                    let handler = handler.clone();
                    async move { handler.handle_batch(event).await }
                },
                shutdown,
            )
            .await;
    })
}

/// Runs an SQS queue's mapping over `handler` until `shutdown`.
pub fn spawn_sqs<H: SqsHandler>(
    client: aws_sdk_sqs::Client,
    config: SqsMappingConfig,
    handler: H,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(sqs::run(
        client,
        config,
        move |event| {
            let handler = handler.clone();
            async move { handler.handle_batch(event).await }
        },
        shutdown,
    ))
}

/// Invokes `handler` with `event` the way Lambda's SQS event-source mapping
/// does: with a context whose deadline is `timeout` away, cut off after it.
/// Returns the ids of the messages that stay on the queue: those the
/// response names in `batchItemFailures`, or every message when the
/// invocation failed, timed out, or named an id that was not in the batch.
pub async fn invoke_sqs_handler<H, F>(
    function: &str,
    invocation: String,
    timeout: Duration,
    event: SqsEvent,
    handler: &H,
) -> HashSet<String>
where
    H: Fn(LambdaEvent<SqsEvent>) -> F,
    F: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
{
    let all: HashSet<String> = event
        .records
        .iter()
        .filter_map(|r| r.message_id.clone())
        .collect();
    let mut context = Context::default();
    context.request_id = invocation;
    context.invoked_function_arn = format!("arn:aws:lambda:local:000000000000:function:{function}");
    let deadline = chrono::Utc::now() + timeout;
    context.deadline = u64::try_from(deadline.timestamp_millis()).unwrap_or(0);
    match tokio::time::timeout(timeout, handler(LambdaEvent::new(event, context))).await {
        Ok(Ok(response)) => {
            let named: HashSet<String> = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            if named.is_subset(&all) {
                named
            } else {
                tracing::error!(
                    function,
                    "batch response names an unknown message id: retrying the whole batch"
                );
                all
            }
        }
        Ok(Err(e)) => {
            tracing::error!(function, error = %e, "invocation failed: retrying the whole batch");
            all
        }
        Err(_) => {
            tracing::error!(function, "invocation timed out: retrying the whole batch");
            all
        }
    }
}
