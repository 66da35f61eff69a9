//! The request store, one role at a time.

use async_trait::async_trait;

use super::error::StoreError;
use super::reconcile::RequestLines;
use super::unsettled::{SweepMarks, UnsettledIndex};
use super::windows::ScheduledRequests;
use crate::request::{PointsRequest, StatusKind};
use crate::search::SearchFilter;
use crate::values::{ProgramId, RecipientId, RequestId};

/// The outcome of a conditional create.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New,
    /// An item with this id already exists; here it is, as stored.
    Existing(Box<PointsRequest>),
}

#[async_trait]
pub trait RequestCreate: Send + Sync {
    /// Puts the request only if no request with its id exists.
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError>;
}

#[async_trait]
pub trait RequestGet: Send + Sync {
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError>;
}

#[async_trait]
pub trait RequestUpdate: Send + Sync {
    /// Replaces the stored request if its version is still `request.version`;
    /// the stored copy gets `version + 1`, which is returned.
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError>;
}

/// The requests of a program waiting in a state something else releases:
/// `awaiting_enrollment` (a link) or `held` (the program resuming).
#[async_trait]
pub trait WaitingRequests: Send + Sync {
    /// The ids of the requests in `state` for `recipient` in `program`
    /// (every recipient when `None`), oldest first. Only the waiting states
    /// are indexed: any other state finds nothing.
    async fn waiting(
        &self,
        program: &ProgramId,
        state: StatusKind,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError>;
}

/// Finds requests by what operators know of them.
#[async_trait]
pub trait RequestSearch: Send + Sync {
    /// Up to `limit` requests matching `filter`, oldest received first
    /// within what was read.
    async fn search(
        &self,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<PointsRequest>, StoreError>;
}

/// Every role of a request store: what an adapter implements, so a stack
/// hands each handler the roles it takes from one store.
pub trait RequestStore:
    RequestCreate
    + RequestGet
    + RequestUpdate
    + WaitingRequests
    + ScheduledRequests
    + RequestSearch
    + RequestLines
    + UnsettledIndex
    + SweepMarks
{
}

impl<T> RequestStore for T where
    T: RequestCreate
        + RequestGet
        + RequestUpdate
        + WaitingRequests
        + ScheduledRequests
        + RequestSearch
        + RequestLines
        + UnsettledIndex
        + SweepMarks
{
}
