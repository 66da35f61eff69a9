//! What every pointsflow Lambda does around its work: processing an SQS
//! batch record by record (one bad message never fails its neighbours, and
//! every failure says what happens next: [`RecordError`]), retries with
//! capped exponential backoff, the invocation's remaining time, masked logs
//! ([`masking`]) and metrics ([`metrics`]).

pub mod masking;
pub mod metrics;

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use lambda_runtime::{Context, LambdaEvent};
use pointsflow_core::ports::{PipelineMessage, Publish, Redelivery, RequestGet, StoreError};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::values::RequestId;

/// A Lambda function fed by an SQS event-source mapping.
pub trait SqsHandler: Clone + Send + Sync + 'static {
    fn handle_batch(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> impl Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send;
}

/// Why a record was not processed. The message stays on the queue, to be
/// retried (after its visibility timeout, or the delay the handler's
/// [`Backoff`] gives it) and, past the receive limit, moved to the
/// dead-letter queue where an operator sees it; except a deferred one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Worth retrying: a conflict, a throttle, an outage, an unsettled partner answer.
    Retry(String),
    /// Worth retrying after this long at the earliest (a partner's Retry-After).
    RetryAfter(Duration, String),
    /// Nothing was attempted and nothing can be for this long (a partner's
    /// circuit is open): the message is sent again to arrive then, so the
    /// wait does not count towards the receive limit and never ends in the
    /// dead-letter queue.
    Defer(Duration, String),
    /// The message itself is bad; retrying will not help.
    Poison(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Retry(s) => write!(f, "retry: {s}"),
            RecordError::RetryAfter(d, s) => write!(f, "retry after {d:?}: {s}"),
            RecordError::Defer(d, s) => write!(f, "deferred {d:?}: {s}"),
            RecordError::Poison(s) => write!(f, "poison message: {s}"),
        }
    }
}

impl From<StoreError> for RecordError {
    /// A stored item that cannot be read back is not retried: reading it
    /// again gives the same; it waits in the dead-letter queue.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Malformed(_) => RecordError::Poison(format!("request store: {e}")),
            _ => RecordError::Retry(format!("request store: {e}")),
        }
    }
}

/// Reads the request a message names. A missing request is retried: the
/// message may have overtaken the write it announces.
pub async fn load_request(
    store: &dyn RequestGet,
    id: &RequestId,
) -> Result<PointsRequest, RecordError> {
    let request = store
        .get(id)
        .await?
        .ok_or_else(|| RecordError::Retry("request not found".into()))?;
    describe_request(&request);
    Ok(request)
}

/// Puts the request's program, state and source record id on the current
/// span (declared with those fields empty), so every log line about the
/// request carries them.
pub fn describe_request(request: &PointsRequest) {
    let span = tracing::Span::current();
    span.record("program", request.program.as_str());
    span.record("state", request.state().as_str());
    span.record("source_record", request.event.id.as_deref().unwrap_or("-"));
}

fn parse<M: serde::de::DeserializeOwned>(record: &SqsMessage) -> Result<M, RecordError> {
    let body = record
        .body
        .as_deref()
        .ok_or_else(|| RecordError::Poison("the message has no body".into()))?;
    serde_json::from_str(body).map_err(|e| RecordError::Poison(format!("unreadable body: {e}")))
}

/// Runs `process` on every record of the batch concurrently and reports the
/// records that failed, by message id, as `batchItemFailures`, for a stage
/// that hands requests on to the next queue: `process` returns the message to forward, if any, and every message of
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
                .map(|id| (id.clone(), e.cause.to_string()))
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

/// Capped exponential backoff with full jitter: the `n`th retry waits a
/// random time between zero and `min(cap, base * 2^(n-1))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The longest wait before the `attempt`th retry (1 for the first).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// The wait before the `attempt`th retry: uniform in `[0, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// How long SQS can hold a message back: `DelaySeconds` is at most 15 minutes.
pub const MAX_SEND_DELAY: Duration = Duration::from_secs(900);

