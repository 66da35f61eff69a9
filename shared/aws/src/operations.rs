//! The operators' audit log in the table (`AUDIT#{day}` / `{started}#{id}`,
//! so a day's commands are one query), request search and the requests of
//! a reconciliation (from the indexes: `record`, `lookup`, `day`, and a
//! window's credits; never a scan), and dead-letter redrive over SQS.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, NaiveDate, Utc};
use pointsflow_core::audit::AuditEntry;
use pointsflow_core::ports::ScheduledRequests;
use pointsflow_core::ports::{
    AuditLog, DeadLetters, QueueError, RedriveReport, ReportStore, RequestLines, RequestSearch,
    StoreError,
};
use pointsflow_core::reconcile::{LinePage, ReconcileReport, RequestLine, Scope};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::search::{Lookup, SearchFilter};
use pointsflow_core::values::{PartnerReference, RecipientId, RequestId};
use pointsflow_core::window::{WindowCredit, WindowId};
use std::collections::HashSet;

use crate::days;
use crate::item::unavailable;
use crate::item::{self, DOC, Item, doc, get_s, key, s};
use crate::tables;

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
        item.insert(DOC.into(), item::doc_value(body));
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
                out.push(doc(item).map_err(StoreError::from)?);
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
    /// Reads the requests under the filter's [`Lookup`] key, then keeps
    /// those that match the rest: what a search reads grows with what it
    /// finds, or with the period it names, never with the table.
    async fn search(
        &self,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<PointsRequest>, StoreError> {
        let lookup = filter.lookup().ok_or_else(|| {
            StoreError::Unavailable("a search needs a key or a period to start from".into())
        })?;
        let mut found = Vec::new();
        match lookup {
            Lookup::SourceRecord(record) => {
                let ids = self
                    .index_ids(
                        tables::RECORD_INDEX,
                        tables::RECORD_PK,
                        format!("REC#{record}"),
                    )
                    .await?;
                found = self.matching(&ids, filter).await?;
            }
            Lookup::Recipient(recipient) => {
                let ids = self.recipient_ids(recipient).await?;
                found = self.matching(&ids, filter).await?;
            }
            Lookup::Member(member) => {
                let mut recipients: Vec<RecipientId> = Vec::new();
                for key in self
                    .index_keys(
                        tables::LOOKUP_INDEX,
                        tables::LOOKUP_PK,
                        format!("MEMBER#{member}"),
                    )
                    .await?
                {
                    let linked = crate::enrollments::linked_recipient(&key);
                    if let Some((_, recipient)) = linked
                        && !recipients.contains(&recipient)
                    {
                        recipients.push(recipient);
                    }
                }
                for recipient in &recipients {
                    let ids = self.recipient_ids(recipient).await?;
                    found.extend(self.matching(&ids, filter).await?);
                }
            }
            Lookup::Window(window) => {
                let window = WindowId::parse(window)
                    .map_err(|e| StoreError::Malformed(format!("window: {e}")))?;
                let ids = self.window_ids(&window).await?;
                found = self.matching(&ids, filter).await?;
            }
            Lookup::Period(from, to) => {
                let (first, last) = days::hours(from, to);
                let mut at = Some(days::Position::start(first));
                while let Some(position) = at
                    && found.len() < limit
                {
                    let (ids, next) = self.day_page(position, last, READ_PAGE).await?;
                    found.extend(self.matching(&ids, filter).await?);
                    at = next;
                }
            }
        }
        found.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        found.truncate(limit);
        Ok(found)
    }
}

impl crate::DynamoRequestStore {
    /// The requests of `ids` that match `filter`.
    async fn matching(
        &self,
        ids: &[RequestId],
        filter: &SearchFilter,
    ) -> Result<Vec<PointsRequest>, StoreError> {
        Ok(self
            .requests(ids)
            .await?
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect())
    }

