//! A status callback whose receiver never accepts it is given up on after
//! `give_up_after_hours` (72) and sent to the callbacks dead-letter queue at
//! once: the alarm on that queue fires, a redrive can replay it, and the
//! receiver is called no more. The queue here is configured as the
//! template's (visibility 180 s, receive limit 1,000, retention 96 hours),
//! so a message merely left to fail would expire after about 630 receives
//! without ever reaching the dead-letter queue. Time is tokio's paused
//! clock: a hundred hours pass in a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pointsflow_callbacks::{Callbacks, CallbacksPorts, Retries};
use pointsflow_config::{CallbackRetrySettings, CallbackSettings, CallbackSignature};
use pointsflow_core::callback::CallbackMessage;
use pointsflow_core::ports::{Clock, RequestCreate};
use pointsflow_core::request::{NewRequest, Recipient, SourceEvent};
use pointsflow_core::values::{IdempotencyKey, ProgramId, RecipientId, SourceId};
use pointsflow_harness::mapping::{EventSourceMapping, MappingConfig};
use pointsflow_memory::{MemoryQueue, MemoryRequestStore, QueueConfig};
use pointsflow_outbound::Reach;
use pointsflow_runtime::Backoff;
use tokio_util::sync::CancellationToken;

/// Wall time that moves with tokio's (paused) clock.
struct TokioClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.origin.elapsed()).unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_callback_given_up_goes_to_the_dead_letter_queue_and_is_called_no_more() {
    // A receiver that answers 500 to everything, counting calls.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let answer = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });

    let dead_letters = Arc::new(MemoryQueue::new(
        QueueConfig {
            name: "callbacks-dlq".into(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 0,
            retention: pointsflow_memory::MAX_RETENTION,
        },
        None,
    ));
    let queue = Arc::new(MemoryQueue::new(
        QueueConfig {
            name: "callbacks".into(),
            visibility_timeout: Duration::from_secs(180),
            max_receive_count: 1_000,
            retention: Duration::from_secs(96 * 3_600),
        },
        Some(dead_letters.clone()),
    ));
    let clock = Arc::new(TokioClock {
        start: DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap(),
        origin: tokio::time::Instant::now(),
    });
    let store = Arc::new(MemoryRequestStore::new());
    let source = SourceId::parse("crm").unwrap();
    let request = NewRequest {
        source: source.clone(),
        idempotency_key: IdempotencyKey::parse("deal-1").unwrap(),
        program: ProgramId::parse("sales").unwrap(),
        recipient: Recipient {
            id: RecipientId::parse("005ADA").unwrap(),
            email: None,
        },
        award: None,
        event: SourceEvent {
            kind: pointsflow_core::values::EventType::parse("deal.won").unwrap(),
            id: None,
            occurred_at: clock.now(),
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(clock.now());
    store.create(&request).await.unwrap();
    let message = CallbackMessage {
        request_id: request.id.clone(),
        state: request.state(),
        at: clock.now(),
        event_id: None,
    };
    queue
        .send_batch(&[serde_json::to_string(&message).unwrap()])
        .unwrap();

    let settings = CallbackRetrySettings::default();
    let callbacks = Callbacks::new(
        Reach::Local,
        CallbacksPorts {
            get: store,
            redelivery: queue.clone(),
            clock,
        },
        HashMap::from([(
            source,
            CallbackSettings {
                url,
                secret: "cb_test_secret_0123456789abcdef".into(),
                retiring_secrets: Vec::new(),
                signature: CallbackSignature::Pointsflow,
            },
        )]),
        Retries {
            backoff: Backoff {
                base: settings.retry_base(),
                cap: settings.retry_cap(),
            },
            give_up_after: settings.give_up_after(),
        },
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let mapping = EventSourceMapping::new(
        queue.clone(),
        MappingConfig {
            batch_size: 10,
            concurrency: 1,
            function_timeout: Duration::from_secs(30),
            function_name: "callbacks".into(),
        },
    );
    let handler = {
        let callbacks = callbacks.clone();
        move |event| {
            let callbacks = callbacks.clone();
            async move { callbacks.handle(event).await }
        }
    };
    let running = tokio::spawn(mapping.run(handler, shutdown.clone()));

    tokio::time::sleep(Duration::from_secs(100 * 3_600)).await;
    let called = calls.load(Ordering::SeqCst);
    assert!(called > 10, "the receiver was called {called} times");
    assert_eq!(
        dead_letters.depth(),
        1,
        "the given-up callback is in the dead-letter queue"
    );
    assert_eq!(queue.depth(), 0, "and no longer on the callbacks queue");
    let dead: CallbackMessage = serde_json::from_str(&dead_letters.peek_bodies()[0]).unwrap();
    assert_eq!(
        dead, message,
        "the dead-letter queue holds the message itself, to replay"
    );

    tokio::time::sleep(Duration::from_secs(24 * 3_600)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        called,
        "no call after giving up"
    );
    shutdown.cancel();
    running.await.unwrap();
}
