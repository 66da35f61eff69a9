//! The `day` index: every request under `DAY#{date}#{shard}`, the UTC day
//! it counts for in a reconciliation (sent to the partner, or received, for
//! one never sent; [`period_time`]) and one of [`SHARDS`] by a hash of its
//! id, sorted by its key (`REQ#{id}`), keys only. A period is read day by day, so what a
//! reconciliation reads grows with the period's requests, not the table's.
//!
//! The key is written with the request and changes only when a request is
//! sent on a later day than it was received (a scheduled window's), so a
//! request costs one index write, two more in that case.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::KeysAndAttributes;
use chrono::{DateTime, Days, NaiveDate, Utc};
use pointsflow_core::ports::StoreError;
use pointsflow_core::reconcile::period_time;
use pointsflow_core::request::PointsRequest;
use pointsflow_core::values::RequestId;

use crate::item::{self, Item, doc, get_s, s, unavailable};
use crate::tables;

/// How many partitions one day's requests are spread over.
const SHARDS: u16 = 8;

/// `BatchGetItem` takes at most 100 keys.
const BATCH: usize = 100;

fn day_pk(day: NaiveDate, shard: u16) -> String {
    format!("DAY#{day}#{shard}")
}

/// Puts `request`'s item in the index.
pub(crate) fn index(item: &mut Item, request: &PointsRequest) {
    let shard = pointsflow_core::ledger::shards::bucket(request.id.as_str(), SHARDS);
    item.insert(
        tables::DAY_PK.into(),
        s(day_pk(period_time(request).date_naive(), shard)),
    );
}

/// The days a time range `[from, to)` touches.
pub(crate) fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = if to > from {
        (to - chrono::Duration::nanoseconds(1)).date_naive()
    } else {
        from.date_naive()
    };
    (from.date_naive(), last)
}

/// Where a read of a range of days is: the day, its shard, and the last
/// request id read there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub day: NaiveDate,
    pub shard: u16,
    pub after: Option<String>,
}

impl Position {
    pub fn start(day: NaiveDate) -> Self {
        Self {
            day,
            shard: 0,
            after: None,
        }
    }

    /// The next partition's start.
    fn next_partition(&self) -> Option<Self> {
        if self.shard + 1 < SHARDS {
            return Some(Self {
                day: self.day,
                shard: self.shard + 1,
                after: None,
            });
        }
        self.day.checked_add_days(Days::new(1)).map(Self::start)
    }

    /// As a page cursor: `{day}/{shard}/{last id}`.
    pub fn cursor(&self) -> String {
        format!(
            "{}/{}/{}",
            self.day,
            self.shard,
            self.after.as_deref().unwrap_or("")
        )
    }

    pub fn parse(cursor: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::Unavailable(format!("page cursor {cursor:?} is not ours"));
        let mut parts = cursor.splitn(3, '/');
        let day = parts
            .next()
            .and_then(|d| d.parse::<NaiveDate>().ok())
            .ok_or_else(bad)?;
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
        Ok(Self { day, shard, after })
    }
}

impl crate::DynamoRequestStore {
    /// The next non-empty page of request ids from `at`, up to `last` day,
    /// at most `limit`, with where the read goes on (`None`: the range is
    /// read).
    pub(crate) async fn day_page(
        &self,
        mut at: Position,
        last: NaiveDate,
        limit: usize,
    ) -> Result<(Vec<RequestId>, Option<Position>), StoreError> {
        while at.day <= last {
            let query = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(tables::DAY_INDEX)
                .expression_attribute_values(":pk", s(day_pk(at.day, at.shard)))
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
                _ => at.next_partition().filter(|p| p.day <= last),
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
    /// `BatchGetItem` per 100, eventually consistent (an index is too).
    pub(crate) async fn requests(
        &self,
        ids: &[RequestId],
    ) -> Result<Vec<PointsRequest>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
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
        }
        Ok(out)
    }
}