/// Runs `process` on every record of the batch concurrently and reports the
/// records that failed, by message id, as `batchItemFailures`; and
/// schedules each retry: a `Retry` comes back
/// after [`Backoff::delay`] for its receive count, a `RetryAfter` after its
/// delay, and a `Defer` is sent again to arrive after its delay (and the
/// original reported done). Delays are set on the queue
/// (`ChangeMessageVisibility`, `DelaySeconds`), never slept in the function.
/// A `Poison` record is sent to the queue's dead-letter queue at once and
/// reported done.
pub async fn process_batch_with_backoff<M, F, Fut>(
    function: &str,
    event: SqsEvent,
    backoff: Backoff,
    redelivery: &dyn Redelivery,
    process: F,
) -> SqsBatchResponse
where
    M: serde::de::DeserializeOwned,
    F: Fn(M) -> Fut,
    Fut: Future<Output = Result<(), RecordError>>,
{
    let outcomes = run_records(&event, process).await;
    let mut settled = Vec::with_capacity(outcomes.len());
    for (record, outcome) in event.records.iter().zip(outcomes) {
        settled.push(match outcome {
            Err(RecordError::Defer(delay, why)) => {
                let body = record.body.as_deref().unwrap_or_default();
                match redelivery.send_later(body, delay.min(MAX_SEND_DELAY)).await {
                    Ok(()) => {
                        tracing::info!(function, ?delay, %why, "record deferred: sent again to arrive later");
                        Ok(())
                    }
                    Err(e) => Err(RecordError::Retry(format!("{why}; could not defer it: {e}"))),
                }
            }
            // Never processable: to the dead-letter queue now (an alarm, a
            // redrive), rather than received again until the receive limit
            // or the retention period ends it. If that send fails, the
            // record is left for the queue's own redrive policy.
            Err(RecordError::Poison(why)) => {
                let body = record.body.as_deref().unwrap_or_default();
                match redelivery.dead_letter(body).await {
                    Ok(()) => {
                        tracing::error!(function, %why, "unprocessable record sent to the dead-letter queue");
                        Ok(())
                    }
                    Err(e) => Err(RecordError::Poison(format!(
                        "{why}; could not send it to the dead-letter queue: {e}"
                    ))),
                }
            }
            Err(e @ (RecordError::Retry(_) | RecordError::RetryAfter(..))) => {
                let delay = match &e {
                    RecordError::RetryAfter(d, _) => *d,
                    _ => backoff.delay(receive_count(record)),
                };
                if let Some(handle) = record.receipt_handle.as_deref()
                    && let Err(why) = redelivery.retry_after(handle, delay).await
                {
                    tracing::warn!(function, error = %why, "could not delay the retry; it comes back after the visibility timeout");
                }
                Err(e)
            }
            other => other,
        });
    }
    respond(function, &event, settled)
}

