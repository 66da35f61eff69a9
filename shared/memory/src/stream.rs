//! The stores' record of their own writes (of points requests, member
//! links and window credits): what a DynamoDB stream with
//! `NEW_AND_OLD_IMAGES` is to the table. A store appends each write's
//! before and after under the lock the write holds, so no write is stored
//! without its record and an item's records are in its writes' order. A reader takes the records after a position, in order, and trims
//! those it has handled (a stream keeps records 24 hours; this one keeps
//! them until they are handled).

use std::collections::VecDeque;
use std::sync::Mutex;

use pointsflow_core::events::{Change, Write};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct MemoryStream {
    records: Mutex<Records>,
    written: Notify,
}

#[derive(Debug)]
struct Records {
    /// The position of `changes[0]` (or of the next record, when none is
    /// kept); positions count from 1.
    first: u64,
    changes: VecDeque<Change>,
}

impl Default for Records {
    fn default() -> Self {
        Self {
            first: 1,
            changes: VecDeque::new(),
        }
    }
}

impl MemoryStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one write.
    pub(crate) fn append(&self, write: Write) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        let position = records.first + records.changes.len() as u64;
        records.changes.push_back(Change {
            position: position.to_string(),
            write,
        });
        drop(records);
        self.written.notify_one();
    }

    /// Up to `limit` records after position `after`, oldest first.
    pub fn read(&self, after: u64, limit: usize) -> Vec<Change> {
        let Ok(records) = self.records.lock() else {
            return Vec::new();
        };
        // Records up to `after` that are still kept are skipped.
        let skip = usize::try_from((after + 1).saturating_sub(records.first)).unwrap_or(usize::MAX);
        records
            .changes
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Forgets the records up to and including position `through`.
    pub fn trim(&self, through: u64) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        while records.first <= through && records.changes.pop_front().is_some() {
            records.first += 1;
        }
    }

    /// Records not yet trimmed.
    pub fn len(&self) -> usize {
        self.records.lock().map(|r| r.changes.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A record's position, as [`Change::position`] carries it.
    pub fn position_of(change: &Change) -> u64 {
        change.position.parse().unwrap_or(0)
    }

    /// Returns once a record has been appended since the last return (at
    /// once if one was appended while nobody waited).
    pub async fn written(&self) {
        self.written.notified().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(n: u32) -> pointsflow_core::request::PointsRequest {
        use pointsflow_core::request::{NewRequest, Recipient, SourceEvent};
        use pointsflow_core::values::{
            EventType, IdempotencyKey, ProgramId, RecipientId, SourceId,
        };
        NewRequest {
            source: SourceId::parse("demo").unwrap(),
            idempotency_key: IdempotencyKey::parse(&format!("deal-{n}")).unwrap(),
            program: ProgramId::parse("sales").unwrap(),
            recipient: Recipient {
                id: RecipientId::parse("0055g00000AAAA1").unwrap(),
                email: None,
            },
            award: None,
            event: SourceEvent {
                kind: EventType::parse("opportunity.closed_won").unwrap(),
                id: None,
                occurred_at: chrono::DateTime::UNIX_EPOCH,
                occurred_at_is_receipt: false,
                attributes: Default::default(),
            },
        }
        .into_request(chrono::DateTime::UNIX_EPOCH)
    }

    #[test]
    fn records_are_read_after_a_position_in_order_and_trimmed() {
        let stream = MemoryStream::new();
        assert!(stream.read(0, 10).is_empty());
        for n in 0..5 {
            stream.append(Write::Request {
                before: None,
                after: request(n),
            });
        }
        let all: Vec<u64> = stream
            .read(0, 10)
            .iter()
            .map(MemoryStream::position_of)
            .collect();
        assert_eq!(all, [1, 2, 3, 4, 5]);
        let later: Vec<u64> = stream
            .read(2, 2)
            .iter()
            .map(MemoryStream::position_of)
            .collect();
        assert_eq!(later, [3, 4]);
        stream.trim(3);
        assert_eq!(stream.len(), 2);
        // Reading from a trimmed position gives what is left.
        let left: Vec<u64> = stream
            .read(1, 10)
            .iter()
            .map(MemoryStream::position_of)
            .collect();
        assert_eq!(left, [4, 5]);
        let after: Vec<u64> = stream
            .read(4, 10)
            .iter()
            .map(MemoryStream::position_of)
            .collect();
        assert_eq!(after, [5]);
        assert!(stream.read(5, 10).is_empty());
        stream.trim(5);
        assert!(stream.is_empty());
        stream.append(Write::Request {
            before: None,
            after: request(9),
        });
        let next: Vec<u64> = stream
            .read(5, 10)
            .iter()
            .map(MemoryStream::position_of)
            .collect();
        assert_eq!(next, [6]);
    }
}
