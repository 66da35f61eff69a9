//! The request store: a map with DynamoDB's conditional-write semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::ports::{
    Created, RequestCreate, RequestGet, RequestUpdate, StoreError, WaitingForEnrollment,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{ProgramId, RecipientId, RequestId};

#[derive(Debug, Default)]
pub struct MemoryRequestStore {
    items: RwLock<Items>,
}

#[derive(Debug, Default)]
struct Items {
    // A B-tree of boxed requests: it grows a node at a time (a hash map would
    // stall every request to rehash them all), and moves pointers, not requests.
    requests: BTreeMap<RequestId, Box<PointsRequest>>,
    /// The requests in `awaiting_enrollment`, by program and recipient,
    /// oldest first (the DynamoDB adapter's sparse index).
    waiting: BTreeMap<(ProgramId, RecipientId), Waiting>,
}

/// One recipient's waiting requests, by acceptance time.
type Waiting = BTreeSet<(DateTime<Utc>, RequestId)>;

impl Items {
    /// Keeps the waiting index in step with a request's new state.
    fn index(&mut self, request: &PointsRequest) {
        let key = (request.program.clone(), request.recipient.id.clone());
        let entry = (request.received_at, request.id.clone());
        if request.state() == StatusKind::AwaitingEnrollment {
            self.waiting.entry(key).or_default().insert(entry);
        } else if let Some(set) = self.waiting.get_mut(&key) {
            set.remove(&entry);
            if set.is_empty() {
                self.waiting.remove(&key);
            }
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("request store lock poisoned".into())
}

impl MemoryRequestStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored request, for tests and the local stack's listings.
    pub fn all(&self) -> Result<Vec<PointsRequest>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        Ok(items.requests.values().map(|r| (**r).clone()).collect())
    }

    pub fn len(&self) -> usize {
        self.items.read().map(|i| i.requests.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RequestCreate for MemoryRequestStore {
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError> {
        let mut items = self.items.write().map_err(|_| poisoned())?;
        if let Some(existing) = items.requests.get(&request.id) {
            return Ok(Created::Existing(existing.clone()));
        }
        let mut stored = Box::new(request.clone());
        stored.version = 0;
        items.index(&stored);
        items.requests.insert(stored.id.clone(), stored);
        Ok(Created::New)
    }
}

#[async_trait]
impl RequestGet for MemoryRequestStore {
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        Ok(items.requests.get(id).map(|r| (**r).clone()))
    }
}

#[async_trait]
impl RequestUpdate for MemoryRequestStore {
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        let mut items = self.items.write().map_err(|_| poisoned())?;
        let stored = items
            .requests
            .get_mut(&request.id)
            .ok_or(StoreError::NotFound)?;
        if stored.version != request.version {
            return Err(StoreError::Conflict {
                expected: request.version,
            });
        }
        let mut next = Box::new(request.clone());
        next.version = request.version + 1;
        *stored = next;
        items.index(request);
        Ok(request.version + 1)
    }
}

#[async_trait]
impl WaitingForEnrollment for MemoryRequestStore {
    async fn awaiting_enrollment(
        &self,
        program: &ProgramId,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        let mut found: Vec<(DateTime<Utc>, RequestId)> = items
            .waiting
            .iter()
            .filter(|((p, r), _)| p == program && recipient.is_none_or(|want| want == r))
            .flat_map(|(_, set)| set.iter().cloned())
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }
}
