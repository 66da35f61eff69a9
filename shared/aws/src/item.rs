//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

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

pub(crate) fn doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, Malformed> {
    serde_json::from_str(get_s(item, DOC)?).map_err(|e| Malformed(format!("{DOC}: {e}")))
}

/// A call the store could not answer now (retried by the caller).
pub(crate) fn unavailable(e: impl std::error::Error) -> pointsflow_core::ports::StoreError {
    pointsflow_core::ports::StoreError::Unavailable(
        aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    )
}
