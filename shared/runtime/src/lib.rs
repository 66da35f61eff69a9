//! What every pointsflow Lambda shares: processing an SQS batch record by
//! record (one bad message never fails its neighbours) and the invocation's
//! remaining time.

pub mod catalog;

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_core::ports::{PipelineMessage, Publish, RequestGet, StoreError};
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

fn parse<M: serde::de::DeserializeOwned>(record: &SqsMessage) -> Result<M, RecordError> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| RecordError::Poison("the message has no body".into()))?;
    serde_json::from_str(body).map_err(|e| RecordError::Poison(format!("unreadable body: {e}")))
}

/// Runs `process` on every record of the batch concurrently and reports the
/// records that failed, by message id, as `batchItemFailures`.
pub async fn process_batch<M, F, Fut>(
    function: &str,
    event: SqsEvent,
    process: F,
) -> SqsBatchResponse
where
    M: serde::de::DeserializeOwned,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let outcomes = run_records(&event, process).await;
    respond(function, &event, outcomes)
}

/// [`process_batch`] for a stage that hands requests on to the next queue:
/// `process` returns the message to forward, if any, and every message of
/// the batch goes in one `publish` (one `SendMessageBatch` per ten on SQS)
/// once all records are processed. A record whose message could not be sent
/// is reported as failed, so its redelivery forwards it again; forwarding is
/// the record's last step and the next stage ignores duplicates.
pub async fn process_batch_forwarding<F, Fut>(
    function: &str,
    event: SqsEvent,
    next: &dyn Publish,
    process: F,
) -> SqsBatchResponse
where
    F: Fn(PipelineMessage) -> Fut,
    Fut: Future<Output = Result<Option<PipelineMessage>, RecordError>>,
{
    let outcomes = run_records(&event, process).await;
    // A message delivered twice in one batch is forwarded once.
    let mut forward: Vec<PipelineMessage> = Vec::new();
    for message in outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().and_then(Option::as_ref))
    {
        if !forward.contains(message) {
            forward.push(message.clone());
        }
    }
    let unsent: Vec<(RequestId, String)> = if forward.is_empty() {
        Vec::new()
    } else {
        match next.publish(&forward).await {
            Ok(()) => Vec::new(),
            Err(e) => e
                .failed
                .iter()
                .map(|id| (id.clone(), e.reason.clone()))
                .collect(),
        }
    };
    let outcomes = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(Some(message)) => match unsent.iter().find(|(id, _)| *id == message.request_id) {
                Some((_, reason)) => Err(RecordError::Retry(format!("next queue: {reason}"))),
                None => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        })
        .collect();
    respond(function, &event, outcomes)
}

async fn run_records<M, F, Fut, T>(event: &SqsEvent, process: F) -> Vec<Result<T, RecordError>>
where
    M: serde::de::DeserializeOwned,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<T, RecordError>>,
{
    join_all(event.records.iter().map(|record| {
        let parsed = parse(record);
        let process = &process;
        async move {
            match parsed {
                Ok(message) => process(message).await,
                Err(e) => Err(e),
            }
        }
    }))
    .await
}

fn respond(
    function: &str,
    event: &SqsEvent,
    outcomes: Vec<Result<(), RecordError>>,
) -> SqsBatchResponse {
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

    /// A queue that refuses the messages for the ids it is given, and
    /// records every publish call.
    struct Refusing {
        refuse: Vec<&'static str>,
        calls: std::sync::Mutex<Vec<Vec<RequestId>>>,
    }

    #[async_trait::async_trait]
    impl Publish for Refusing {
        async fn publish(
            &self,
            messages: &[PipelineMessage],
        ) -> Result<(), pointsflow_core::ports::PublishError> {
            self.calls
                .lock()
                .unwrap()
                .push(messages.iter().map(|m| m.request_id.clone()).collect());
            let failed: Vec<RequestId> = messages
                .iter()
                .map(|m| m.request_id.clone())
                .filter(|id| self.refuse.contains(&id.as_str()))
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(pointsflow_core::ports::PublishError {
                    failed,
                    total: messages.len(),
                    reason: "throttled".into(),
                })
            }
        }
    }

    fn id(n: u8) -> String {
        format!("pr_{:032x}", n)
    }

    fn record(message_id: &str, request: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(message_id.into());
        m.body = Some(format!(r#"{{"request_id":"{request}"}}"#));
        m
    }

    #[tokio::test]
    async fn a_batch_forwards_in_one_publish_and_fails_only_the_records_not_sent() {
        let refused = Box::leak(id(2).into_boxed_str());
        let queue = Refusing {
            refuse: vec![refused],
            calls: Default::default(),
        };
        let mut event = SqsEvent::default();
        event.records = vec![
            record("m1", &id(1)),
            record("m2", &id(2)),
            record("m3", &id(3)),
            record("m3-again", &id(3)),
            record("m4", &id(4)),
            record("m5", "not an id"),
        ];
        let response = process_batch_forwarding("test", event, &queue, |m| async move {
            match m.request_id.as_str() {
                // Decided, nothing to forward.
                r if r == id(4) => Ok(None),
                _ => Ok(Some(m)),
            }
        })
        .await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, ["m2", "m5"]);
        let calls = queue.calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "one publish for the whole batch");
        let sent: Vec<&str> = calls[0].iter().map(|i| i.as_str()).collect();
        assert_eq!(sent, [id(1), id(2), id(3)], "each request once");
    }
}
