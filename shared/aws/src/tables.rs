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
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};

/// The sparse index of requests waiting for enrollment, by program.
pub const WAITING_INDEX: &str = "waiting";
pub const WAIT_PK: &str = "wait_pk";
pub const WAIT_SK: &str = "wait_sk";
/// The sparse index of requests and credits whose partner outcome is not
/// settled (`unknown`, `partner_pending`), keys only.
pub const UNSETTLED_INDEX: &str = "unsettled";
pub const UNSETTLED_PK: &str = "unsettled_pk";
pub const UNSETTLED_SK: &str = "unsettled_sk";
/// Every request by the day it counts for in a reconciliation (sent to
/// the partner, or received), keys only: a period is read by its days.
pub const DAY_INDEX: &str = "day";
pub const DAY_PK: &str = "day_pk";
/// Requests by recipient (`RCPT#{recipient}`), and links and link history
/// by member (`MEMBER#{member}`), keys only: what a search by recipient or
/// member reads.
pub const LOOKUP_INDEX: &str = "lookup";
pub const LOOKUP_PK: &str = "lookup_pk";
/// Requests by the source's record id (`REC#{record}`), keys only.
pub const RECORD_INDEX: &str = "record";
pub const RECORD_PK: &str = "record_pk";

/// What the index projects beside its keys: a waiting request's recipient,
/// a scheduled request's member, destination, points and window, and a
/// window credit's points and number of requests.
pub const INDEXED_ATTRIBUTES: [&str; 7] = [
    "recipient",
    "member",
    "partner",
    "partner_program",
    "points",
    "window",
    "requests",
];

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
    let waiting = GlobalSecondaryIndex::builder()
        .index_name(WAITING_INDEX)
        .key_schema(key(WAIT_PK, KeyType::Hash)?)
        .key_schema(key(WAIT_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    INDEXED_ATTRIBUTES.iter().map(|a| (*a).to_owned()).collect(),
                ))
                .build(),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let keys_only = |name: &str, pk: &str, sk: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(pk, KeyType::Hash)?)
            .key_schema(key(sk, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(|e| e.to_string())
    };
    let unsettled = keys_only(UNSETTLED_INDEX, UNSETTLED_PK, UNSETTLED_SK)?;
    // These three sort by the table's own key, which every item has: an
    // entry costs no attribute of its own beside its partition key.
    let day = keys_only(DAY_INDEX, DAY_PK, "pk")?;
    let lookup = keys_only(LOOKUP_INDEX, LOOKUP_PK, "pk")?;
    let record = keys_only(RECORD_INDEX, RECORD_PK, "pk")?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .attribute_definitions(attribute(WAIT_PK)?)
        .attribute_definitions(attribute(WAIT_SK)?)
        .attribute_definitions(attribute(UNSETTLED_PK)?)
        .attribute_definitions(attribute(UNSETTLED_SK)?)
        .attribute_definitions(attribute(DAY_PK)?)
        .attribute_definitions(attribute(LOOKUP_PK)?)
        .attribute_definitions(attribute(RECORD_PK)?)
        .global_secondary_indexes(waiting)
        .global_secondary_indexes(unsettled)
        .global_secondary_indexes(day)
        .global_secondary_indexes(lookup)
        .global_secondary_indexes(record)
        // Every write's item before and after, for the events function.
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| e.to_string())?,
        )
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

/// A queue and its dead-letter queue, as the template declares them.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, String> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    out.attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| format!("queue {url} has no ARN"))
}

/// Creates (or finds) queue `name` with a visibility timeout and a redrive
/// policy to `{name}-dlq` after `max_receive_count` receives.
pub async fn create_queue_pair(
    client: &aws_sdk_sqs::Client,
    name: &str,
    visibility_timeout_seconds: u32,
    max_receive_count: u32,
) -> Result<QueuePair, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let sqs_err =
        |e: aws_sdk_sqs::error::SdkError<_>| aws_sdk_sqs::error::DisplayErrorContext(e).to_string();
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(sqs_err)?;
    let dlq_url = dlq.queue_url().ok_or("no DLQ url")?.to_owned();
    let dlq_arn = queue_arn(client, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    })
    .to_string();
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_seconds.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(sqs_err)?;
    let url = queue.queue_url().ok_or("no queue url")?.to_owned();
    let arn = queue_arn(client, &url).await?;
    Ok(QueuePair {
        url,
        arn,
        dlq_url,
        dlq_arn,
    })
}

/// Creates event bus `name`, or finds it made already.
pub async fn create_event_bus(
    client: &aws_sdk_eventbridge::Client,
    name: &str,
) -> Result<(), String> {
    match client.create_event_bus().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string()),
    }
}
