//! Resolving what the partner has not settled: on a schedule, every
//! request or window credit whose outcome has been `unknown` or
//! `partner_pending` for longer than [`Resolution::after`] goes back on the
//! dispatch queue, where it is looked up under its own reference (never
//! sent under a new one) and settles. A message that was given up on (in
//! the dead-letter queue) is thereby picked up again. Each run reports the
//! age of the oldest, as a metric the stack's alarm watches.

use std::time::Duration;

use pointsflow_core::ports::{PipelineMessage, PublishError, QueueError, StoreError};
use pointsflow_core::unsettled::{Unsettled, UnsettledItem};
use pointsflow_core::window::WindowWork;
use serde::Serialize;

use crate::Dispatch;

/// Items looked at per run, at most (the oldest first).
const PER_RUN: usize = 1_000;

/// How unsettled credits are looked after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// What is unsettled for longer than this is queued again (what is
    /// younger is still in its own retries).
    pub after: Duration,
    /// The stack the metric is reported for (`Stack` dimension); no metric
    /// line is written without one (the local stack logs instead).
    pub metric_stack: Option<String>,
}

impl Default for Resolution {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(300),
            metric_stack: None,
        }
    }
}

/// Why a run stopped: the schedule invokes the function again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveRunError {
    #[error("the unsettled index: {0}")]
    Store(#[from] StoreError),
    #[error("the dispatch queue: {0}")]
    Publish(#[from] PublishError),
    #[error("the dispatch queue: {0}")]
    Queue(#[from] QueueError),
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ResolveReport {
    /// Requests and credits queued again for a look-up.
    pub requeued: usize,
    /// How long the oldest of them has been unsettled (0 when none).
    pub oldest_age_seconds: u64,
}

impl Dispatch {
    /// Queues every request and credit unsettled for longer than
    /// [`Resolution::after`] for another look-up, and reports the oldest.
    pub async fn resolve_unsettled(&self) -> Result<ResolveReport, ResolveRunError> {
        let now = self.ports.clock.now();
        let before = now
            - chrono::TimeDelta::from_std(self.resolution.after).unwrap_or(chrono::TimeDelta::MAX);
        let mut found: Vec<Unsettled> = self
            .ports
            .unsettled_requests
            .unsettled(before, PER_RUN)
            .await?;
        found.extend(self.ports.windows.unsettled(before, PER_RUN).await?);
        found.sort();
        found.truncate(PER_RUN);
        let mut requests = Vec::new();
        let mut credits = Vec::new();
        for u in &found {
            match &u.item {
                UnsettledItem::Request(id) => requests.push(PipelineMessage {
                    request_id: id.clone(),
                }),
                UnsettledItem::Credit(id) => {
                    credits.push(WindowWork::Credit { credit: id.clone() })
                }
            }
        }
        if !requests.is_empty() {
            self.ports.requeue.publish(&requests).await?;
        }
        if !credits.is_empty() {
            self.ports.work.publish_work(&credits).await?;
        }
        let oldest_age_seconds = found
            .first()
            .map(|u| u64::try_from((now - u.since).num_seconds()).unwrap_or(0))
            .unwrap_or(0);
        let report = ResolveReport {
            requeued: found.len(),
            oldest_age_seconds,
        };
        if report.requeued > 0 {
            tracing::warn!(
                requeued = report.requeued,
                oldest_age_seconds,
                "unsettled credits queued again for a look-up"
            );
        }
        if let Some(stack) = &self.resolution.metric_stack {
            println!("{}", metric_line(stack, &report, now.timestamp_millis()));
        }
        Ok(report)
    }
}

/// The run's figures in CloudWatch's embedded metric format: a log line
/// CloudWatch turns into the metrics `UnsettledOldestAgeSeconds` and
/// `UnsettledRequeued` (namespace `pointsflow`, dimension `Stack`).
pub fn metric_line(stack: &str, report: &ResolveReport, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "pointsflow",
                "Dimensions": [["Stack"]],
                "Metrics": [
                    {"Name": "UnsettledOldestAgeSeconds", "Unit": "Seconds"},
                    {"Name": "UnsettledRequeued", "Unit": "Count"}
                ]
            }]
        },
        "Stack": stack,
        "UnsettledOldestAgeSeconds": report.oldest_age_seconds,
        "UnsettledRequeued": report.requeued,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_line_is_in_embedded_metric_format() {
        let line = metric_line(
            "prod",
            &ResolveReport {
                requeued: 3,
                oldest_age_seconds: 4_000,
            },
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "pointsflow");
        assert_eq!(v["Stack"], "prod");
        assert_eq!(v["UnsettledOldestAgeSeconds"], 4_000);
        assert_eq!(v["UnsettledRequeued"], 3);
    }
}
