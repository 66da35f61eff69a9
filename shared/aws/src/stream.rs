//! The table's stream as Lambda hands it to a function: each record's
//! item before and after one write (view type `NEW_AND_OLD_IMAGES`), read
//! here into [`Change`]s of points requests. The images are DynamoDB JSON
//! (`{"S": ...}`, `{"N": ...}`, `{"B": base64}`); only the attributes a
//! request is read from (`pk`, `doc`, `version`) are looked at.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use pointsflow_core::events::Change;
use pointsflow_core::request::PointsRequest;
use serde::{Deserialize, Serialize};

use crate::item::{DOC, Item, PK, SK};

/// A batch of stream records, as Lambda invokes a function with them.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    pub dynamodb: StreamData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamData {
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
    #[serde(rename = "Keys", default)]
    pub keys: HashMap<String, serde_json::Value>,
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<HashMap<String, serde_json::Value>>,
    #[serde(rename = "OldImage", default)]
    pub old_image: Option<HashMap<String, serde_json::Value>>,
}

/// What the function answers: the records to retry from (Lambda retries
/// the batch from the first one it names, with `ReportBatchItemFailures`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

impl StreamResponse {
    /// Retry from the record at `position`, or nothing to retry.
    pub fn retry_from(position: Option<String>) -> Self {
        Self {
            batch_item_failures: position
                .into_iter()
                .map(|item_identifier| ItemFailure { item_identifier })
                .collect(),
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream record {position}: {problem}")]
pub struct UnreadRecord {
    pub position: String,
    pub problem: String,
}

/// The points requests' changes of `event`, in order, up to the first
/// record that cannot be read (returned with them: retry from it). A
/// record of another kind of item, or a removal, is no change of a
/// request and is passed over.
pub fn request_changes(event: &StreamEvent) -> (Vec<Change>, Option<UnreadRecord>) {
    let mut changes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let data = &record.dynamodb;
        let unread = |problem: String| UnreadRecord {
            position: data.sequence_number.clone(),
            problem,
        };
        let key = string(&data.keys, PK).unwrap_or_default();
        let sort = string(&data.keys, SK).unwrap_or_default();
        if !key.starts_with("REQ#")
            || sort != crate::store::REQUEST_SK
            || record.event_name == "REMOVE"
        {
            continue;
        }
        let Some(new) = &data.new_image else {
            return (
                changes,
                Some(unread(
                    "no new image (the stream must keep NEW_AND_OLD_IMAGES)".into(),
                )),
            );
        };
        let after = match request(new) {
            Ok(r) => r,
            Err(e) => return (changes, Some(unread(e))),
        };
        let before = match data.old_image.as_ref().map(request).transpose() {
            Ok(r) => r,
            Err(e) => return (changes, Some(unread(e))),
        };
        changes.push(Change {
            position: data.sequence_number.clone(),
            before,
            after,
        });
    }
    (changes, None)
}

fn string(image: &HashMap<String, serde_json::Value>, name: &str) -> Option<String> {
    image.get(name)?.get("S")?.as_str().map(str::to_owned)
}

/// A request from its image: its document and version.
fn request(image: &HashMap<String, serde_json::Value>) -> Result<PointsRequest, String> {
    let mut item = Item::new();
    for name in [DOC, "version"] {
        let Some(value) = image.get(name) else {
            continue;
        };
        let value = if let Some(s) = value.get("S").and_then(|v| v.as_str()) {
            AttributeValue::S(s.to_owned())
        } else if let Some(n) = value.get("N").and_then(|v| v.as_str()) {
            AttributeValue::N(n.to_owned())
        } else if let Some(b) = value.get("B").and_then(|v| v.as_str()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("{name} is not base64: {e}"))?;
            AttributeValue::B(Blob::new(bytes))
        } else {
            return Err(format!("{name} is neither a string, a number nor binary"));
        };
        item.insert(name.to_owned(), value);
    }
    crate::versioned::from_item(&item).map_err(|e| e.to_string())
}
