//! The request store over DynamoDB: one item per request, keyed by the id
//! derived from (source, idempotency key). Create is a put conditional on the
//! item not existing; update is a put conditional on the version read.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use pointsflow_core::ports::{
    Created, RequestCreate, RequestGet, RequestUpdate, ScheduledRequests, StoreError,
    UnsettledIndex, WaitingRequests,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::unsettled::{Unsettled, UnsettledItem};
use pointsflow_core::values::{MemberNumber, PartnerId, Points, ProgramId, RecipientId, RequestId};
use pointsflow_core::window::{ScheduledCursor, ScheduledEntry, ScheduledPage, WindowId};

use crate::item::unavailable;
use crate::item::{self, Item, get_s, n, s};
use crate::tables;
use crate::versioned::{Versioned, VersionedTable};

pub(crate) const REQUEST_SK: &str = "REQUEST";

pub(crate) fn request_pk(id: &RequestId) -> String {
    format!("REQ#{id}")
}

/// The `waiting` index's partition of a program's requests in `state`.
fn wait_pk(program: &ProgramId, state: StatusKind) -> String {
    format!("WAIT#{program}#{state}")
}

/// How many partitions of the `waiting` index a program's scheduled
/// requests are spread over, so that no one index partition takes every
/// scheduled request of a busy program (as a budget's shards,
/// [`pointsflow_core::ledger::shards::COUNT`]).
const SCHEDULED_SHARDS: u16 = 16;

/// The index partition of a program's scheduled requests for `member`:
/// one of [`SCHEDULED_SHARDS`], by a hash of the member number.
fn scheduled_pk(program: &ProgramId, member: &MemberNumber) -> String {
    scheduled_shard_pk(
        program,
        pointsflow_core::ledger::shards::bucket(member.as_str(), SCHEDULED_SHARDS),
    )
}

fn scheduled_shard_pk(program: &ProgramId, shard: u16) -> String {
    format!("SCHED#{program}#{shard}")
}

fn scheduled_sk(member: &MemberNumber, id: &RequestId) -> String {
    format!("{member}#{id}")
}

fn scheduled_from(item: &Item) -> Result<ScheduledEntry, StoreError> {
    let bad = |e: String| StoreError::Malformed(format!("scheduled entry: {e}"));
    let read = |name| get_s(item, name).map_err(|e| bad(e.to_string()));
    let id = read(item::PK)?
        .strip_prefix("REQ#")
        .ok_or_else(|| bad("request key".into()))
        .and_then(|id| RequestId::parse(id).map_err(|e| bad(e.to_string())))?;
    Ok(ScheduledEntry {
        id,
        member: MemberNumber::parse(read("member")?).map_err(|e| bad(e.to_string()))?,
        partner: PartnerId::parse(read("partner")?).map_err(|e| bad(e.to_string()))?,
        partner_program: read("partner_program")?.to_owned(),
        points: Points::new(item::counter(item, "points").map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?,
        window: WindowId::parse(read("window")?).map_err(bad)?,
    })
}

#[derive(Debug, Clone)]
pub struct DynamoRequestStore {
    items: VersionedTable,
}

impl Versioned for PointsRequest {
    fn key(&self) -> Item {
        item::key(request_pk(&self.id), REQUEST_SK)
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn extra(&self, item: &mut Item) {
        item.insert("state".into(), s(self.state().as_str()));
        item.insert("program".into(), s(self.program.as_str()));
        item.insert("source".into(), s(self.source.as_str()));
        // The sparse `waiting` index holds only requests in a waiting state.
        if self.state().is_waiting() {
            item.insert(
                tables::WAIT_PK.into(),
                s(wait_pk(&self.program, self.state())),
            );
            item.insert(
                tables::WAIT_SK.into(),
                s(format!("{}#{}", self.received_at.to_rfc3339(), self.id)),
            );
            item.insert("recipient".into(), s(self.recipient.id.as_str()));
        }
        crate::days::index(item, self);
        // An operator's search by recipient or by the source's record.
        item.insert(
            tables::LOOKUP_PK.into(),
            s(format!("RCPT#{}", self.recipient.id)),
        );
        if let Some(record) = &self.event.id {
            item.insert(tables::RECORD_PK.into(), s(format!("REC#{record}")));
        }
        if let Some(since) = pointsflow_core::unsettled::request_unsettled_since(self) {
            crate::unsettled::index(item, &request_pk(&self.id), since);
        }
        // Scheduled requests are in the same index, by program, in member
        // order, with what the window planner needs.
        if let Some(entry) = pointsflow_core::window::scheduled_entry(self) {
            item.insert(
                tables::WAIT_PK.into(),
                s(scheduled_pk(&self.program, &entry.member)),
            );
            item.insert(
                tables::WAIT_SK.into(),
                s(scheduled_sk(&entry.member, &entry.id)),
            );
            item.insert("member".into(), s(entry.member.as_str()));
            item.insert("partner".into(), s(entry.partner.as_str()));
            item.insert("partner_program".into(), s(entry.partner_program));
            item.insert("points".into(), n(entry.points.get()));
            item.insert("window".into(), s(entry.window.to_string()));
        }
    }
}

impl DynamoRequestStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            items: VersionedTable {
                client,
                table: table.into(),
            },
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.items.client
    }

    pub(crate) fn table(&self) -> &str {
        &self.items.table
    }
}

