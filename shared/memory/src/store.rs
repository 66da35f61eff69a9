//! The request store: a map with DynamoDB's conditional-write semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pointsflow_core::ports::{
    Created, RequestCreate, RequestGet, RequestUpdate, ScheduledRequests, StoreError, SweepMarks,
    UnsettledIndex, WaitingRequests,
};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::unsettled::{SweepMark, Unsettled, UnsettledItem};
use pointsflow_core::values::{ProgramId, RecipientId, RequestId};
use pointsflow_core::window::{ScheduledCursor, ScheduledEntry, ScheduledPage};

use crate::stream::MemoryStream;
use pointsflow_core::events::Write;

#[derive(Debug, Default)]
pub struct MemoryRequestStore {
    items: RwLock<Items>,
    /// Where each write is recorded, when the store has a stream.
    stream: Option<Arc<MemoryStream>>,
}

#[derive(Debug, Default)]
struct Items {
    // A B-tree of boxed requests: it grows a node at a time (a hash map would
    // stall every request to rehash them all), and moves pointers, not requests.
    requests: BTreeMap<RequestId, Box<PointsRequest>>,
    /// The requests in a waiting state, by program, state and recipient,
    /// oldest first (the DynamoDB adapter's sparse index).
    waiting: BTreeMap<(ProgramId, StatusKind, RecipientId), Waiting>,
    /// The requests held `scheduled`, by program, in member order (the
    /// DynamoDB adapter's `scheduled` partition of the same index).
    scheduled: BTreeMap<ProgramId, BTreeMap<ScheduledCursor, ScheduledEntry>>,
    /// Requests whose credit is unsettled, and since when.
    unsettled: BTreeMap<RequestId, DateTime<Utc>>,
    /// How far the resolver has read the requests.
    sweep: Option<SweepMark>,
}

/// One recipient's waiting requests, by acceptance time.
type Waiting = BTreeSet<(DateTime<Utc>, RequestId)>;

impl Items {
    /// Keeps the waiting index in step with a request's new state.
    fn index(&mut self, before: Option<StatusKind>, request: &PointsRequest) {
        let key = |state| (request.program.clone(), state, request.recipient.id.clone());
        let entry = (request.received_at, request.id.clone());
        if let Some(old) = before.filter(|s| s.is_waiting())
            && let Some(set) = self.waiting.get_mut(&key(old))
        {
            set.remove(&entry);
            if set.is_empty() {
                self.waiting.remove(&key(old));
            }
        }
        if request.state().is_waiting() {
            self.waiting
                .entry(key(request.state()))
                .or_default()
                .insert(entry);
        }
        // A scheduled request's member is fixed: its position is the same.
        if before == Some(StatusKind::Scheduled)
            && let Some(member) = request.member.clone()
            && let Some(program) = self.scheduled.get_mut(&request.program)
        {
            program.remove(&ScheduledCursor {
                member,
                request: request.id.clone(),
            });
        }
        match pointsflow_core::unsettled::request_unsettled_since(request) {
            Some(since) => {
                self.unsettled.insert(request.id.clone(), since);
            }
            None => {
                self.unsettled.remove(&request.id);
            }
        }
        if request.state() == StatusKind::Scheduled
            && let Some(entry) = scheduled_entry(request)
        {
            self.scheduled
                .entry(request.program.clone())
                .or_default()
                .insert(entry.cursor(), entry);
        }
    }
}

/// A scheduled request's index entry: what the window planner needs.
fn scheduled_entry(request: &PointsRequest) -> Option<ScheduledEntry> {
    pointsflow_core::window::scheduled_entry(request)
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("request store lock poisoned".into())
}

impl MemoryRequestStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that records each write on `stream`, as a table with a
    /// stream does.
    pub fn with_stream(stream: Arc<MemoryStream>) -> Self {
        Self {
            items: RwLock::default(),
            stream: Some(stream),
        }
    }

    /// Every stored request, for tests and the local stack's listings.
    pub fn all(&self) -> Result<Vec<PointsRequest>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        Ok(items.requests.values().map(|r| (**r).clone()).collect())
    }

    /// Calls `f` with each stored request after `after` (by id), in id
    /// order, until it returns `false`; nothing is cloned.
    pub fn visit(
        &self,
        after: Option<&RequestId>,
        mut f: impl FnMut(&PointsRequest) -> bool,
    ) -> Result<(), StoreError> {
        use std::ops::Bound;
        let items = self.items.read().map_err(|_| poisoned())?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        for (_, r) in items.requests.range((start, Bound::Unbounded)) {
            if !f(r) {
                break;
            }
        }
        Ok(())
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
        items.index(None, &stored);
        if let Some(stream) = &self.stream {
            stream.append(Write::Request {
                before: None,
                after: (*stored).clone(),
            });
        }
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
        let after = self.stream.as_ref().map(|_| (*next).clone());
        let previous = std::mem::replace(stored, next);
        items.index(Some(previous.state()), request);
        if let (Some(stream), Some(after)) = (&self.stream, after) {
            stream.append(Write::Request {
                before: Some(*previous),
                after,
            });
        }
        Ok(request.version + 1)
    }
}

#[async_trait]
impl SweepMarks for MemoryRequestStore {
    async fn sweep_mark(&self) -> Result<Option<SweepMark>, StoreError> {
        Ok(self.items.read().map_err(|_| poisoned())?.sweep.clone())
    }

    async fn keep_sweep_mark(&self, mark: &SweepMark) -> Result<(), StoreError> {
        self.items.write().map_err(|_| poisoned())?.sweep = Some(mark.clone());
        Ok(())
    }
}

#[async_trait]
impl UnsettledIndex for MemoryRequestStore {
    async fn unsettled(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        let mut found: Vec<Unsettled> = items
            .unsettled
            .iter()
            .filter(|(_, since)| **since < before)
            .map(|(id, since)| Unsettled {
                since: *since,
                item: UnsettledItem::Request(id.clone()),
            })
            .collect();
        found.sort();
        found.truncate(limit);
        Ok(found)
    }
}

#[async_trait]
impl ScheduledRequests for MemoryRequestStore {
    async fn scheduled(
        &self,
        program: &ProgramId,
        after: Option<&ScheduledCursor>,
        limit: usize,
    ) -> Result<ScheduledPage, StoreError> {
        use std::ops::Bound;
        let items = self.items.read().map_err(|_| poisoned())?;
        let Some(index) = items.scheduled.get(program) else {
            return Ok(ScheduledPage::default());
        };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = index.range::<ScheduledCursor, _>((from, Bound::Unbounded));
        let entries: Vec<ScheduledEntry> =
            range.by_ref().take(limit).map(|(_, e)| e.clone()).collect();
        let more = range.next().is_some();
        Ok(ScheduledPage { entries, more })
    }
}

#[async_trait]
impl WaitingRequests for MemoryRequestStore {
    async fn waiting(
        &self,
        program: &ProgramId,
        state: StatusKind,
        recipient: Option<&RecipientId>,
    ) -> Result<Vec<RequestId>, StoreError> {
        let items = self.items.read().map_err(|_| poisoned())?;
        let mut found: Vec<(DateTime<Utc>, RequestId)> = items
            .waiting
            .iter()
            .filter(|((p, s, r), _)| {
                p == program && *s == state && recipient.is_none_or(|want| want == r)
            })
            .flat_map(|(_, set)| set.iter().cloned())
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }
}
