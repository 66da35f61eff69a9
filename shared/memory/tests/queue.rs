//! The embedded queue passes the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use pointsflow_memory::{MemoryQueue, QueueConfig};

#[tokio::test]
async fn the_embedded_queue_conforms() {
    let config = |name: &str| QueueConfig {
        name: name.into(),
        visibility_timeout: Duration::from_secs(30),
        max_receive_count: 5,
        retention: pointsflow_memory::DEFAULT_RETENTION,
    };
    let dead_letters = Arc::new(MemoryQueue::new(config("conformance-dlq"), None));
    let queue = Arc::new(MemoryQueue::new(
        config("conformance"),
        Some(dead_letters.clone()),
    ));
    let drain = |q: Arc<MemoryQueue>| -> pointsflow_conformance::queue::Drain {
        Box::new(move || {
            let q = q.clone();
            Box::pin(async move {
                let mut bodies = Vec::new();
                loop {
                    let batch = q.receive(10, Duration::ZERO).await.unwrap();
                    if batch.is_empty() {
                        return bodies;
                    }
                    for m in batch {
                        q.delete(&m.receipt_handle).unwrap();
                        bodies.push(m.body);
                    }
                }
            })
        })
    };
    let suite = pointsflow_conformance::queue::Queue {
        publish: queue.clone(),
        drain: drain(queue.clone()),
        redelivery: queue,
        drain_dead_letters: drain(dead_letters.clone()),
        without_dead_letters: dead_letters,
    };
    pointsflow_conformance::queue::run_all(&suite).await;
}
