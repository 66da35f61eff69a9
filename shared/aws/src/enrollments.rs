//! Member links over DynamoDB: one item per (program, recipient), replaced
//! whole when the recipient is linked again, unlinked (the item stays,
//! marked `removed`) or the partner's validation of the member is
//! recorded; and each link's history, one item per change under
//! `LINKHIST#{program}#{recipient}`, never changed.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use pointsflow_core::enrollment::{LinkEvent, MemberLink};
use pointsflow_core::ports::{Enrollments, LinkHistory, StoreError};
use pointsflow_core::values::{MemberNumber, ProgramId, RecipientId};

use crate::item::unavailable;
use crate::item::{self, DOC, doc, s};
use crate::tables;

#[derive(Debug, Clone)]
pub struct DynamoEnrollments {
    client: Client,
    table: String,
}

/// The start of a link's sort key.
pub(crate) const LINK_SK_PREFIX: &str = "RECIPIENT#";

fn key(program: &ProgramId, recipient: &RecipientId) -> item::Item {
    item::key(
        format!("LINK#{program}"),
        format!("{LINK_SK_PREFIX}{recipient}"),
    )
}

impl DynamoEnrollments {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Enrollments for DynamoEnrollments {
    async fn member_link(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Option<MemberLink>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(program, recipient)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        out.item()
            .map(|i| doc(i).map_err(StoreError::from))
            .transpose()
    }

    async fn replace_link(
        &self,
        link: &MemberLink,
        previous: &MemberNumber,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(link)?))
            .condition_expression(
                "attribute_not_exists(pk) OR (#member = :previous AND attribute_not_exists(removed))",
            )
            .expression_attribute_names("#member", "member")
            .expression_attribute_values(":previous", s(previous.as_str()));
        put_if(put).await
    }

    async fn create_link(&self, link: &MemberLink) -> Result<Option<MemberLink>, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(link)?))
            .condition_expression("attribute_not_exists(pk) OR attribute_exists(removed)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => match failed.item() {
                    Some(item) => Ok(Some(doc(item)?)),
                    None => self
                        .member_link(&link.program, &link.recipient)
                        .await?
                        .map(Some)
                        .ok_or_else(|| {
                            StoreError::Unavailable(
                                "the link's condition failed but no link is there".into(),
                            )
                        }),
                },
                other => Err(unavailable(other)),
            },
        }
    }

    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError> {
        // The same link: member, names, and when it was made (a link made
        // again meanwhile, even to the same member, is not rolled back). A
        // link stored before `linked_at` was kept as an attribute passes
        // on member and names, as it did then.
        let (made, at) = match link.linked_at {
            Some(at) => (
                "(attribute_not_exists(linked_at) OR linked_at = :linked_at)",
                Some(linked_at(at)),
            ),
            None => ("attribute_not_exists(linked_at)", None),
        };
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(link)?))
            .condition_expression(format!(
                "attribute_not_exists(pk) OR (#member = :member AND first_name = :first AND last_name = :last AND attribute_not_exists(removed) AND {made})"
            ))
            .expression_attribute_names("#member", "member")
            .expression_attribute_values(":member", s(link.member.as_str()))
            .expression_attribute_values(":first", s(&link.first_name))
            .expression_attribute_values(":last", s(&link.last_name));
        if let Some(at) = at {
            put = put.expression_attribute_values(":linked_at", s(at));
        }
        put_if(put).await
    }
}

/// When a link was made, as its item's `linked_at` attribute keeps it.
fn linked_at(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Sends a conditional put: `false` when its condition does not hold.
async fn put_if(put: PutItemFluentBuilder) -> Result<bool, StoreError> {
    match put.send().await {
        Ok(_) => Ok(true),
        Err(e) => match e.into_service_error() {
            PutItemError::ConditionalCheckFailedException(_) => Ok(false),
            other => Err(unavailable(other)),
        },
    }
}

fn to_item(link: &MemberLink) -> Result<item::Item, StoreError> {
    let body = serde_json::to_string(link)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the link: {e}")))?;
    let mut item = key(&link.program, &link.recipient);
    item.insert(DOC.into(), item::doc_value(body));
    item.insert("member".into(), s(link.member.as_str()));
    member_lookup(&mut item, &link.member);
    item.insert("first_name".into(), s(&link.first_name));
    item.insert("last_name".into(), s(&link.last_name));
    if link.removed.is_some() {
        item.insert("removed".into(), s("true"));
    }
    if let Some(at) = link.linked_at {
        item.insert("linked_at".into(), s(linked_at(at)));
    }
    Ok(item)
}

/// The history of every link, in the same table.
#[derive(Debug, Clone)]
pub struct DynamoLinkHistory {
    client: Client,
    table: String,
}

impl DynamoLinkHistory {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// Puts a link, or a change away from `member`, in the `lookup` index
/// under the member: every member a recipient was ever linked to is the
/// current link's or a change's `from`, so a search by member finds every
/// recipient whose requests may carry it.
fn member_lookup(item: &mut item::Item, member: &MemberNumber) {
    item.insert(tables::LOOKUP_PK.into(), s(format!("MEMBER#{member}")));
}

/// The program and recipient of a `lookup` entry made by [`member_lookup`],
/// from its keys: a link's (`LINK#{program}` / `RECIPIENT#{recipient}`) or
/// a history item's (`LINKHIST#{program}#{recipient}`).
pub(crate) fn linked_recipient(keys: &item::Item) -> Option<(ProgramId, RecipientId)> {
    let pk = item::get_s(keys, item::PK).ok()?;
    let (program, recipient) = match pk.strip_prefix("LINK#") {
        Some(program) => (
            program,
            item::get_s(keys, item::SK)
                .ok()?
                .strip_prefix("RECIPIENT#")?,
        ),
        None => pk.strip_prefix("LINKHIST#")?.split_once('#')?,
    };
    Some((
        ProgramId::parse(program).ok()?,
        RecipientId::parse(recipient).ok()?,
    ))
}

fn history_pk(program: &ProgramId, recipient: &RecipientId) -> String {
    format!("LINKHIST#{program}#{recipient}")
}

#[async_trait]
impl LinkHistory for DynamoLinkHistory {
    async fn record(&self, event: &LinkEvent) -> Result<(), StoreError> {
        let body = serde_json::to_string(event)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the link event: {e}")))?;
        // The same event again lands on the same key: a repeat is harmless.
        let digest = {
            use sha2::{Digest, Sha256};
            hex::encode(&Sha256::digest(body.as_bytes())[..8])
        };
        let mut item = item::key(
            history_pk(&event.program, &event.recipient),
            format!(
                "{}#{digest}",
                event
                    .at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
        );
        item.insert(DOC.into(), item::doc_value(body));
        if let Some(from) = &event.from {
            member_lookup(&mut item, from);
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(unavailable(other)),
            },
        }
    }

    async fn history(
        &self,
        program: &ProgramId,
        recipient: &RecipientId,
    ) -> Result<Vec<LinkEvent>, StoreError> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(history_pk(program, recipient)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for i in out.items() {
                events.push(doc(i)?);
            }
            match out.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => break,
            }
        }
        Ok(events)
    }
}
