//! The `day` index: every request under `DAY#{date}T{hour}#{shard}`, the
//! UTC hour it counts for in a reconciliation (sent to the partner, or
//! received, for one never sent; [`period_time`]) and one of [`SHARDS`] by a
//! hash of its id, sorted by its key (`REQ#{id}`), keys only. A period is
//! read hour by hour, so what a reconciliation reads grows with the
//! period's requests, not the table's; and the resolver reads each hour's
//! requests once, when the hour is over, to find any left in progress
//! (`pointsflow_dispatch::resolve`).
//!
//! The key is written with the request and changes only when a request is
//! sent in a later hour than it was received (a scheduled window's, or a
//! real-time one received just before the hour turns), so a request costs
//! one index write, two more in that case.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::KeysAndAttributes;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use pointsflow_core::ports::StoreError;
use pointsflow_core::reconcile::{hour_of, period_time};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::values::RequestId;

use crate::item::{self, Item, doc, get_s, s, unavailable};
use crate::tables;

/// How many partitions one hour's requests are spread over: each takes a
/// quarter of the requests, so 4,000 requests a second fit under
/// DynamoDB's 1,000 write units a second on one partition key.
const SHARDS: u16 = 4;

/// `BatchGetItem` takes at most 100 keys.
const BATCH: usize = 100;

/// How many `BatchGetItem` calls a read of many requests has in flight at
/// once (a page of 1,000 in one round trip's time, not ten).
const BATCHES_AT_ONCE: usize = 10;

/// An hour as the key and a cursor write it: `2026-11-27T09`.
const HOUR: &str = "%Y-%m-%dT%H";

fn day_pk(hour: DateTime<Utc>, shard: u16) -> String {
    format!("DAY#{}#{shard}", hour.format(HOUR))
}

fn parse_hour(raw: &str) -> Option<DateTime<Utc>> {
    let (date, hour) = raw.split_once('T')?;
    let hour: u32 = hour.parse().ok().filter(|h| *h < 24)?;
    let date = date.parse::<NaiveDate>().ok()?;
    Some(date.and_hms_opt(hour, 0, 0)?.and_utc())
}

/// Puts `request`'s item in the index.
pub(crate) fn index(item: &mut Item, request: &PointsRequest) {
    let shard = pointsflow_core::ledger::shards::bucket(request.id.as_str(), SHARDS);
    item.insert(
        tables::DAY_PK.into(),
        s(day_pk(hour_of(period_time(request)), shard)),
    );
}

/// The first and last hours a time range `[from, to)` touches.
pub(crate) fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let last = if to > from {
        to - TimeDelta::nanoseconds(1)
    } else {
        from
    };
    (hour_of(from), hour_of(last))
}

/// Where a read of a range of hours is: the hour, its shard, and the last
/// request id read there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub hour: DateTime<Utc>,
    pub shard: u16,
    pub after: Option<String>,
}

impl Position {
    pub fn start(hour: DateTime<Utc>) -> Self {
        Self {
            hour,
            shard: 0,
            after: None,
        }
    }

    /// The next partition's start.
    fn next_partition(&self) -> Self {
        if self.shard + 1 < SHARDS {
            return Self {
                hour: self.hour,
                shard: self.shard + 1,
                after: None,
            };
        }
        Self::start(self.hour + TimeDelta::hours(1))
    }

    /// As a page cursor: `{hour}/{shard}/{last id}`.
    pub fn cursor(&self) -> String {
        format!(
            "{}/{}/{}",
            self.hour.format(HOUR),
            self.shard,
            self.after.as_deref().unwrap_or("")
        )
    }

    pub fn parse(cursor: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Unavailable(format!("page cursor {cursor:?} is not ours"));
        let mut parts = cursor.splitn(3, '/');
        let hour = parts.next().and_then(parse_hour).ok_or_else(bad)?;
        let shard = parts
            .next()
            .and_then(|n| n.parse::<u16>().ok())
            .filter(|n| *n < SHARDS)
            .ok_or_else(bad)?;
        let after = parts.next().ok_or_else(bad)?;
        let after = match after {
            "" => None,
            id => Some(RequestId::parse(id).map_err(|_| bad())?.to_string()),
        };
        Ok(Self { hour, shard, after })
    }
}

