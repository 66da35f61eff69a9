//! The events function on the local stack: the embedded store's stream,
//! read in order as Lambda's stream event-source mapping reads a table's
//! (batches of up to [`BATCH`], a batch retried from the first record not
//! wholly published, after a pause that doubles), handed to the same
//! `Events` handler the deployed function runs; and what `pointsflow
//! events tail` reads of the embedded bus.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use pointsflow_admin::Admin;
use pointsflow_core::events::{Change, DetailType};
use pointsflow_events::Events;
use pointsflow_memory::{MemoryBus, MemoryStream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Records handed to one invocation (the template's `BatchSize`).
pub const BATCH: usize = 100;

/// The events the local bus keeps for `tail` (the oldest are forgotten).
pub const KEPT: usize = 1_000;

/// Where the local stack serves its bus's events (an operator's key).
pub const TAIL_PATH: &str = "/v1/local/events";

/// The most events one `tail` read returns.
const TAIL_PAGE: usize = 500;

/// The pause before a batch is retried, doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs `events` over `stream` until `shutdown`, then publishes what the
/// stream still holds (unless the bus refuses it).
pub fn spawn_events(
    stream: Arc<MemoryStream>,
    events: Events,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // Everything up to the stream's first record is published.
            let batch = stream.read(0, BATCH);
            let Some(last) = batch.last().map(MemoryStream::position_of) else {
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = stream.written() => {}
                }
                continue;
            };
            if !publish_all(&events, batch, &shutdown).await {
                return;
            }
            stream.trim(last);
        }
    })
}

/// Publishes `changes` in order, each batch the bus or the callbacks
/// queue did not wholly take again from its first such change after a
/// pause that doubles, as Lambda retries a stream's batch; false when
/// `shutdown` came first.
pub(crate) async fn publish_all(
    events: &Events,
    mut changes: Vec<Change>,
    shutdown: &CancellationToken,
) -> bool {
    let mut pause = FIRST_PAUSE;
    while !changes.is_empty() {
        let published = events.publish(&changes).await;
        let Some(from) = published.failed_from else {
            return true;
        };
        let at = changes.iter().position(|c| c.position == from).unwrap_or(0);
        changes.drain(..at);
        tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::error!(from, "stopping with changes whose events were not published");
                return false;
            }
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
    true
}

#[derive(Debug, Deserialize)]
pub(crate) struct TailQuery {
    after: Option<u64>,
}

/// `GET /v1/local/events?after=N`: the bus's events numbered after `N`
/// (at most [`TAIL_PAGE`]), each as a rule's target receives it, and the
/// number to ask after next, and how many after `N` are no longer kept
/// (`skipped`); without `after`, none, and the number of the latest
/// (`taken`). Any operator may read them (a viewer reads whole
/// requests already).
pub(crate) async fn tail(
    State((admin, bus)): State<(Admin, Arc<MemoryBus>)>,
    Query(query): Query<TailQuery>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let request = http::Request::from_parts(parts, lambda_http::Body::Empty);
    let allowed = admin.authenticate(&request).and_then(|operator| {
        if operator.roles.is_empty() {
            Err(pointsflow_http::Problem::command(
                "forbidden",
                "this operator holds no role",
                false,
            ))
        } else {
            Ok(operator)
        }
    });
    if let Err(problem) = allowed {
        return crate::stack::lambda_to_axum(problem.into_response());
    }
    let taken = bus.taken();
    let after = query.after.unwrap_or(taken);
    let events = bus.events_after(after, TAIL_PAGE);
    let next = events.last().map_or(after, |(n, _)| *n);
    // Events after `after` the bus no longer keeps.
    let skipped = events.first().map_or(0, |(n, _)| n - after - 1);
    let events: Vec<_> = events
        .iter()
        .map(|(n, e)| e.envelope(&format!("local-{n}"), "000000000000", "local"))
        .collect();
    axum::Json(json!({"events": events, "next": next, "taken": taken, "skipped": skipped}))
        .into_response()
}

