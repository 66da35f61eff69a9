//! The request store: a map with DynamoDB's conditional-write semantics.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;
use pointsflow_core::ports::{Created, RequestCreate, RequestGet, RequestUpdate, StoreError};
use pointsflow_core::request::PointsRequest;
use pointsflow_core::values::RequestId;

#[derive(Debug, Default)]
pub struct MemoryRequestStore {
    // A B-tree of boxed requests: it grows a node at a time (a hash map would
    // stall every request to rehash them all), and moves pointers, not requests.
    items: RwLock<BTreeMap<RequestId, Box<PointsRequest>>>,
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
        Ok(items.values().map(|r| (**r).clone()).collect())
    }

    pub fn len(&self) -> usize {
        self.items.read().map(|i| i.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RequestCreate for MemoryRequestStore {
    async fn create(&self, request: &PointsRequest) -> Result<Created, StoreError> {
        let mut items = self.items.write().map_err(|_| poisoned())?;
        if let Some(existing) = items.get(&request.id) {
            return Ok(Created::Existing(existing.clone()));
        }
        let mut stored = Box::new(request.clone());
        stored.version = 0;
        items.insert(stored.id.clone(), stored);
        Ok(Created::New)
    }
}

#[async_trait]
impl RequestGet for MemoryRequestStore {
    async fn get(&self, id: &RequestId) -> Result<Option<PointsRequest>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        Ok(items.get(id).map(|r| (**r).clone()))
    }
}

#[async_trait]
impl RequestUpdate for MemoryRequestStore {
    async fn update(&self, request: &PointsRequest) -> Result<u64, StoreError> {
        let mut items = self.items.write().map_err(|_| poisoned())?;
        let stored = items.get_mut(&request.id).ok_or(StoreError::NotFound)?;
        if stored.version != request.version {
            return Err(StoreError::Conflict {
                expected: request.version,
            });
        }
        let mut next = Box::new(request.clone());
        next.version = request.version + 1;
        *stored = next;
        Ok(request.version + 1)
    }
}
