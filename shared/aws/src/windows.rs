//! Window runs and credits over DynamoDB: one item each, created with a put
//! conditional on the item not existing and saved with a put conditional on
//! the version read. A run is `WINDOW#{window}`; a credit is
//! `CREDIT#{credit}`, in its own partition (a large window's credits spread
//! over the table), and in the `waiting` index under its window and state,
//! so a window's progress is a query of its settled credits: no counter is
//! written by every settlement.

use crate::item::unavailable;
use crate::item::{self, Item, counter, n, s};
use crate::tables;
use crate::versioned::{Versioned, VersionedTable};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use pointsflow_core::ports::{StoreError, UnsettledIndex, WindowStore};
use pointsflow_core::unsettled::{Unsettled, UnsettledItem, credit_unsettled_since};
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, CreditState, RunCounts, WindowCredit, WindowId, WindowRun,
};

const RUN_SK: &str = "RUN";
pub(crate) const CREDIT_SK: &str = "CREDIT";

#[derive(Debug, Clone)]
pub struct DynamoWindowStore {
    items: VersionedTable,
}

fn malformed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed(e.to_string())
}

fn run_key(window: &WindowId) -> Item {
    item::key(format!("WINDOW#{window}"), RUN_SK)
}

fn credit_key(id: &CreditId) -> Item {
    item::key(format!("CREDIT#{id}"), CREDIT_SK)
}

fn state_name(state: &CreditState) -> &'static str {
    match state {
        CreditState::Planning => "planning",
        CreditState::Planned => "planned",
        CreditState::Empty => "empty",
        CreditState::Dispatching => "dispatching",
        CreditState::PartnerPending => "partner_pending",
        CreditState::Unknown => "unknown",
        CreditState::Credited { .. } => "credited",
        CreditState::Failed { .. } => "failed",
    }
}

fn credits_pk(window: &WindowId) -> String {
    format!("CREDITS#{window}")
}

impl Versioned for WindowRun {
    fn key(&self) -> Item {
        run_key(&self.window)
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

impl Versioned for WindowCredit {
    fn key(&self) -> Item {
        credit_key(&self.id)
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn extra(&self, item: &mut Item) {
        item.insert(tables::WAIT_PK.into(), s(credits_pk(&self.window)));
        item.insert(
            tables::WAIT_SK.into(),
            s(format!("{}#{}", state_name(&self.state), self.id)),
        );
        item.insert("points".into(), n(self.points.get()));
        item.insert("requests".into(), n(self.requests.len()));
        if let Some(since) = credit_unsettled_since(self) {
            crate::unsettled::index(item, &format!("CREDIT#{}", self.id), since);
        }
    }
}

impl DynamoWindowStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            items: VersionedTable {
                client,
                table: table.into(),
            },
        }
    }

    /// Sums the window's credits in `state` from the index.
    async fn sum_credits(
        &self,
        window: &WindowId,
        state: &str,
    ) -> Result<(u64, u64, u64), StoreError> {
        let (mut credits, mut requests, mut points) = (0u64, 0u64, 0u64);
        let mut start = None;
        loop {
            let page = self
                .items
                .client
                .query()
                .table_name(&self.items.table)
                .index_name(tables::WAITING_INDEX)
                .key_condition_expression("wait_pk = :pk AND begins_with(wait_sk, :state)")
                .expression_attribute_values(":pk", s(credits_pk(window)))
                .expression_attribute_values(":state", s(format!("{state}#")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unavailable(e.into_service_error()))?;
            for item in page.items() {
                credits += 1;
                requests += counter(item, "requests").map_err(malformed)?;
                points += counter(item, "points").map_err(malformed)?;
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok((credits, requests, points)),
            }
        }
    }
}

#[async_trait]
impl WindowStore for DynamoWindowStore {
    #[tracing::instrument(skip_all, fields(window = %run.window))]
    async fn claim(&self, run: &WindowRun) -> Result<Claim, StoreError> {
        Ok(match self.items.create(run).await? {
            None => {
                let mut started = run.clone();
                started.version = 0;
                Claim::Started(started)
            }
            Some(existing) => Claim::Existing(existing),
        })
    }

    async fn run(&self, window: &WindowId) -> Result<Option<WindowRun>, StoreError> {
        self.items.read(run_key(window)).await
    }

    #[tracing::instrument(skip_all, fields(window = %run.window, version = run.version))]
    async fn save_run(&self, run: &WindowRun) -> Result<u64, StoreError> {
        self.items.save(run).await
    }

    #[tracing::instrument(skip_all, fields(credit = %credit.id))]
    async fn create_credit(&self, credit: &WindowCredit) -> Result<CreditCreated, StoreError> {
        Ok(match self.items.create(credit).await? {
            None => CreditCreated::New,
            Some(existing) => CreditCreated::Existing(Box::new(existing)),
        })
    }

    async fn credit(&self, id: &CreditId) -> Result<Option<WindowCredit>, StoreError> {
        self.items.read(credit_key(id)).await
    }

    #[tracing::instrument(skip_all, fields(credit = %credit.id, version = credit.version))]
    async fn save_credit(&self, credit: &WindowCredit) -> Result<u64, StoreError> {
        self.items.save(credit).await
    }

    async fn settled(&self, window: &WindowId) -> Result<RunCounts, StoreError> {
        let (credited, credited_requests, credited_points) =
            self.sum_credits(window, "credited").await?;
        let (failed, failed_requests, _) = self.sum_credits(window, "failed").await?;
        Ok(RunCounts {
            credited,
            credited_requests,
            credited_points,
            failed,
            failed_requests,
            ..RunCounts::default()
        })
    }
}

#[async_trait]
impl UnsettledIndex for DynamoWindowStore {
    async fn unsettled(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        crate::unsettled::query(&self.items, "CREDIT#", before, limit)
            .await?
            .into_iter()
            .map(|(since, id)| {
                Ok(Unsettled {
                    since,
                    item: UnsettledItem::Credit(
                        CreditId::parse(&id).map_err(StoreError::Unavailable)?,
                    ),
                })
            })
            .collect()
    }
}
