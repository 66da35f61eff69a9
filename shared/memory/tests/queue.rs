//! The embedded queue passes the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use pointsflow_memory::{MemoryQueue, QueueConfig};

#[tokio::test]
async fn the_embedded_queue_conforms() {
    let queue = Arc::new(MemoryQueue::new(
        QueueConfig {
            name: "conformance".into(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        },
        None,
    ));
    let reader = queue.clone();
    let suite = pointsflow_conformance::queue::Queue {
        publish: queue,
        drain: Box::new(move || {
            let q = reader.clone();
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
        }),
    };
    pointsflow_conformance::queue::run_all(&suite).await;
}
