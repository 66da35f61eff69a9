//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
pub(crate) const DOC: &str = "doc";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// Why an item could not be read back into the domain.
#[derive(Debug, thiserror::Error)]
#[error("malformed item: {0}")]
pub(crate) struct Malformed(pub String);

impl From<Malformed> for pointsflow_core::ports::StoreError {
    fn from(e: Malformed) -> Self {
        pointsflow_core::ports::StoreError::Malformed(e.0)
    }
}

impl From<Malformed> for pointsflow_core::ledger::LedgerError {
    fn from(e: Malformed) -> Self {
        pointsflow_core::ledger::LedgerError::Unreadable(e.0)
    }
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, Malformed> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(Malformed(format!("no string attribute {name}"))),
    }
}

/// A counter: absent means zero; a negative value is corruption.
pub(crate) fn counter(item: &Item, name: &str) -> Result<u64, Malformed> {
    match item.get(name) {
        None => Ok(0),
        Some(AttributeValue::N(v)) => v
            .parse::<u64>()
            .map_err(|_| Malformed(format!("{name} is not a non-negative integer: {v}"))),
        Some(_) => Err(Malformed(format!("{name} is not a number"))),
    }
}

/// A document longer than this many bytes of JSON is stored deflated.
const DEFLATE_ABOVE: usize = 512;

/// The most a stored document may inflate to: an item holds at most
/// 400 KB, and JSON deflates about two to ten times.
const MAX_INFLATED: usize = 8 << 20;

/// An item's document: its JSON as a string, or deflated (RFC 1951) into a
/// binary attribute when longer than [`DEFLATE_ABOVE`] bytes. DynamoDB
/// bills a write per KB of the item, and a request's JSON (its timeline,
/// hashes and references) halves when deflated, so every write of a
/// request item fits in one unit; a window credit's list of requests
/// shrinks more.
pub(crate) fn doc_value(json: String) -> AttributeValue {
    if json.len() <= DEFLATE_ABOVE {
        return s(json);
    }
    AttributeValue::B(Blob::new(miniz_oxide::deflate::compress_to_vec(
        json.as_bytes(),
        6,
    )))
}

/// Reads an item's document, stored either way [`doc_value`] writes it.
pub(crate) fn doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, Malformed> {
    let bad = |e: &dyn std::fmt::Display| Malformed(format!("{DOC}: {e}"));
    match item.get(DOC) {
        Some(AttributeValue::S(json)) => serde_json::from_str(json).map_err(|e| bad(&e)),
        Some(AttributeValue::B(deflated)) => {
            let json =
                miniz_oxide::inflate::decompress_to_vec_with_limit(deflated.as_ref(), MAX_INFLATED)
                    .map_err(|e| bad(&format!("cannot inflate: {e}")))?;
            serde_json::from_slice(&json).map_err(|e| bad(&e))
        }
        _ => Err(Malformed(format!("no document attribute {DOC}"))),
    }
}

/// A call the store could not answer now (retried by the caller).
pub(crate) fn unavailable(e: impl std::error::Error) -> pointsflow_core::ports::StoreError {
    pointsflow_core::ports::StoreError::Unavailable(
        aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item_with(value: AttributeValue) -> Item {
        HashMap::from([(DOC.to_owned(), value)])
    }

    #[test]
    fn a_short_document_stays_readable_and_a_long_one_is_deflated() {
        let short = serde_json::json!({"state": "received"}).to_string();
        assert!(matches!(doc_value(short.clone()), AttributeValue::S(s) if s == short));

        let timeline: Vec<String> = (0..40)
            .map(|i| format!("step {i} of the request"))
            .collect();
        let long = serde_json::json!({ "timeline": timeline }).to_string();
        let stored = doc_value(long.clone());
        let AttributeValue::B(bytes) = &stored else {
            panic!("a long document is stored as a binary attribute: {stored:?}");
        };
        assert!(
            bytes.as_ref().len() * 2 < long.len(),
            "deflated to {} of {}",
            bytes.as_ref().len(),
            long.len()
        );
        let read: serde_json::Value = doc(&item_with(stored)).unwrap();
        assert_eq!(read.to_string(), long);
        // An item written before documents were deflated reads the same.
        let read: serde_json::Value = doc(&item_with(s(long.clone()))).unwrap();
        assert_eq!(read.to_string(), long);
    }

    #[test]
    fn a_corrupt_or_oversized_document_is_refused_not_inflated_without_bound() {
        let garbage = item_with(AttributeValue::B(Blob::new(vec![0xff; 64])));
        assert!(doc::<serde_json::Value>(&garbage).is_err());
        // 16 MB of one byte deflates to a few KB: reading it stops at the limit.
        let bomb = miniz_oxide::deflate::compress_to_vec(&vec![b' '; 16 << 20], 6);
        assert!(bomb.len() < 64 << 10);
        let err =
            doc::<serde_json::Value>(&item_with(AttributeValue::B(Blob::new(bomb)))).unwrap_err();
        assert!(err.0.contains("cannot inflate"), "{err}");
        assert!(doc::<serde_json::Value>(&item_with(n(1))).is_err());
    }
}
