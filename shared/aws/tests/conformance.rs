//! The AWS adapters pass the conformance suite against the AWS API emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use pointsflow_aws::{
    DynamoEnrollments, DynamoLedger, DynamoProgramStore, DynamoRequestStore, SqsQueue, tables,
};
use pointsflow_core::ports::{PipelineMessage, ProgramStore, Publish};
use pointsflow_harness::emulator;

async fn dynamodb() -> (aws_sdk_dynamodb::Client, String) {
    let config = emulator::config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = emulator::unique_name("pf-ledger");
    tables::create_ledger_table(&client, &table).await.unwrap();
    (client, table)
}

async fn sqs() -> (aws_sdk_sqs::Client, String) {
    let config = emulator::config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = emulator::unique_name("pf-queue");
    let url = client.create_queue().queue_name(name).send().await.unwrap();
    (client, url.queue_url().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_request_store_conforms() {
    let (client, table) = dynamodb().await;
    let store = Arc::new(DynamoRequestStore::new(client, table));
    let suite = pointsflow_conformance::store::Store {
        create: store.clone(),
        get: store.clone(),
        update: store,
    };
    pointsflow_conformance::store::run_all(&suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_window_store_and_scheduled_index_conform() {
    let (client, table) = dynamodb().await;
    let store = Arc::new(DynamoRequestStore::new(client.clone(), &table));
    let suite = pointsflow_conformance::windows::Windows {
        windows: Arc::new(pointsflow_aws::DynamoWindowStore::new(client, table)),
        scheduled: store.clone(),
        create: store.clone(),
        get: store.clone(),
        update: store.clone(),
        unsettled: store.clone(),
        search: store.clone(),
        lines: store,
    };
    pointsflow_conformance::windows::run_all(&suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_program_store_conforms() {
    let (client, table) = dynamodb().await;
    let store: Arc<dyn ProgramStore> = Arc::new(DynamoProgramStore::new(client, table));
    pointsflow_conformance::programs::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_enrollments_conform() {
    let (client, table) = dynamodb().await;
    let store = Arc::new(DynamoRequestStore::new(client.clone(), &table));
    let suite = pointsflow_conformance::enrollment::Enrollment {
        links: Arc::new(DynamoEnrollments::new(client.clone(), &table)),
        history: Arc::new(pointsflow_aws::DynamoLinkHistory::new(client, table)),
        create: store.clone(),
        get: store.clone(),
        update: store.clone(),
        waiting: store,
    };
    pointsflow_conformance::enrollment::run_all(&suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_ledger_conforms() {
    let (client, table) = dynamodb().await;
    let ledger = Arc::new(DynamoLedger::new(client, table));
    let suite = pointsflow_conformance::ledger::Ledger {
        write: ledger.clone(),
        read: ledger,
    };
    pointsflow_conformance::ledger::run_all(&suite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_publisher_conforms() {
    let (client, url) = sqs().await;
    let (_, dlq_url) = sqs().await;
    let publisher = Arc::new(
        SqsQueue::new(client.clone(), url.clone()).with_dead_letter(Some(dlq_url.clone())),
    );
    let suite = pointsflow_conformance::queue::Queue {
        publish: publisher.clone(),
        drain: sqs_drain(client.clone(), url.clone()),
        redelivery: publisher,
        drain_dead_letters: sqs_drain(client.clone(), dlq_url),
        without_dead_letters: Arc::new(SqsQueue::new(client, url)),
    };
    pointsflow_conformance::queue::run_all(&suite).await;
}

/// Receives (and deletes) every message of the queue at `url`.
fn sqs_drain(client: aws_sdk_sqs::Client, url: String) -> pointsflow_conformance::queue::Drain {
    Box::new(move || {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            let mut bodies = Vec::new();
            loop {
                let out = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .send()
                    .await
                    .unwrap();
                if out.messages().is_empty() {
                    return bodies;
                }
                for m in out.messages() {
                    bodies.push(m.body().unwrap().to_owned());
                    client
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_cannot_be_sent_are_reported_by_request() {
    let (client, url) = sqs().await;
    client.delete_queue().queue_url(&url).send().await.unwrap();
    let publisher = SqsQueue::new(client, url);
    let messages: Vec<PipelineMessage> = (0..12)
        .map(|i| PipelineMessage {
            request_id: pointsflow_conformance::request(&format!("lost-{i}")).id,
        })
        .collect();
    let err = tokio::time::timeout(Duration::from_secs(30), publisher.publish(&messages))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.total, 12);
    let mut failed = err.failed.clone();
    failed.sort();
    let mut want: Vec<_> = messages.iter().map(|m| m.request_id.clone()).collect();
    want.sort();
    assert_eq!(failed, want, "every unsent message is named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_is_armed_as_one_one_time_schedule_invoking_dispatch() {
    use pointsflow_aws::{EventBridgeSchedules, ScheduleTarget, window_event};
    use pointsflow_core::ports::WindowSchedules;
    use pointsflow_core::window::WindowId;
    let config = emulator::config().await;
    let client = aws_sdk_scheduler::Client::new(&config);
    let target = ScheduleTarget {
        prefix: emulator::unique_name("pf"),
        group: "default".into(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:pf-dispatch".into(),
        role_arn: "arn:aws:iam::123456789012:role/pf-scheduler".into(),
        dead_letter_arn: Some("arn:aws:sqs:us-east-1:123456789012:pf-dispatch-dlq".into()),
    };
    let schedules = EventBridgeSchedules::new(client.clone(), target.clone());
    let window = WindowId::parse("payroll@2026-11-27T18:00Z").unwrap();
    schedules.arm(&window).await.unwrap();
    schedules.arm(&window).await.unwrap();
    let name = schedules.name(&window);
    assert!(name.starts_with(&target.prefix) && name.ends_with("-payroll-20261127T1800"));
    let got = client
        .get_schedule()
        .name(&name)
        .group_name("default")
        .send()
        .await
        .unwrap();
    assert_eq!(got.schedule_expression(), Some("at(2026-11-27T18:00:00)"));
    assert_eq!(got.schedule_expression_timezone(), Some("UTC"));
    let sent = got.target().unwrap();
    assert_eq!(sent.arn(), target.function_arn);
    assert_eq!(sent.role_arn(), target.role_arn);
    assert_eq!(sent.input(), Some(window_event(&window).as_str()));
    let event: serde_json::Value = serde_json::from_str(sent.input().unwrap()).unwrap();
    assert_eq!(
        event,
        serde_json::json!({"window_closed": {"program": "payroll", "scheduled_time": "2026-11-27T18:00:00Z"}})
    );
    // A program id too long for a readable name still gets a valid one.
    let long = WindowId::parse(&format!("{}@2026-11-27T18:00Z", "p".repeat(64))).unwrap();
    assert!(schedules.name(&long).len() <= 64);
    schedules.arm(&long).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_partner_limits_conform() {
    let (client, table) = dynamodb().await;
    let state = Arc::new(pointsflow_aws::DynamoPartnerState::new(client, table));
    pointsflow_conformance::governance::run_all(state.clone(), state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_ports_conform_on_dynamodb() {
    let (client, table) = dynamodb().await;
    let store = Arc::new(DynamoRequestStore::new(client.clone(), &table));
    let suite = pointsflow_conformance::operations::Operations {
        links: Arc::new(DynamoEnrollments::new(client.clone(), &table)),
        history: Arc::new(pointsflow_aws::DynamoLinkHistory::new(
            client.clone(),
            &table,
        )),
        create: store.clone(),
        update: store.clone(),
        search: store.clone(),
        lines: store.clone(),
        marks: store,
        audit: Arc::new(pointsflow_aws::DynamoAuditLog::new(client.clone(), &table)),
        reports: Arc::new(pointsflow_aws::DynamoReportStore::new(
            client.clone(),
            &table,
        )),
        proposals: Arc::new(pointsflow_aws::DynamoProposals::new(client, &table)),
    };
    pointsflow_conformance::operations::run_all(&suite).await;
}

/// A request scheduled by a release before the scheduled index had shards
/// sits in the one partition `SCHED#{program}`: the planner still finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_scheduled_before_the_shards_still_reaches_its_window() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use pointsflow_core::partner::Destination;
    use pointsflow_core::ports::{RequestCreate, RequestGet, RequestUpdate, ScheduledRequests};
    use pointsflow_core::request::Status;
    use pointsflow_core::values::{MemberNumber, PartnerId, Points, ProgramId};

    let (client, table) = dynamodb().await;
    let store = DynamoRequestStore::new(client.clone(), table.clone());
    let program = ProgramId::parse("legacy").unwrap();
    let mut r = pointsflow_conformance::request("legacy-held");
    r.program = program.clone();
    r.points = Some(Points::new(10).unwrap());
    r.member = Some(MemberNumber::parse("SKY0000021").unwrap());
    r.destination = Some(Destination {
        partner: PartnerId::parse("air").unwrap(),
        partner_program: "SKY".into(),
    });
    r.transition(Status::Reserved, pointsflow_conformance::t0(), "reserved")
        .unwrap();
    store.create(&r).await.unwrap();
    let mut stored = store.get(&r.id).await.unwrap().unwrap();
    stored
        .transition(
            Status::Scheduled {
                window: "legacy@2026-11-27T18:00Z".into(),
            },
            pointsflow_conformance::t0(),
            "held",
        )
        .unwrap();
    store.update(&stored).await.unwrap();
    // Where the earlier release kept it.
    client
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("REQ#{}", r.id)))
        .key("sk", AttributeValue::S("REQUEST".into()))
        .update_expression("SET wait_pk = :legacy")
        .expression_attribute_values(":legacy", AttributeValue::S("SCHED#legacy".into()))
        .send()
        .await
        .unwrap();
    let mut found = Vec::new();
    for _ in 0..50 {
        found = store.scheduled(&program, None, 10).await.unwrap().entries;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        found.iter().map(|e| &e.id).collect::<Vec<_>>(),
        [&r.id],
        "the request in the unsharded partition is planned"
    );
}
