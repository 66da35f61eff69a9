//! Resolving what the partner has not settled, and what the pipeline
//! stopped moving: on a schedule, every request or window credit whose
//! outcome has been `unknown` or `partner_pending` for longer than
//! [`Resolution::after`] goes back on the dispatch queue, where it is looked
//! up under its own reference (never sent under a new one) and settles; and
//! every request still `received`, `reserved` or `dispatching` longer than
//! [`Resolution::stalled_after`] after its round began goes back to
//! eligibility (`received`) or dispatch (the others), unless it waits on a
//! partner whose circuit is open. A message that was given up on (in the
//! dead-letter queue), or never sent, is thereby picked up again. Each run
//! reports the age of the oldest of each kind, as metrics the stack's
//! alarms watch.

use std::collections::HashMap;
use std::time::Duration;

use pointsflow_core::governance::CircuitState;
use pointsflow_core::ports::{PipelineMessage, PublishError, QueueError, StoreError};
use pointsflow_core::request::StatusKind;
use pointsflow_core::unsettled::{Unsettled, UnsettledItem, is_in_progress};
use pointsflow_core::values::PartnerId;
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
    /// A request in progress for longer than this is queued again (what
    /// is younger is still in its own message's retries).
    pub stalled_after: Duration,
    /// The stack the metric is reported for (`Stack` dimension); no metric
    /// line is written without one (the local stack logs instead).
    pub metric_stack: Option<String>,
}

impl Default for Resolution {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(300),
            stalled_after: Duration::from_secs(900),
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
    /// Requests in progress past `stalled_after`, queued again (or left
    /// for a partner whose circuit is open).
    pub stalled: usize,
    /// How long the oldest of them has been in progress (0 when none).
    pub oldest_stalled_age_seconds: u64,
}

impl Dispatch {
    /// Queues every request and credit unsettled for longer than
    /// [`Resolution::after`] for another look-up, and every request in
    /// progress for longer than [`Resolution::stalled_after`] to the stage
    /// it stopped at, and reports the oldest of each.
    pub async fn resolve_unsettled(&self) -> Result<ResolveReport, ResolveRunError> {
        let now = self.ports.clock.now();
        let cut =
            |d: Duration| now - chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        let (unsettled_cut, stalled_cut) = (
            cut(self.resolution.after),
            cut(self.resolution.stalled_after),
        );
        let before = unsettled_cut.max(stalled_cut);
        let mut found: Vec<Unsettled> = self
            .ports
            .unsettled_requests
            .unsettled(before, PER_RUN)
            .await?;
        found.extend(self.ports.windows.unsettled(before, PER_RUN).await?);
        found.sort();
        found.truncate(PER_RUN);
        let mut requests = Vec::new();
        let mut decide = Vec::new();
        let mut credits = Vec::new();
        let mut unsettled_since = Vec::new();
        let mut stalled_since = Vec::new();
        // Each partner's circuit is read once per run, however many wait on it.
        let mut down: HashMap<PartnerId, bool> = HashMap::new();
        for u in &found {
            match &u.item {
                UnsettledItem::Request(id) => {
                    // The index does not say which kind: the request does.
                    let Some(request) = self.ports.get.get(id).await? else {
                        continue;
                    };
                    let message = PipelineMessage {
                        request_id: id.clone(),
                    };
                    if is_in_progress(&request) {
                        if u.since >= stalled_cut {
                            continue;
                        }
                        stalled_since.push(u.since);
                        if request.state() == StatusKind::Received {
                            decide.push(message);
                        } else if !self.partner_down(&request, &mut down).await {
                            requests.push(message);
                        }
                    } else if u.since < unsettled_cut {
                        unsettled_since.push(u.since);
                        requests.push(message);
                    }
                }
                UnsettledItem::Credit(id) => {
                    if u.since < unsettled_cut {
                        unsettled_since.push(u.since);
                        credits.push(WindowWork::Credit { credit: id.clone() });
                    }
                }
            }
        }
        if !decide.is_empty() {
            self.ports.eligibility.publish(&decide).await?;
        }
        if !requests.is_empty() {
            self.ports.requeue.publish(&requests).await?;
        }
        if !credits.is_empty() {
            self.ports.work.publish_work(&credits).await?;
        }
        let age = |since: &[chrono::DateTime<chrono::Utc>]| {
            since
                .iter()
                .min()
                .map(|s| u64::try_from((now - *s).num_seconds()).unwrap_or(0))
                .unwrap_or(0)
        };
        let report = ResolveReport {
            requeued: unsettled_since.len(),
            oldest_age_seconds: age(&unsettled_since),
            stalled: stalled_since.len(),
            oldest_stalled_age_seconds: age(&stalled_since),
        };
        if report.requeued > 0 {
            tracing::warn!(
                requeued = report.requeued,
                oldest_age_seconds = report.oldest_age_seconds,
                "unsettled credits queued again for a look-up"
            );
        }
        if report.stalled > 0 {
            tracing::warn!(
                stalled = report.stalled,
                received = decide.len(),
                oldest_stalled_age_seconds = report.oldest_stalled_age_seconds,
                "requests in progress too long queued again"
            );
        }
        if let Some(stack) = &self.resolution.metric_stack {
            println!("{}", metric_line(stack, &report, now.timestamp_millis()));
        }
        Ok(report)
    }

    /// Whether `request` waits on a partner whose circuit is open: its
    /// message is held back on the queue, and another would only be held
    /// back too. A circuit that cannot be read counts as closed. `known`
    /// keeps what this run has read.
    async fn partner_down(
        &self,
        request: &pointsflow_core::request::PointsRequest,
        known: &mut HashMap<PartnerId, bool>,
    ) -> bool {
        let Some(destination) = &request.destination else {
            return false;
        };
        if let Some(down) = known.get(&destination.partner) {
            return *down;
        }
        let down = self
            .ports
            .circuits
            .circuit(&destination.partner)
            .await
            .is_ok_and(|c| c.state != CircuitState::Closed);
        known.insert(destination.partner.clone(), down);
        down
    }
}

/// The run's figures in CloudWatch's embedded metric format: a log line
/// CloudWatch turns into the metrics `UnsettledOldestAgeSeconds`,
/// `UnsettledRequeued`, `StalledOldestAgeSeconds` and `StalledRequeued`
/// (namespace `pointsflow`, dimension `Stack`).
pub fn metric_line(stack: &str, report: &ResolveReport, timestamp_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "pointsflow",
                "Dimensions": [["Stack"]],
                "Metrics": [
                    {"Name": "UnsettledOldestAgeSeconds", "Unit": "Seconds"},
                    {"Name": "UnsettledRequeued", "Unit": "Count"},
                    {"Name": "StalledOldestAgeSeconds", "Unit": "Seconds"},
                    {"Name": "StalledRequeued", "Unit": "Count"}
                ]
            }]
        },
        "Stack": stack,
        "UnsettledOldestAgeSeconds": report.oldest_age_seconds,
        "UnsettledRequeued": report.requeued,
        "StalledOldestAgeSeconds": report.oldest_stalled_age_seconds,
        "StalledRequeued": report.stalled,
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
                stalled: 1,
                oldest_stalled_age_seconds: 1_000,
            },
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "pointsflow");
        assert_eq!(v["Stack"], "prod");
        assert_eq!(v["UnsettledOldestAgeSeconds"], 4_000);
        assert_eq!(v["UnsettledRequeued"], 3);
        assert_eq!(v["StalledOldestAgeSeconds"], 1_000);
    }
}
