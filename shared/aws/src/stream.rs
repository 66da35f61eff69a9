//! The table's stream as Lambda hands it to a function: each record's
//! item before and after one write (view type `NEW_AND_OLD_IMAGES`), read
//! here into [`Change`]s of points requests, member links and window
//! credits. The images are DynamoDB JSON (`{"S": ...}`, `{"N": ...}`,
//! `{"B": base64}`); only the attributes an item is read from (`pk`, `sk`,
//! `doc`, `version`) are looked at.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use pointsflow_core::events::{Change, Write};
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

/// The changes of `event` (of points requests, member links and window
/// credits), in order, up to the first record that cannot be read
/// (returned with them: retry from it). A record of another kind of item,
/// or a removal, is no such change and is passed over.
pub fn changes(event: &StreamEvent) -> (Vec<Change>, Option<UnreadRecord>) {
    let mut changes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        let data = &record.dynamodb;
        let unread = |problem: String| UnreadRecord {
            position: data.sequence_number.clone(),
            problem,
        };
        let key = string(&data.keys, PK).unwrap_or_default();
        let sort = string(&data.keys, SK).unwrap_or_default();
        let Some(kind) = kind_of(&key, &sort) else {
            continue;
        };
        if record.event_name == "REMOVE" {
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
        match write(kind, data.old_image.as_ref(), new) {
            Ok(write) => changes.push(Change {
                position: data.sequence_number.clone(),
                write,
            }),
            Err(e) => return (changes, Some(unread(e))),
        }
    }
    (changes, None)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Request,
    Link,
    Credit,
}

/// Whether a write of the item keyed `pk`, `sk` is read into a change:
/// the function's event filter lets through exactly these.
pub fn is_event_item(pk: &str, sk: &str) -> bool {
    kind_of(pk, sk).is_some()
}

fn kind_of(pk: &str, sk: &str) -> Option<Kind> {
    if pk.starts_with("REQ#") && sk == crate::store::REQUEST_SK {
        Some(Kind::Request)
    } else if pk.starts_with("LINK#") && sk.starts_with(crate::enrollments::LINK_SK_PREFIX) {
        Some(Kind::Link)
    } else if pk.starts_with("CREDIT#") && sk == crate::windows::CREDIT_SK {
        Some(Kind::Credit)
    } else {
        None
    }
}

fn write(kind: Kind, old: Option<&Image>, new: &Image) -> Result<Write, String> {
    Ok(match kind {
        Kind::Request => Write::Request {
            before: old.map(versioned).transpose()?,
            after: versioned(new)?,
        },
        Kind::Link => Write::Link {
            before: old.map(plain).transpose()?,
            after: plain(new)?,
        },
        Kind::Credit => Write::Credit {
            before: old.map(versioned).transpose()?,
            after: versioned(new)?,
        },
    })
}

/// A versioned item (a request, a credit) from its image.
fn versioned<T: crate::versioned::Versioned>(image: &Image) -> Result<T, String> {
    crate::versioned::from_item(&item(image)?).map_err(|e| e.to_string())
}

/// An item kept as its document alone (a link) from its image.
fn plain<T: serde::de::DeserializeOwned>(image: &Image) -> Result<T, String> {
    crate::item::doc(&item(image)?).map_err(|e| e.to_string())
}

type Image = HashMap<String, serde_json::Value>;

fn string(image: &HashMap<String, serde_json::Value>, name: &str) -> Option<String> {
    image.get(name)?.get("S")?.as_str().map(str::to_owned)
}

/// The attributes an item is read from (its document and version), from
/// its image.
fn item(image: &Image) -> Result<Item, String> {
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
    Ok(item)
}
