//! The request store over DynamoDB: one item per request, keyed by the id
//! derived from (source, idempotency key). Create is a put conditional on the
//! item not existing; update is a put conditional on the version read.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use pointsflow_core::ports::{
    Created, RequestCreate, RequestGet, RequestUpdate, StoreError, WaitingRequests,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{ProgramId, RecipientId, RequestId};

use crate::item::{self, DOC, Item, doc, get_s, n, s};
use crate::tables;

const REQUEST_SK: &str = "REQUEST";

pub(crate) fn request_pk(id: &RequestId) -> String {
    format!("REQ#{id}")
}

/// The `waiting` index's partition of a program's requests in `state`.
fn wait_pk(program: &ProgramId, state: StatusKind) -> String {
    format!("WAIT#{program}#{state}")
}

#[derive(Debug, Clone)]
pub struct DynamoRequestStore {
    client: Client,
    table: String,
}

fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

fn to_item(request: &PointsRequest, version: u64) -> Result<Item, StoreError> {
    let mut stored = request.clone();
    stored.version = version;
    let body = serde_json::to_string(&stored)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the request: {e}")))?;
    let mut item = item::key(request_pk(&request.id), REQUEST_SK);
    item.insert(DOC.into(), s(body));
    item.insert("version".into(), n(version));
    item.insert("state".into(), s(stored.state().as_str()));
    item.insert("program".into(), s(stored.program.as_str()));
    item.insert("source".into(), s(stored.source.as_str()));
    // The sparse `waiting` index holds only requests in a waiting state.
    if stored.state().is_waiting() {
        item.insert(
            tables::WAIT_PK.into(),
            s(wait_pk(&stored.program, stored.state())),
        );
        item.insert(
            tables::WAIT_SK.into(),
            s(format!("{}#{}", stored.received_at.to_rfc3339(), stored.id)),
        );
        item.insert("recipient".into(), s(stored.recipient.id.as_str()));
    }
    Ok(item)
}

fn from_item(item: &Item) -> Result<PointsRequest, StoreError> {
    let mut request: PointsRequest =
        doc(item).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    request.version =
        item::counter(item, "version").map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(request)
}

impl DynamoRequestStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl RequestCreate for DynamoRequestStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id))]
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(request, 0)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Created::New),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let existing = match failed.item() {
                        Some(item) => from_item(item)?,
                        None => self.get(&request.id).await?.ok_or(StoreError::Unavailable(
                            "the create's condition failed but no item is there".into(),
                        ))?,
                    };
                    Ok(Created::Existing(Box::new(existing)))
                }
                other => Err(unavailable(other)),
            },
        }
    }
}

#[async_trait]
impl RequestGet for DynamoRequestStore {
    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key(request_pk(id), REQUEST_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        out.item().map(from_item).transpose()
    }
}

#[async_trait]
impl RequestUpdate for DynamoRequestStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id, version = request.version))]
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        let next = request.version + 1;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(request, next)?))
            .condition_expression("attribute_exists(pk) AND version = :expected")
            .expression_attribute_values(":expected", n(request.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(next),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let exists = match failed.item() {
                        Some(_) => true,
                        None => self.get(&request.id).await?.is_some(),
                    };
                    Err(if exists {
                        StoreError::Conflict {
                            expected: request.version,
                        }
                    } else {
                        StoreError::NotFound
                    })
                }
                other => Err(unavailable(other)),
            },
        }
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
                .client
                .query()
                .table_name(&self.table)
                .index_name(tables::WAITING_INDEX)
                .key_condition_expression("wait_pk = :pk")
                .expression_attribute_values(":pk", s(wait_pk(program, state)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in page.items() {
                let read =
                    |name| get_s(item, name).map_err(|e| StoreError::Unavailable(e.to_string()));
                if recipient.is_some_and(|r| read("recipient").ok() != Some(r.as_str())) {
                    continue;
                }
                let pk = read(item::PK)?;
                let id = pk
                    .strip_prefix("REQ#")
                    .and_then(|id| RequestId::parse(id).ok())
                    .ok_or_else(|| {
                        StoreError::Unavailable(format!("malformed request key {pk}"))
                    })?;
                ids.push(id);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(ids),
            }
        }
    }
}