/// What `pointsflow events tail` prints, and for how long.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Only events of these detail-types (all when empty).
    pub detail_types: Vec<DetailType>,
    /// Each event whole, as a rule's target receives it, one JSON a line.
    pub json: bool,
    /// Also the events the stack kept from before the command started.
    pub from_start: bool,
    /// Stop after printing this many.
    pub count: Option<usize>,
    /// How often the stack is asked for new events.
    pub every: Duration,
}

/// A detail-type by its name (`Points Credited`), any case.
pub fn detail_type(name: &str) -> Result<DetailType, String> {
    DetailType::ALL
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| {
            let names: Vec<&str> = DetailType::ALL.iter().map(|t| t.as_str()).collect();
            format!("no detail-type '{name}'; one of: {}", names.join(", "))
        })
}

/// One line for an event as a rule's target receives it: when, what,
/// its id, the program, the recipient (a window credit's window), the
/// points, and the member or why.
pub fn tail_line(event: &Value) -> String {
    let d = &event["detail"];
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let whom = if d["recipient"].is_string() {
        &d["recipient"]
    } else {
        &d["window"]
    };
    let points = d["points"]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |p| format!("{p} points"));
    let mut line = format!(
        "{}  {:<26}  {}  {}  {}  {}",
        text(&event["time"]),
        text(&event["detail-type"]),
        text(&d["event_id"]),
        text(&d["program"]),
        text(whom),
        points,
    );
    if let Some(change) = d["change"].as_str() {
        line.push_str(&format!("  {change} {}", text(&d["member"])));
    }
    if let (Some(program), Some(member)) = (d["partner_program"].as_str(), d["member"].as_str()) {
        line.push_str(&format!("  {program} {member}"));
    }
    if let Some(transaction) = d["partner_transaction"].as_str() {
        line.push_str(&format!("  txn {transaction}"));
    }
    if let Some(code) = d["reason"]["code"].as_str() {
        line.push_str(&format!("  ({code})"));
    }
    line
}

/// Prints the local stack's events at `api` as they happen, read with an
/// operator's `key`, until `options.count` are printed (or forever).
pub async fn follow(
    api: &str,
    key: &str,
    options: &TailOptions,
    mut print: impl FnMut(&str),
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let url = format!("{}{TAIL_PATH}", api.trim_end_matches('/'));
    let read = |after: Option<u64>| {
        let url = match after {
            Some(after) => format!("{url}?after={after}"),
            None => url.clone(),
        };
        let request = client.get(url).bearer_auth(key);
        async move {
            let response = request
                .send()
                .await
                .map_err(|e| format!("cannot reach {api}: {e}"))?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .map_err(|e| format!("{api} answered {status} without JSON: {e}"))?;
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(format!(
                    "{api} keeps no events: only `pointsflow dev` on the embedded adapters does (a deployed stack's are on its bus: docs/events.md)"
                ));
            }
            if !status.is_success() {
                return Err(format!(
                    "{api} answered {status}: {}",
                    body["detail"].as_str().unwrap_or_default()
                ));
            }
            Ok(body)
        }
    };
    let mut after = if options.from_start {
        0
    } else {
        read(None).await?["taken"].as_u64().unwrap_or(0)
    };
    let mut printed = 0usize;
    loop {
        let page = read(Some(after)).await?;
        let taken = page["taken"].as_u64().unwrap_or(0);
        if taken < after {
            // The stack started again: its bus counts from 0.
            eprintln!("pointsflow: the stack started again; following its new events");
            after = 0;
            continue;
        }
        let skipped = page["skipped"].as_u64().unwrap_or(0);
        if skipped > 0 {
            eprintln!(
                "pointsflow: {skipped} events came and went between two reads (the stack keeps the latest {KEPT})"
            );
        }
        for event in page["events"].as_array().into_iter().flatten() {
            let kind = event["detail-type"].as_str().unwrap_or_default();
            if !options.detail_types.is_empty()
                && !options.detail_types.iter().any(|t| t.as_str() == kind)
            {
                continue;
            }
            if options.json {
                print(&event.to_string());
            } else {
                print(&tail_line(event));
            }
            printed += 1;
            if options.count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
        let next = page["next"].as_u64().unwrap_or(after);
        if next == after {
            tokio::time::sleep(options.every).await;
        }
        after = next;
    }
}
