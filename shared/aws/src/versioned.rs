//! Items that hold one JSON document and a version: created with a put
//! conditional on the item not existing, read consistently, and saved with a
//! put conditional on the version read. Requests, window runs and window
//! credits are kept this way.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use pointsflow_core::ports::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::item::unavailable;
use crate::item::{self, DOC, Item, counter, doc, n};

fn malformed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed(e.to_string())
}

/// A versioned JSON document.
pub(crate) trait Versioned: Serialize + DeserializeOwned {
    fn key(&self) -> Item;
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    /// Attributes beside the document (index keys).
    fn extra(&self, _item: &mut Item) {}
}

pub(crate) fn to_item<T: Versioned>(value: &T, version: u64) -> Result<Item, StoreError> {
    let mut item = value.key();
    let body = serde_json::to_string(value)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the item: {e}")))?;
    item.insert(DOC.into(), item::doc_value(body));
    item.insert("version".into(), n(version));
    value.extra(&mut item);
    Ok(item)
}

pub(crate) fn from_item<T: Versioned>(item: &Item) -> Result<T, StoreError> {
    let mut value: T = doc(item).map_err(malformed)?;
    value.set_version(counter(item, "version").map_err(malformed)?);
    Ok(value)
}

/// One table's versioned items.
#[derive(Debug, Clone)]
pub(crate) struct VersionedTable {
    pub client: Client,
    pub table: String,
}

impl VersionedTable {
    /// Puts `value` unless its item exists; the existing one otherwise.
    pub async fn create<T: Versioned>(&self, value: &T) -> Result<Option<T>, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(value, 0)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => match failed.item() {
                    Some(item) => Ok(Some(from_item(item)?)),
                    None => self.read::<T>(value.key()).await?.map(Some).ok_or_else(|| {
                        StoreError::Unavailable(
                            "the create's condition failed but no item is there".into(),
                        )
                    }),
                },
                other => Err(unavailable(other)),
            },
        }
    }

    pub async fn read<T: Versioned>(&self, key: Item) -> Result<Option<T>, StoreError> {
        self.get(key).await?.as_ref().map(from_item).transpose()
    }

    /// The item at `key`, read consistently.
    pub async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(out.item().cloned())
    }

    pub async fn save<T: Versioned>(&self, value: &T) -> Result<u64, StoreError> {
        let next = value.version() + 1;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(value, next)?))
            .condition_expression("attribute_exists(pk) AND version = :expected")
            .expression_attribute_values(":expected", n(value.version()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(next),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let exists = match failed.item() {
                        Some(_) => true,
                        None => self.read::<T>(value.key()).await?.is_some(),
                    };
                    Err(if exists {
                        StoreError::Conflict {
                            expected: value.version(),
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
