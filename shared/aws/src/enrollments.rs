//! Member links over DynamoDB: one item per (program, recipient), replaced
//! whole when the recipient is linked again or the partner's validation of
//! the member is recorded.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use pointsflow_core::enrollment::MemberLink;
use pointsflow_core::ports::{Enrollments, StoreError};
use pointsflow_core::values::{ProgramId, RecipientId};

use crate::item::{self, DOC, doc, s};

#[derive(Debug, Clone)]
pub struct DynamoEnrollments {
    client: Client,
    table: String,
}

fn unavailable(e: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

fn key(program: &ProgramId, recipient: &RecipientId) -> item::Item {
    item::key(format!("LINK#{program}"), format!("RECIPIENT#{recipient}"))
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

    async fn put_link(&self, link: &MemberLink) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(link)?))
            .send()
            .await
            .map_err(|e| unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn record_validation(&self, link: &MemberLink) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(link)?))
            .condition_expression(
                "attribute_not_exists(pk) OR (#member = :member AND first_name = :first AND last_name = :last)",
            )
            .expression_attribute_names("#member", "member")
            .expression_attribute_values(":member", s(link.member.as_str()))
            .expression_attribute_values(":first", s(&link.first_name))
            .expression_attribute_values(":last", s(&link.last_name))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(false),
                other => Err(unavailable(other)),
            },
        }
    }
}

fn to_item(link: &MemberLink) -> Result<item::Item, StoreError> {
    let body = serde_json::to_string(link)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode the link: {e}")))?;
    let mut item = key(&link.program, &link.recipient);
    item.insert(DOC.into(), s(body));
    item.insert("member".into(), s(link.member.as_str()));
    item.insert("first_name".into(), s(&link.first_name));
    item.insert("last_name".into(), s(&link.last_name));
    Ok(item)
}