#[async_trait]
impl RequestCreate for DynamoRequestStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id))]
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError> {
        let mut fresh = request.clone();
        fresh.version = 0;
        Ok(match self.items.create(&fresh).await? {
            None => Created::New,
            Some(existing) => Created::Existing(Box::new(existing)),
        })
    }
}

#[async_trait]
impl RequestGet for DynamoRequestStore {
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError> {
        self.items.read(item::key(request_pk(id), REQUEST_SK)).await
    }
}

#[async_trait]
impl RequestUpdate for DynamoRequestStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id, version = request.version))]
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        self.items.save(request).await
    }
}

#[async_trait]
impl WaitingRequests for DynamoRequestStore {
    async fn waiting(
        &self,
        program: &ProgramId,
        state: StatusKind,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .items
                .client
                .query()
                .table_name(&self.items.table)
                .index_name(tables::WAITING_INDEX)
                .key_condition_expression("wait_pk = :pk")
                .expression_attribute_values(":pk", s(wait_pk(program, state)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in page.items() {
                let read = |name| get_s(item, name).map_err(StoreError::from);
                if recipient.is_some_and(|r| read("recipient").ok() != Some(r.as_str())) {
                    continue;
                }
                let pk = read(item::PK)?;
                let id = pk
                    .strip_prefix("REQ#")
                    .and_then(|id| RequestId::parse(id).ok())
                    .ok_or_else(|| StoreError::Malformed(format!("request key {pk}")))?;
                ids.push(id);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(ids),
            }
        }
    }
}

#[async_trait]
impl ScheduledRequests for DynamoRequestStore {
    async fn scheduled(
        &self,
        program: &ProgramId,
        after: Option<&ScheduledCursor>,
        limit: usize,
    ) -> Result<ScheduledPage, StoreError> {
        // The index is read eventually consistently: a request scheduled a
        // moment ago may show up only in a later window's run. Each shard is
        // in member order; the page is their merge, so the cursor is one
        // position across all of them.
        // The unsharded partition of earlier releases is read too, so a
        // request scheduled before an upgrade still reaches its window.
        let after = after.map(|c| scheduled_sk(&c.member, &c.request));
        let partitions = (0..SCHEDULED_SHARDS)
            .map(|shard| scheduled_shard_pk(program, shard))
            .chain(std::iter::once(format!("SCHED#{program}")));
        let pages = futures::future::try_join_all(
            partitions.map(|pk| self.scheduled_shard(pk, after.as_deref(), limit)),
        )
        .await?;
        let mut more = false;
        let mut entries = Vec::new();
        for (items, full) in pages {
            more |= full;
            for item in &items {
                entries.push((
                    get_s(item, tables::WAIT_SK)
                        .map_err(|e| StoreError::Malformed(e.to_string()))?
                        .to_owned(),
                    scheduled_from(item)?,
                ));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if entries.len() > limit {
            entries.truncate(limit);
            more = true;
        }
        Ok(ScheduledPage {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
            more,
        })
    }
}

impl DynamoRequestStore {
    /// Up to `limit` scheduled requests of one shard after `after`, and
    /// whether the shard may hold more.
    async fn scheduled_shard(
        &self,
        pk: String,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), StoreError> {
        let query = self
            .items
            .client
            .query()
            .table_name(&self.items.table)
            .index_name(tables::WAITING_INDEX)
            .expression_attribute_values(":pk", s(pk))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        let query = match after {
            Some(after) => query
                .key_condition_expression("wait_pk = :pk AND wait_sk > :after")
                .expression_attribute_values(":after", s(after)),
            None => query.key_condition_expression("wait_pk = :pk"),
        };
        let page = query
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        let more = page.last_evaluated_key().is_some_and(|k| !k.is_empty());
        Ok((page.items().to_vec(), more))
    }
}

#[async_trait]
impl UnsettledIndex for DynamoRequestStore {
    async fn unsettled(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        crate::unsettled::query(&self.items, "REQ#", before, limit)
            .await?
            .into_iter()
            .map(|(since, id)| {
                let id = RequestId::parse(&id)
                    .map_err(|e| StoreError::Malformed(format!("request key: {e}")))?;
                Ok(Unsettled {
                    since,
                    item: UnsettledItem::Request(id),
                })
            })
            .collect()
    }
}
