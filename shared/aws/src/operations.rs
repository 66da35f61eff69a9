//! The operators' audit log in the table (`AUDIT#{day}` / `{started}#{id}`,
//! so a day's commands are one query), request search (a scan of the
//! request items: operators' searches are rare, and each reads the table
//! once at most), and dead-letter redrive over SQS.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use chrono::NaiveDate;
use pointsflow_core::operations::{
    AuditEntry, AuditLog, DeadLetters, RedriveReport, RequestSearch, SearchFilter,
};
use pointsflow_core::ports::StoreError;
use pointsflow_core::request::PointsRequest;

use crate::item::{DOC, Item, doc, key, s};

fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

fn audit_pk(day: NaiveDate) -> String {
    format!("AUDIT#{day}")
}

#[derive(Debug, Clone)]
pub struct DynamoAuditLog {
    client: Client,
    table: String,
}

impl DynamoAuditLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl AuditLog for DynamoAuditLog {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let body = serde_json::to_string(entry)
            .map_err(|e| StoreError::Unavailable(format!("audit entry: {e}")))?;
        let mut item = key(
            audit_pk(entry.started_at.date_naive()),
            format!("{}#{}", entry.started_at.to_rfc3339(), entry.id),
        );
        item.insert(DOC.into(), s(body));
        item.insert("operator".into(), s(entry.operator.as_str()));
        item.insert("command".into(), s(entry.command.clone()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn entries(&self, day: NaiveDate) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(audit_pk(day)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in page.items() {
                out.push(doc(item).map_err(|e| StoreError::Unavailable(e.to_string()))?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl RequestSearch for crate::DynamoRequestStore {
    async fn search(
        &self,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<PointsRequest>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client()
                .scan()
                .table_name(self.table())
                .filter_expression("sk = :request")
                .expression_attribute_values(":request", s("REQUEST"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in page.items() {
                let request: PointsRequest =
                    doc(item).map_err(|e| StoreError::Unavailable(e.to_string()))?;
                if filter.matches(&request) {
                    found.push(request);
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() && found.len() < limit => start = Some(k.clone()),
                _ => break,
            }
        }
        found.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        found.truncate(limit);
        Ok(found)
    }
}

/// A queue's dead-letter queue, redriven into the queue by receiving,
/// sending and then deleting (so a crash duplicates, never loses).
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    dead_letter_url: String,
    source_url: String,
}

impl SqsDeadLetters {
    pub fn new(
        client: aws_sdk_sqs::Client,
        dead_letter_url: impl Into<String>,
        source_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            dead_letter_url: dead_letter_url.into(),
            source_url: source_url.into(),
        }
    }
}

fn sqs_error<E: std::error::Error>(e: E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    async fn redrive(&self, max: u64) -> Result<RedriveReport, String> {
        let mut report = RedriveReport::default();
        while report.moved + report.failed < max {
            let want = (max - report.moved - report.failed).min(10) as i32;
            let received = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(want)
                .wait_time_seconds(0)
                .visibility_timeout(60)
                .send()
                .await
                .map_err(|e| sqs_error(e.into_service_error()))?;
            let messages = received.messages();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let (Some(body), Some(handle)) = (m.body(), m.receipt_handle()) else {
                    report.failed += 1;
                    continue;
                };
                let sent = self
                    .client
                    .send_message()
                    .queue_url(&self.source_url)
                    .message_body(body)
                    .send()
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %sqs_error(e.into_service_error()), "could not move a dead letter back");
                    report.failed += 1;
                    continue;
                }
                match self
                    .client
                    .delete_message()
                    .queue_url(&self.dead_letter_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                {
                    Ok(_) => report.moved += 1,
                    Err(e) => {
                        // Sent but not deleted: it is redriven again later,
                        // a duplicate every consumer ignores.
                        tracing::warn!(error = %sqs_error(e.into_service_error()), "moved a dead letter but could not delete it");
                        report.moved += 1;
                    }
                }
            }
        }
        report.left = self.depth().await?;
        Ok(report)
    }

    async fn depth(&self) -> Result<u64, String> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.dead_letter_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .map_err(|e| sqs_error(e.into_service_error()))?;
        Ok(out
            .attributes()
            .map(|a| {
                a.values()
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .unwrap_or(0))
    }
}
