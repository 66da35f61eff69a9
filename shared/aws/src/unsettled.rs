//! The sparse `unsettled` index: requests and window credits whose outcome
//! at the partner is not settled, or found stalled, by shard
//! (`UNSETTLED#{0..7}`) and since when (`{since}#{item key}`), keys only;
//! and the mark of how far the resolver has read the requests hour by hour.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use pointsflow_core::ports::{StoreError, SweepMarks};
use pointsflow_core::unsettled::{SHARDS, SweepMark, shard};

use crate::item::{Item, get_s, s};
use crate::tables;
use crate::versioned::VersionedTable;

const SINCE: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Puts `item` (whose partition key is `pk`) in the index, unsettled since `since`.
pub(crate) fn index(item: &mut Item, pk: &str, since: DateTime<Utc>) {
    item.insert(
        tables::UNSETTLED_PK.into(),
        s(format!("UNSETTLED#{}", shard(pk))),
    );
    item.insert(
        tables::UNSETTLED_SK.into(),
        s(format!("{}#{pk}", since.format(SINCE))),
    );
}

/// The partition keys starting with `prefix` (e.g. `REQ#`) unsettled since
/// before `before`, with since when, oldest first, at most `limit`.
pub(crate) async fn query(
    items: &VersionedTable,
    prefix: &str,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
    let bad = |e: String| StoreError::Malformed(format!("unsettled entry: {e}"));
    let mut found = Vec::new();
    for n in 0..SHARDS {
        let mut start = None;
        loop {
            let page = items
                .client
                .query()
                .table_name(&items.table)
                .index_name(tables::UNSETTLED_INDEX)
                .key_condition_expression("unsettled_pk = :pk AND unsettled_sk < :before")
                .expression_attribute_values(":pk", s(format!("UNSETTLED#{n}")))
                .expression_attribute_values(":before", s(before.format(SINCE).to_string()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    StoreError::Unavailable(DisplayErrorContext(e.into_service_error()).to_string())
                })?;
            for item in page.items() {
                let sk = get_s(item, tables::UNSETTLED_SK).map_err(|e| bad(e.to_string()))?;
                let (since, pk) = sk.split_once('#').ok_or_else(|| bad(sk.to_owned()))?;
                if let Some(id) = pk.strip_prefix(prefix) {
                    let since = DateTime::parse_from_rfc3339(since)
                        .map_err(|e| bad(e.to_string()))?
                        .with_timezone(&Utc);
                    found.push((since, id.to_owned()));
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() && found.len() < limit * 2 => {
                    start = Some(key.clone())
                }
                _ => break,
            }
        }
    }
    found.sort();
    found.truncate(limit);
    Ok(found)
}

/// The resolver's sweep mark: one item, `MARK#sweep` / `MARK`, its JSON in
/// `doc`.
fn sweep_key() -> Item {
    crate::item::key("MARK#sweep".into(), "MARK")
}

#[async_trait::async_trait]
impl SweepMarks for crate::DynamoRequestStore {
    async fn sweep_mark(&self) -> Result<Option<SweepMark>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(sweep_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::item::unavailable(e.into_service_error()))?;
        out.item()
            .map(|item| crate::item::doc(item).map_err(StoreError::from))
            .transpose()
    }

    async fn keep_sweep_mark(&self, mark: &SweepMark) -> Result<(), StoreError> {
        let body = serde_json::to_string(mark)
            .map_err(|e| StoreError::Unavailable(format!("sweep mark: {e}")))?;
        let mut item = sweep_key();
        item.insert(crate::item::DOC.into(), crate::item::doc_value(body));
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| crate::item::unavailable(e.into_service_error()))?;
        Ok(())
    }
}
