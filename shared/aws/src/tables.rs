//! The DynamoDB table pointsflow uses, as the code needs it. The SAM template
//! declares the same table; the local stack and the tests create it with
//! [`create_ledger_table`].
//!
//! One table holds requests, ledger entries, account counters and cap
//! counters (see docs/data-model.md), keyed by `pk` (partition) and `sk` (sort).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// Creates the ledger table if it does not exist yet.
pub async fn create_ledger_table(client: &Client, name: &str) -> Result<(), String> {
    let key = |attribute: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
            .map_err(|e| e.to_string())
    };
    let attribute = |attribute: &str| {
        AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| e.to_string())
    };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e) => match e.into_service_error() {
            CreateTableError::ResourceInUseException(_) => Ok(()),
            other => Err(DisplayErrorContext(other).to_string()),
        },
    }
}