impl crate::DynamoRequestStore {
    /// The next non-empty page of request ids from `at`, up to the `last`
    /// hour, at most `limit`, with where the read goes on (`None`: the
    /// range is read).
    pub(crate) async fn day_page(
        &self,
        mut at: Position,
        last: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<RequestId>, Option<Position>), StoreError> {
        while at.hour <= last {
            let query = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(tables::DAY_INDEX)
                .expression_attribute_values(":pk", s(day_pk(at.hour, at.shard)))
                .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX));
            let query = match &at.after {
                Some(after) => query
                    .key_condition_expression("day_pk = :pk AND pk > :after")
                    .expression_attribute_values(":after", s(format!("REQ#{after}"))),
                None => query.key_condition_expression("day_pk = :pk"),
            };
            let page = query
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            let ids = page
                .items()
                .iter()
                .map(|i| {
                    get_s(i, item::PK).map_err(StoreError::from).and_then(|pk| {
                        pk.strip_prefix("REQ#")
                            .and_then(|id| RequestId::parse(id).ok())
                            .ok_or_else(|| StoreError::Malformed(format!("day index: {pk}")))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let more = page.last_evaluated_key().is_some_and(|k| !k.is_empty());
            let next = match ids.last() {
                Some(id) if more => Some(Position {
                    after: Some(id.to_string()),
                    ..at.clone()
                }),
                _ => Some(at.next_partition()).filter(|p| p.hour <= last),
            };
            if !ids.is_empty() {
                return Ok((ids, next));
            }
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        Ok((Vec::new(), None))
    }

    /// The requests of `ids` (those that exist), in any order: a
    /// `BatchGetItem` per 100, up to [`BATCHES_AT_ONCE`] at a time,
    /// eventually consistent (an index is too).
    pub(crate) async fn requests(
        &self,
        ids: &[RequestId],
    ) -> Result<Vec<PointsRequest>, StoreError> {
        use futures::stream::{StreamExt, TryStreamExt};
        let calls: Vec<_> = ids.chunks(BATCH).map(|chunk| self.batch(chunk)).collect();
        let batches: Vec<Vec<PointsRequest>> = futures::stream::iter(calls)
            .buffer_unordered(BATCHES_AT_ONCE)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    /// One `BatchGetItem` of at most [`BATCH`] requests.
    async fn batch(&self, chunk: &[RequestId]) -> Result<Vec<PointsRequest>, StoreError> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut keys: Vec<Item> = chunk
            .iter()
            .map(|id| item::key(crate::store::request_pk(id), crate::store::REQUEST_SK))
            .collect();
        // Keys DynamoDB did not get to (throttling, the 16 MB limit) are
        // asked again; a few rounds, then the caller retries the page.
        for round in 0..8u32 {
            if keys.is_empty() {
                break;
            }
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(25 << round)).await;
            }
            let wanted = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let answer = self
                .client()
                .batch_get_item()
                .request_items(self.table(), wanted)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            let found: &HashMap<String, Vec<Item>> = match answer.responses() {
                Some(r) => r,
                None => &HashMap::new(),
            };
            for item in found.get(self.table()).into_iter().flatten() {
                out.push(doc(item).map_err(StoreError::from)?);
            }
            if let Some(left) = answer.unprocessed_keys().and_then(|u| u.get(self.table())) {
                keys = left.keys().to_vec();
            }
        }
        if !keys.is_empty() {
            return Err(StoreError::Unavailable(
                "DynamoDB left keys of a batch read unprocessed; retry".into(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, 5).unwrap()
    }

    fn hour(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, 0, 0).unwrap()
    }

    #[test]
    fn an_hour_is_a_key_and_a_cursor_that_reads_back() {
        assert_eq!(day_pk(hour_of(at(9, 41)), 3), "DAY#2026-12-07T09#3");
        let p = Position {
            hour: hour_of(at(9, 41)),
            shard: 2,
            after: Some(format!("pr_{}", "0a".repeat(16))),
        };
        assert_eq!(
            p.cursor(),
            format!("2026-12-07T09/2/pr_{}", "0a".repeat(16))
        );
        assert_eq!(Position::parse(&p.cursor()).unwrap(), p);
        let start = Position::start(hour(9));
        assert_eq!(Position::parse(&start.cursor()).unwrap(), start);
        for bad in [
            "2026-12-07T24/0/",
            "2026-12-07T09/4/",
            "2026-12-07/0/",
            "2026-12-07T09/0/pr_x",
            "",
        ] {
            assert!(Position::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_range_touches_the_hours_it_overlaps() {
        assert_eq!(hours(at(9, 41), at(11, 41)), (hour(9), hour(11)));
        let midnight = Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap();
        assert_eq!(
            hours(midnight, midnight + TimeDelta::days(1)),
            (midnight, midnight + TimeDelta::hours(23)),
            "a day is its 24 hours, not the next day's first"
        );
        assert_eq!(
            hours(at(9, 41), at(9, 41)),
            (hour_of(at(9, 41)), hour_of(at(9, 41)))
        );
        let p = Position::start(midnight);
        let mut n = p.clone();
        for _ in 0..SHARDS {
            n = n.next_partition();
        }
        assert_eq!(
            n,
            Position::start(midnight + TimeDelta::hours(1)),
            "each shard, then the next hour"
        );
    }
}
