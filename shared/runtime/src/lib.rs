//! What every pointsflow Lambda shares: processing an SQS batch record by
//! record (one bad message never fails its neighbours) and the invocation's
//! remaining time.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_core::ports::{PipelineMessage, RequestGet, StoreError};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::values::RequestId;

/// A Lambda function fed by an SQS event-source mapping.
pub trait SqsHandler: Clone + Send + Sync + 'static {
    fn handle_batch(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> impl Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send;
}

/// Why a record was not processed. Both leave the message on the queue, to be
/// retried after its visibility timeout and, past the receive limit, moved to
/// the dead-letter queue where an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Worth retrying: a conflict, a throttle, an outage, an unsettled partner answer.
    Retry(String),
    /// The message itself is bad; retrying will not help.
    Poison(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Retry(s) => write!(f, "retry: {s}"),
            RecordError::Poison(s) => write!(f, "poison message: {s}"),
        }
    }
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        RecordError::Retry(format!("request store: {e}"))
    }
}

/// Reads the request a message names. A missing request is retried: the
/// message may have overtaken the write it announces.
pub async fn load_request(
    store: &dyn RequestGet,
    id: &RequestId,
) -> Result<PointsRequest, RecordError> {
    store
        .get(id)
        .await?
        .ok_or_else(|| RecordError::Retry("request not found".into()))
}

fn parse(record: &SqsMessage) -> Result<PipelineMessage, RecordError> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| RecordError::Poison("the message has no body".into()))?;
    serde_json::from_str(body).map_err(|e| RecordError::Poison(format!("unreadable body: {e}")))
}

/// Runs `process` on every record of the batch concurrently and reports the
/// records that failed, by message id, as `batchItemFailures`.
pub async fn process_batch<F, Fut>(function: &str, event: SqsEvent, process: F) -> SqsBatchResponse
where
    F: Fn(PipelineMessage) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let outcomes = join_all(event.records.iter().map(|record| {
        let parsed = parse(record);
        let process = &process;
        async move {
            match parsed {
                Ok(message) => process(message).await,
                Err(e) => Err(e),
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in event.records.iter().zip(outcomes) {
        let Err(error) = outcome else { continue };
        let message_id = record.message_id.clone().unwrap_or_default();
        match &error {
            RecordError::Retry(detail) => {
                tracing::warn!(function, %message_id, %detail, "record left on the queue for a retry")
            }
            RecordError::Poison(detail) => {
                tracing::error!(function, %message_id, %detail, "unprocessable record left for the dead-letter queue")
            }
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// Time left in the invocation, less a margin to record the outcome (at most
/// `margin`, and never more than a quarter of what is left, so a short
/// function still gets most of its time). `None` when the context carries no deadline.
pub fn remaining(context: &Context, margin: Duration) -> Option<Duration> {
    if context.deadline == 0 {
        return None;
    }
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let left = Duration::from_millis(context.deadline.saturating_sub(now));
    Some(left.saturating_sub(margin.min(left / 4)))
}

/// The instant by which the invocation must have recorded its outcomes
/// ([`remaining`] from now). `None` when the context carries no deadline.
pub fn deadline(context: &Context, margin: Duration) -> Option<std::time::Instant> {
    remaining(context, margin).map(|left| std::time::Instant::now() + left)
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
) -> std::collections::HashSet<String>
where
    H: Fn(LambdaEvent<SqsEvent>) -> F,
    F: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
{
    let all: std::collections::HashSet<String> = event
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
            let named: std::collections::HashSet<String> = response
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

#[cfg(test)]
mod tests {
    use super::*;

    fn context_with(left: Duration) -> Context {
        let mut c = Context::default();
        let deadline = chrono::Utc::now() + left;
        c.deadline = u64::try_from(deadline.timestamp_millis()).unwrap_or(0);
        c
    }

    #[test]
    fn the_margin_never_eats_a_short_invocation() {
        let margin = Duration::from_secs(2);
        let short = remaining(&context_with(Duration::from_millis(500)), margin).unwrap();
        assert!(
            short >= Duration::from_millis(300) && short <= Duration::from_millis(400),
            "{short:?}"
        );
        let long = remaining(&context_with(Duration::from_secs(30)), margin).unwrap();
        assert!(
            long >= Duration::from_secs(27) && long <= Duration::from_secs(28),
            "{long:?}"
        );
        assert_eq!(remaining(&Context::default(), margin), None);
    }
}
