//! The events function on the local stack's AWS adapters: the table's
//! DynamoDB stream polled as Lambda's stream event-source mapping polls it
//! (each shard read in order, up to [`BATCH`] records a call, four times a
//! second when idle; a batch whose changes were not wholly published is
//! handed over again from its first such record, after a pause that
//! doubles), its records read as the deployed function reads them
//! (`pointsflow_aws::stream`), and handed to the same `Events` handler.
//!
//! It starts at the stream's latest records: what an earlier run of the
//! stack wrote was that run's to publish.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use pointsflow_aws::stream::{StreamData, StreamEvent, StreamRecord, changes};
use pointsflow_events::Events;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Records read in one call (the template's `BatchSize`).
pub const BATCH: i32 = 100;

const IDLE: Duration = Duration::from_millis(250);

type Error = String;

fn error(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string()
}

/// The stream of `table`'s ARN.
async fn stream_arn(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Result<String, Error> {
    let described = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())?;
    described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned)
        .ok_or_else(|| format!("table {table} has no stream"))
}

/// The shards of the stream, with an iterator at `from` for each.
async fn iterators(
    streams: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
    from: ShardIteratorType,
) -> Result<HashMap<String, String>, Error> {
    let described = streams
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .map_err(error)?;
    let mut found = HashMap::new();
    for shard in described
        .stream_description()
        .map(|d| d.shards())
        .unwrap_or_default()
    {
        let Some(id) = shard.shard_id() else { continue };
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(id)
            .shard_iterator_type(from.clone())
            .send()
            .await
            .map_err(error)?;
        if let Some(iterator) = iterator.shard_iterator() {
            found.insert(id.to_owned(), iterator.to_owned());
        }
    }
    Ok(found)
}

/// An attribute as the stream's JSON carries it (`{"S": ...}`, ...); only
/// the kinds a request's item is read from.
fn attribute(value: &AttributeValue) -> Option<Value> {
    Some(match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => {
            json!({ "B": base64::engine::general_purpose::STANDARD.encode(b.as_ref()) })
        }
        _ => return None,
    })
}

fn image(values: Option<&HashMap<String, AttributeValue>>) -> Option<HashMap<String, Value>> {
    values.map(|m| {
        m.iter()
            .filter_map(|(k, v)| Some((k.clone(), attribute(v)?)))
            .collect()
    })
}

/// `records` as Lambda hands them to the deployed function.
pub fn as_lambda_event(records: &[Record]) -> StreamEvent {
    StreamEvent {
        records: records
            .iter()
            .filter_map(|r| {
                let data = r.dynamodb()?;
                Some(StreamRecord {
                    event_name: r
                        .event_name()
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    dynamodb: StreamData {
                        sequence_number: data.sequence_number()?.to_owned(),
                        keys: image(data.keys()).unwrap_or_default(),
                        new_image: image(data.new_image()),
                        old_image: image(data.old_image()),
                    },
                })
            })
            .collect(),
    }
}

/// Polls `table`'s stream, handing its requests' changes to `events`,
/// until `shutdown` and a read that finds nothing more.
pub async fn spawn_stream(
    dynamodb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    table: &str,
    events: Events,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, Error> {
    let arn = stream_arn(&dynamodb, table).await?;
    let mut shards: HashMap<String, Shard> = iterators(&streams, &arn, ShardIteratorType::Latest)
        .await?
        .into_iter()
        .map(|(id, iterator)| {
            (
                id,
                Shard {
                    iterator,
                    last: None,
                },
            )
        })
        .collect();
    Ok(tokio::spawn(async move {
        // Shards read to their end (closed), never read again.
        let mut done: HashSet<String> = HashSet::new();
        loop {
            let mut read = 0;
            let mut closed = false;
            for (id, mut shard) in std::mem::take(&mut shards) {
                let got = match streams
                    .get_records()
                    .shard_iterator(&shard.iterator)
                    .limit(BATCH)
                    .send()
                    .await
                {
                    Ok(got) => got,
                    Err(e) => {
                        // An iterator lasts 15 minutes: a long retry of the
                        // bus outlives it. Go on after the last record read.
                        tracing::warn!(shard = %id, error = %error(e), "the stream could not be read");
                        let (kind, after) = match &shard.last {
                            Some(last) => {
                                (ShardIteratorType::AfterSequenceNumber, Some(last.clone()))
                            }
                            None => (ShardIteratorType::Latest, None),
                        };
                        if let Ok(fresh) = streams
                            .get_shard_iterator()
                            .stream_arn(&arn)
                            .shard_id(&id)
                            .shard_iterator_type(kind)
                            .set_sequence_number(after)
                            .send()
                            .await
                            && let Some(iterator) = fresh.shard_iterator()
                        {
                            shard.iterator = iterator.to_owned();
                        }
                        shards.insert(id, shard);
                        continue;
                    }
                };
                read += got.records().len();
                if let Some(last) = got
                    .records()
                    .last()
                    .and_then(|r| r.dynamodb())
                    .and_then(|d| d.sequence_number())
                {
                    shard.last = Some(last.to_owned());
                }
                publish_records(&events, as_lambda_event(got.records()), &shutdown).await;
                match got.next_shard_iterator() {
                    Some(next) => {
                        shard.iterator = next.to_owned();
                        shards.insert(id, shard);
                    }
                    None => {
                        done.insert(id);
                        closed = true;
                    }
                }
            }
            // A closed shard's children are read from their start.
            if closed || shards.is_empty() {
                match iterators(&streams, &arn, ShardIteratorType::TrimHorizon).await {
                    Ok(found) => {
                        for (id, iterator) in found {
                            if !done.contains(&id) && !shards.contains_key(&id) {
                                shards.insert(
                                    id,
                                    Shard {
                                        iterator,
                                        last: None,
                                    },
                                );
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the stream could not be described"),
                }
            }
            if read == 0 {
                // Stopped once what was written before the stop is read.
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                }
            }
        }
    }))
}

/// Where a shard is read from, and the last record read of it.
struct Shard {
    iterator: String,
    last: Option<String>,
}

/// Publishes the changes of `event`; a record that cannot be
/// read is logged and passed over (the deployed function would report it
/// failed, and its retries end on the events' dead-letter queue).
async fn publish_records(events: &Events, mut event: StreamEvent, shutdown: &CancellationToken) {
    loop {
        let (changes, unread) = changes(&event);
        crate::outbox::publish_all(events, changes, shutdown).await;
        let Some(unread) = unread else { return };
        tracing::error!(%unread, "a stream record could not be read");
        let after = event
            .records
            .iter()
            .position(|r| r.dynamodb.sequence_number == unread.position)
            .map_or(event.records.len(), |p| p + 1);
        event.records.drain(..after);
    }
}
