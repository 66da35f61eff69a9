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
//!
//! A request moving straight on from its receipt is not in the unsettled
//! index while in progress (`pointsflow_core::unsettled`): each run first
//! reads the requests of every hour that ended at least `stalled_after`
//! ago and that it has not read yet, in order, from the mark it keeps, and
//! marks any still in progress `stalled`, which puts it in the index. So
//! such a request is found at most an hour later than one in the index.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use pointsflow_core::governance::CircuitState;
use pointsflow_core::ports::{PipelineMessage, PublishError, QueueError, StoreError};
use pointsflow_core::reconcile::{Scope, hour_of};
use pointsflow_core::request::StatusKind;
use pointsflow_core::unsettled::{
    SweepMark, Unsettled, UnsettledItem, is_in_progress, left_to_the_sweep,
};
use pointsflow_core::values::PartnerId;
use pointsflow_core::values::RequestId;
use pointsflow_core::window::WindowWork;
use serde::Serialize;

use crate::Dispatch;

/// Items looked at per run, at most (the oldest first).
const PER_RUN: usize = 1_000;

/// Requests the sweep reads per run, at most; it goes on from its mark in
/// the next run. At one run every 5 minutes (`ResolveUnsettledEvery`), a
/// stack receiving more than about 1,600 requests a second around the
/// clock falls behind (`SweepLagSeconds` grows); a run a minute keeps up
/// with five times that.
const SWEEP_PER_RUN: usize = 500_000;

/// Requests the sweep asks the store for at once.
const SWEEP_PAGE: usize = 1_000;

/// How far back the sweep starts on a stack that has no mark yet (a new
/// stack, or one upgraded from a release that indexed every request in
/// progress).
const FIRST_SWEEP: TimeDelta = TimeDelta::days(1);

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
    /// Requests the sweep read this run, and how many of them it found
    /// still in progress (marked stalled, and counted in `stalled` once
    /// the index shows them).
    pub swept: usize,
    pub found_stalled: usize,
    /// How far the sweep is behind: from the start of the first hour it
    /// has not finished reading to the last hour it may read (0 when it is
    /// up to date).
    pub sweep_lag_seconds: u64,
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
        let sweep = self.sweep(stalled_cut).await?;
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
            swept: sweep.read,
            found_stalled: sweep.found,
            sweep_lag_seconds: sweep.lag_seconds,
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

    /// Reads the requests of every hour that ended before `stalled_cut`
    /// and that the kept mark says are not read yet, up to
    /// [`SWEEP_PER_RUN`], and marks those still in progress (and left to
    /// the sweep) `stalled`. The mark moves on only past a page read and
    /// marked, so a run that stops part way reads that page again next.
    async fn sweep(&self, stalled_cut: DateTime<Utc>) -> Result<Swept, ResolveRunError> {
        // Every hour before this one ended `stalled_after` ago or more.
        let due = hour_of(stalled_cut);
        let mut mark = self.ports.sweep.sweep_mark().await?.unwrap_or(SweepMark {
            from: due - FIRST_SWEEP,
            to: due,
            cursor: None,
        });
        let mut swept = Swept::default();
        while swept.read < SWEEP_PER_RUN {
            if mark.cursor.is_none() && mark.from >= mark.to {
                if mark.to >= due {
                    break;
                }
                mark = SweepMark {
                    from: mark.to,
                    to: due,
                    cursor: None,
                };
            }
            let scope = Scope::Period {
                from: mark.from,
                to: mark.to,
                program: None,
            };
            let page = self
                .ports
                .lines
                .lines(&scope, mark.cursor.as_deref(), SWEEP_PAGE)
                .await?;
            swept.read += page.lines.len();
            for line in &page.lines {
                if line.state.is_moving_on() && self.mark_stalled(&line.id).await? {
                    swept.found += 1;
                }
            }
            match page.next {
                Some(next) => mark.cursor = Some(next),
                None => {
                    mark.cursor = None;
                    mark.from = mark.to;
                }
            }
            // Kept page by page: a run cut off by its timeout loses at
            // most a page.
            self.ports.sweep.keep_sweep_mark(&mark).await?;
        }
        swept.lag_seconds = u64::try_from((due - mark.from).num_seconds()).unwrap_or(0);
        if swept.found > 0 {
            tracing::warn!(
                found = swept.found,
                "requests still in progress an hour after the one they count for: marked stalled"
            );
        }
        Ok(swept)
    }

    /// Marks request `id` `stalled` if it is still in progress and left
    /// to the sweep (read again: the page may be a moment old); true when
    /// it did.
    async fn mark_stalled(&self, id: &RequestId) -> Result<bool, ResolveRunError> {
        let mut tries = 0;
        loop {
            let Some(mut request) = self.ports.get.get(id).await? else {
                return Ok(false);
            };
            if !is_in_progress(&request) || !left_to_the_sweep(&request) {
                return Ok(false);
            }
            request.stalled = true;
            match self.ports.update.update(&request).await {
                Ok(_) => return Ok(true),
                // It moved on meanwhile: look again, a few times (the next
                // run reads the page again).
                Err(StoreError::Conflict { .. }) if tries < 4 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
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

/// What a run's sweep did.
#[derive(Debug, Default)]
struct Swept {
    read: usize,
    found: usize,
    lag_seconds: u64,
}

/// The run's figures in CloudWatch's embedded metric format: a log line
/// CloudWatch turns into the metrics `UnsettledOldestAgeSeconds`,
/// `UnsettledRequeued`, `StalledOldestAgeSeconds`, `StalledRequeued` and
/// `SweepLagSeconds` (namespace `pointsflow`, dimension `Stack`).
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
                    {"Name": "StalledRequeued", "Unit": "Count"},
                    {"Name": "SweepLagSeconds", "Unit": "Seconds"}
                ]
            }]
        },
        "Stack": stack,
        "UnsettledOldestAgeSeconds": report.oldest_age_seconds,
        "UnsettledRequeued": report.requeued,
        "StalledOldestAgeSeconds": report.oldest_stalled_age_seconds,
        "StalledRequeued": report.stalled,
        "SweepLagSeconds": report.sweep_lag_seconds,
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
                swept: 50,
                found_stalled: 1,
                sweep_lag_seconds: 0,
            },
            1_700_000_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "pointsflow");
        assert_eq!(v["Stack"], "prod");
        assert_eq!(v["UnsettledOldestAgeSeconds"], 4_000);
        assert_eq!(v["UnsettledRequeued"], 3);
        assert_eq!(v["StalledOldestAgeSeconds"], 1_000);
        assert_eq!(v["SweepLagSeconds"], 0);
    }
}
