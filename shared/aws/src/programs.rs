//! Applied programs over DynamoDB. The latest revision of every program is
//! one item in the `PROGRAMS` partition (a single Query reads them all), put
//! only if the stored revision is the one the writer read; each revision is
//! also kept, in the same transaction, under `PROGRAM#{id}` for the audit.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use pointsflow_core::ports::{ProgramStore, StoreError, StoredProgram};

use crate::item::unavailable;
use crate::item::{self, DOC, Item, doc, n, s};

const PARTITION: &str = "PROGRAMS";

#[derive(Debug, Clone)]
pub struct DynamoProgramStore {
    client: Client,
    table: String,
}

impl DynamoProgramStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn put(
        &self,
        mut item: Item,
        condition: &str,
        revision: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .condition_expression(condition);
        if let Some(previous) = revision {
            put = put.expression_attribute_values(":previous", n(previous));
        }
        item.insert("kind".into(), s("program"));
        let put = put
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl ProgramStore for DynamoProgramStore {
    async fn programs(&self) -> Result<Vec<StoredProgram>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(PARTITION))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in page.items() {
                out.push(doc(item).map_err(StoreError::from)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    #[tracing::instrument(skip_all, fields(program = %program.program.id, revision = program.revision))]
    async fn put_program(&self, program: &StoredProgram) -> Result<(), StoreError> {
        let id = &program.program.id;
        let body = serde_json::to_string(program)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the program: {e}")))?;
        let with_doc = |mut item: Item| {
            item.insert(DOC.into(), item::doc_value(body.clone()));
            item.insert("revision".into(), n(program.revision));
            item
        };
        let previous = program
            .revision
            .checked_sub(1)
            .ok_or(StoreError::Conflict { expected: 0 })?;
        let latest = if previous == 0 {
            self.put(
                with_doc(item::key(PARTITION.into(), format!("PROGRAM#{id}"))),
                "attribute_not_exists(pk)",
                None,
            )?
        } else {
            self.put(
                with_doc(item::key(PARTITION.into(), format!("PROGRAM#{id}"))),
                "revision = :previous",
                Some(previous),
            )?
        };
        let history = self.put(
            with_doc(item::key(
                format!("PROGRAM#{id}"),
                format!("REV#{:010}", program.revision),
            )),
            "attribute_not_exists(pk)",
            None,
        )?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(latest)
            .transact_items(history)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(c)
                    if c.cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    let stored = self
                        .programs()
                        .await?
                        .into_iter()
                        .find(|p| &p.program.id == id)
                        .map_or(0, |p| p.revision);
                    Err(StoreError::Conflict { expected: stored })
                }
                other => Err(unavailable(other)),
            },
        }
    }
}