    /// Every key under `value` of an index's partition key.
    async fn index_keys(
        &self,
        index: &str,
        pk: &str,
        value: String,
    ) -> Result<Vec<Item>, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(index)
                .key_condition_expression("#pk = :value")
                .expression_attribute_names("#pk", pk)
                .expression_attribute_values(":value", s(value.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            keys.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(keys),
            }
        }
    }

    /// The request ids of an index's entries under `value`.
    async fn index_ids(
        &self,
        index: &str,
        pk: &str,
        value: String,
    ) -> Result<Vec<RequestId>, StoreError> {
        self.index_keys(index, pk, value)
            .await?
            .iter()
            .filter_map(|k| get_s(k, crate::item::PK).ok())
            .filter_map(|pk| pk.strip_prefix("REQ#"))
            .map(|id| {
                RequestId::parse(id).map_err(|e| StoreError::Malformed(format!("index entry: {e}")))
            })
            .collect()
    }

    async fn recipient_ids(&self, recipient: &RecipientId) -> Result<Vec<RequestId>, StoreError> {
        self.index_ids(
            tables::LOOKUP_INDEX,
            tables::LOOKUP_PK,
            format!("RCPT#{recipient}"),
        )
        .await
    }

    /// The requests of a window: those still scheduled for it (its
    /// program's scheduled index, kept to the window), and those its
    /// credits carry.
    async fn window_ids(&self, window: &WindowId) -> Result<Vec<RequestId>, StoreError> {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .scheduled(window.program(), after.as_ref(), READ_PAGE)
                .await?;
            ids.extend(
                page.entries
                    .iter()
                    .filter(|e| &e.window == window)
                    .map(|e| e.id.clone()),
            );
            after = page.entries.last().map(|e| e.cursor());
            if !page.more {
                break;
            }
        }
        for key in self
            .index_keys(
                tables::WAITING_INDEX,
                tables::WAIT_PK,
                format!("CREDITS#{window}"),
            )
            .await?
        {
            let credit = self
                .client()
                .get_item()
                .table_name(self.table())
                .set_key(Some(crate::item::key(
                    get_s(&key, crate::item::PK)?.to_owned(),
                    get_s(&key, crate::item::SK)?.to_owned(),
                )))
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            if let Some(item) = credit.item() {
                let credit: WindowCredit = doc(item).map_err(StoreError::from)?;
                ids.extend(credit.requests);
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

#[async_trait]
impl RequestLines for crate::DynamoRequestStore {
    /// A period is read from the `day` index, day by day, a page of up to
    /// `limit` requests at a time; a window's requests from its credits and
    /// its program's scheduled index, in one page.
    async fn lines(
        &self,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<LinePage, StoreError> {
        let (from, to) = match scope {
            Scope::Period { from, to, .. } => (*from, *to),
            Scope::Window(window) => {
                // A window's requests are few enough for one page.
                let mut requests = self.requests(&self.window_ids(window).await?).await?;
                requests.sort_by(|a, b| a.id.cmp(&b.id));
                return Ok(LinePage {
                    lines: requests
                        .iter()
                        .filter(|r| scope.covers(r))
                        .map(RequestLine::of)
                        .collect(),
                    next: None,
                });
            }
        };
        let (first, last) = days::hours(from, to);
        let at = match after {
            Some(cursor) => days::Position::parse(cursor)?,
            None => days::Position::start(first),
        };
        let (ids, next) = self.day_page(at, last, limit).await?;
        let mut requests = self.requests(&ids).await?;
        requests.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(LinePage {
            lines: requests
                .iter()
                .filter(|r| scope.covers(r))
                .map(RequestLine::of)
                .collect(),
            next: next.map(|p| p.cursor()),
        })
    }

    async fn known_references(
        &self,
        references: &HashSet<PartnerReference>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashSet<PartnerReference>, StoreError> {
        let mut known = HashSet::new();
        if references.is_empty() {
            return Ok(known);
        }
        let (first, last) = days::hours(from, to);
        let mut at = Some(days::Position::start(first));
        while let Some(position) = at {
            let (ids, next) = self.day_page(position, last, READ_PAGE).await?;
            known.extend(
                self.requests(&ids)
                    .await?
                    .into_iter()
                    .filter(|r| {
                        let sent = pointsflow_core::reconcile::period_time(r);
                        sent >= from && sent < to
                    })
                    .filter_map(|r| r.partner_reference)
                    .filter(|r| references.contains(r)),
            );
            at = next;
        }
        Ok(known)
    }
}

/// How many request ids one read of the `day` index asks for.
const READ_PAGE: usize = 1_000;

/// Reconciliation reports (`REPORT#{id}` / `REPORT`), each replaced by a rerun.
#[derive(Debug, Clone)]
pub struct DynamoReportStore {
    client: Client,
    table: String,
}

impl DynamoReportStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ReportStore for DynamoReportStore {
    async fn put_report(&self, report: &ReconcileReport) -> Result<(), StoreError> {
        let body = serde_json::to_string(report)
            .map_err(|e| StoreError::Unavailable(format!("report: {e}")))?;
        let mut item = key(format!("REPORT#{}", report.id), "REPORT");
        item.insert(DOC.into(), item::doc_value(body));
        item.insert("mismatches".into(), crate::item::n(report.mismatch_count));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn report(&self, id: &str) -> Result<Option<ReconcileReport>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("REPORT#{id}"), "REPORT")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        out.item()
            .map(|item| doc(item).map_err(StoreError::from))
            .transpose()
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

fn sqs_error<E: std::error::Error>(e: E) -> QueueError {
    QueueError::Unavailable(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

#[async_trait]
impl DeadLetters for SqsDeadLetters {
    async fn redrive(&self, max: u64) -> Result<RedriveReport, QueueError> {
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

    async fn depth(&self) -> Result<u64, QueueError> {
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