/// How many times the record has been received (1 on the first delivery).
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
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
            RecordError::Retry(detail)
            | RecordError::RetryAfter(_, detail)
            | RecordError::Defer(_, detail) => {
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
    fn backoff_is_capped_exponential_with_full_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(400));
        assert_eq!(b.ceiling(10), Duration::from_secs(2), "capped");
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(4)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
        // Full jitter: spread over the whole range, not bunched at the top.
        assert!(delays.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(600)));
    }

    /// Records what the runtime asked of the queue.
    #[derive(Default)]
    struct Recorded {
        delayed: std::sync::Mutex<Vec<(String, Duration)>>,
        resent: std::sync::Mutex<Vec<(String, Duration)>>,
        dead: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Redelivery for Recorded {
        async fn retry_after(
            &self,
            handle: &str,
            delay: Duration,
        ) -> Result<(), pointsflow_core::ports::QueueError> {
            self.delayed
                .lock()
                .unwrap()
                .push((handle.to_owned(), delay));
            Ok(())
        }
        async fn send_later(
            &self,
            body: &str,
            delay: Duration,
        ) -> Result<(), pointsflow_core::ports::QueueError> {
            self.resent.lock().unwrap().push((body.to_owned(), delay));
            Ok(())
        }
        async fn dead_letter(&self, body: &str) -> Result<(), pointsflow_core::ports::QueueError> {
            if body.contains("stuck") {
                return Err(pointsflow_core::ports::QueueError::Unavailable(
                    "down".into(),
                ));
            }
            self.dead.lock().unwrap().push(body.to_owned());
            Ok(())
        }
    }

    /// A record whose body is `id` as JSON, received `count` times.
    fn received(id: &str, count: u32) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.receipt_handle = Some(format!("rh-{id}"));
        m.body = Some(format!("\"{id}\""));
        m.attributes
            .insert("ApproximateReceiveCount".into(), count.to_string());
        m
    }

    /// A record that can never be processed goes to the dead-letter queue
    /// at once and is done here; if that send fails it is left failed, for
    /// the queue's redrive policy.
    #[tokio::test]
    async fn poison_records_are_dead_lettered_at_once() {
        let mut event = SqsEvent::default();
        event.records = vec![
            received("ok", 1),
            received("given-up", 1),
            received("stuck", 1),
        ];
        let queue = Recorded::default();
        let response = process_batch_with_backoff(
            "test",
            event,
            Backoff::default(),
            &queue,
            |m: String| async move {
                match m.as_str() {
                    "ok" => Ok(()),
                    _ => Err(RecordError::Poison("given up".into())),
                }
            },
        )
        .await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, ["stuck"]);
        assert_eq!(*queue.dead.lock().unwrap(), ["\"given-up\""]);
        assert!(queue.delayed.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn retries_are_delayed_on_the_queue_and_deferrals_sent_again() {
        let mut event = SqsEvent::default();
        event.records = vec![
            received("ok", 1),
            received("retry", 3),
            received("later", 1),
            received("defer", 9),
        ];
        let queue = Recorded::default();
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        };
        let response =
            process_batch_with_backoff("test", event, backoff, &queue, |m: String| async move {
                match m.as_str() {
                    "ok" => Ok(()),
                    "retry" => Err(RecordError::Retry("5xx".into())),
                    "later" => Err(RecordError::RetryAfter(
                        Duration::from_secs(7),
                        "429".into(),
                    )),
                    _ => Err(RecordError::Defer(
                        Duration::from_secs(3_600),
                        "circuit open".into(),
                    )),
                }
            })
            .await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(
            failed,
            ["retry", "later"],
            "a deferred message is done here"
        );
        let delayed = queue.delayed.lock().unwrap().clone();
        assert_eq!(delayed.len(), 2);
        assert_eq!(delayed[0].0, "rh-retry");
        assert!(
            delayed[0].1 <= Duration::from_millis(400),
            "third receive: up to 4 x base"
        );
        assert_eq!(delayed[1], ("rh-later".to_owned(), Duration::from_secs(7)));
        let resent = queue.resent.lock().unwrap().clone();
        assert_eq!(
            resent,
            [("\"defer\"".to_owned(), MAX_SEND_DELAY)],
            "sent again, at most 15 minutes out"
        );
    }

    #[test]
    fn the_margin_never_eats_a_short_invocation() {
        let margin = Duration::from_secs(2);
        // What is left when `remaining` looks, given how long it took to
        // get there (a busy machine takes longer); deadlines are in whole
        // milliseconds.
        let within = |got: Duration, left: Duration, elapsed: Duration, keep: f64| {
            let slack = Duration::from_millis(2);
            let low = left.saturating_sub(elapsed + slack).mul_f64(keep);
            let high = left.mul_f64(keep) + slack;
            assert!(
                got >= low && got <= high,
                "{got:?} not in {low:?}..={high:?}"
            );
        };
        // Short: a quarter is kept back, not the whole margin.
        let started = std::time::Instant::now();
        let short = remaining(&context_with(Duration::from_millis(500)), margin).unwrap();
        within(short, Duration::from_millis(500), started.elapsed(), 0.75);
        // Long: the margin is kept back.
        let started = std::time::Instant::now();
        let long = remaining(&context_with(Duration::from_secs(30)), margin).unwrap();
        within(
            long + margin,
            Duration::from_secs(30),
            started.elapsed(),
            1.0,
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
                    cause: pointsflow_core::ports::QueueError::Unavailable("throttled".into()),
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
