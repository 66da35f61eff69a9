//! The built events binary answers a batch of the table's stream records
//! through the Lambda Runtime API: the records are the ones the emulator's
//! DynamoDB Streams recorded for a request's writes, a member link's and a
//! window credit's, with items that are no event's among them (read with
//! `GetRecords`, the shape Lambda hands the function), and the events it
//! puts on the emulator's EventBridge bus reach a queue a rule targets,
//! as a customer's consumer would receive them. It calls only what its
//! policy in template.yaml grants.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use aws_sdk_eventbridge::types::Target;
use pointsflow_aws::{DynamoEnrollments, DynamoLinkHistory, DynamoRequestStore, DynamoWindowStore};
use pointsflow_core::enrollment::{LinkEvent, MemberLink};
use pointsflow_core::partner::Destination;
use pointsflow_core::ports::{Enrollments, LinkHistory, RequestCreate, RequestUpdate, WindowStore};
use pointsflow_core::request::{NewRequest, Recipient, SourceEvent, Status};
use pointsflow_core::values::{
    EventType, IdempotencyKey, MemberNumber, PartnerId, PartnerReference, Points, ProgramId,
    RecipientId, SourceId,
};
use pointsflow_core::window::{CreditId, CreditState, WindowCredit, WindowId};
use serde_json::{Value, json};

mod common;
use common::{CONFIG, Provisioned};

/// Calls the emulator's DynamoDB Streams API (JSON 1.0) as `operation`.
async fn streams(endpoint: &str, operation: &str, body: Value) -> Value {
    let answer = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDBStreams_20120810.{operation}"))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{operation}: {}",
        answer.status()
    );
    answer.json().await.unwrap()
}

/// Every record of the table's stream so far, as Lambda would hand them.
async fn stream_records(endpoint: &str, table: &str) -> Vec<Value> {
    let sdk = pointsflow_harness::emulator::config_at(endpoint).await;
    let described = aws_sdk_dynamodb::Client::new(&sdk)
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let arn = described
        .table()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_owned();
    let stream = streams(endpoint, "DescribeStream", json!({"StreamArn": arn})).await;
    let mut records = Vec::new();
    for shard in stream["StreamDescription"]["Shards"].as_array().unwrap() {
        let iterator = streams(
            endpoint,
            "GetShardIterator",
            json!({"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
        let got = streams(
            endpoint,
            "GetRecords",
            json!({"ShardIterator": iterator["ShardIterator"]}),
        )
        .await;
        records.extend(got["Records"].as_array().unwrap().iter().cloned());
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_puts_a_requests_a_links_and_a_credits_changes_on_the_bus() {
    let endpoint = pointsflow_harness::emulator::endpoint();
    let stack = Provisioned::create(
        &endpoint,
        &pointsflow_harness::emulator::unique_name("pf-fn-ev"),
        CONFIG,
    )
    .await
    .unwrap();
    let sdk = pointsflow_harness::emulator::config().await;
    // A consumer: a rule on the bus to a queue.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let consumer = sqs
        .create_queue()
        .queue_name(format!("{}-consumer", stack.event_bus))
        .send()
        .await
        .unwrap();
    let consumer_url = consumer.queue_url().unwrap().to_owned();
    let consumer_arn = sqs
        .get_queue_attributes()
        .queue_url(&consumer_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    events
        .put_rule()
        .event_bus_name(&stack.event_bus)
        .name("all-pointsflow")
        .event_pattern(r#"{"source": ["pointsflow"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .event_bus_name(&stack.event_bus)
        .rule("all-pointsflow")
        .targets(
            Target::builder()
                .id("consumer")
                .arn(consumer_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // A request's writes, as the pipeline makes them.
    let store = DynamoRequestStore::new(aws_sdk_dynamodb::Client::new(&sdk), &stack.table);
    let now = chrono::Utc::now();
    let mut request = NewRequest {
        source: SourceId::parse("salesforce").unwrap(),
        idempotency_key: IdempotencyKey::parse("deal-ev-1").unwrap(),
        program: ProgramId::parse("sales-incentive").unwrap(),
        recipient: Recipient {
            id: RecipientId::parse("0055g00000DemoAA1").unwrap(),
            email: None,
        },
        award: None,
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").unwrap(),
            id: Some("0065g00000Q4zXyAAB".into()),
            occurred_at: now,
            occurred_at_is_receipt: false,
            attributes: Default::default(),
        },
    }
    .into_request(now);
    store.create(&request).await.unwrap();
    request.points = Some(Points::new(300).unwrap());
    request.member = Some(MemberNumber::parse("SKY1000001").unwrap());
    request.destination = Some(Destination {
        partner: PartnerId::parse("air").unwrap(),
        partner_program: "SKY".into(),
    });
    request.partner_reference = Some(PartnerReference::parse("pf0000000042").unwrap());
    request
        .transition(Status::Reserved, now, "reserved")
        .unwrap();
    request.version = store.update(&request).await.unwrap();
    for to in [Status::Dispatching, Status::Credited] {
        request.transition(to, now, "test").unwrap();
    }
    request.partner_transaction = Some("TX-42".into());
    store.update(&request).await.unwrap();

    // A member link created (with its history's item, no event), and a
    // window credit created planning and saved planned.
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let program = ProgramId::parse("sales-incentive").unwrap();
    let recipient = RecipientId::parse("005NEW").unwrap();
    let mut link = MemberLink::new(
        program.clone(),
        recipient.clone(),
        MemberNumber::parse("SKY1000005").unwrap(),
        "Grace".into(),
        "Hopper".into(),
    );
    link.linked_by = Some("ops-operate".into());
    link.linked_at = Some(now);
    let links = DynamoEnrollments::new(dynamo.clone(), &stack.table);
    assert_eq!(links.create_link(&link).await.unwrap(), None);
    DynamoLinkHistory::new(dynamo.clone(), &stack.table)
        .record(&LinkEvent {
            program: program.clone(),
            recipient,
            at: now,
            by: "ops-operate".into(),
            from: None,
            to: Some(link.member.clone()),
            confirmed_by: None,
        })
        .await
        .unwrap();
    let windows = DynamoWindowStore::new(dynamo, &stack.table);
    let window = WindowId::new(&program, now);
    let partner = PartnerId::parse("air").unwrap();
    let member = MemberNumber::parse("SKY1000001").unwrap();
    let mut credit = WindowCredit {
        id: CreditId::consolidated(&window, &partner, &member, 1),
        window,
        partner,
        partner_program: "SKY".into(),
        member,
        member_name: None,
        reference: PartnerReference::parse("pf0000000043").unwrap(),
        points: Points::new(300).unwrap(),
        requests: vec![request.id.clone()],
        state: CreditState::Planning,
        attempts: 0,
        attempt_at: None,
        partner_transaction: None,
        planned_at: now,
        unsettled_since: None,
        settled_at: None,
        version: 0,
    };
    windows.create_credit(&credit).await.unwrap();
    credit.state = CreditState::Planned;
    windows.save_credit(&credit).await.unwrap();

    let records = stream_records(&endpoint, &stack.table).await;
    assert_eq!(records.len(), 7, "{records:#?}");
    let response = stack
        .respond(
            env!("CARGO_BIN_EXE_pointsflow-events"),
            "EventsFunction",
            json!({"Records": records}),
        )
        .await;
    assert_eq!(response, json!({"batchItemFailures": []}));

    let mut delivered: Vec<Value> = Vec::new();
    for _ in 0..20 {
        let got = sqs
            .receive_message()
            .queue_url(&consumer_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        delivered.extend(
            got.messages()
                .iter()
                .map(|m| serde_json::from_str::<Value>(m.body().unwrap()).unwrap()),
        );
        if delivered.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut delivered, others): (Vec<Value>, Vec<Value>) = delivered
        .into_iter()
        .partition(|e| e["detail"]["request_id"].is_string());
    let others: Vec<(&str, &str)> = others
        .iter()
        .map(|e| {
            (
                e["detail-type"].as_str().unwrap(),
                e["detail"]["event_id"].as_str().unwrap(),
            )
        })
        .collect();
    let link_event = format!(
        "link:sales-incentive:005NEW:{}",
        link.linked_at.unwrap().timestamp_micros()
    );
    let mut expected = vec![
        ("Member Linked", link_event.as_str()),
        ("Window Credit Planned", "pf0000000043:planned"),
    ];
    let mut others = others;
    others.sort();
    expected.sort();
    assert_eq!(others, expected);
    delivered.sort_by_key(|e| e["detail"]["sequence"].as_u64());
    let kinds: Vec<&str> = delivered
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Points Request Received",
            "Points Reserved",
            "Points Credited"
        ]
    );
    for e in &delivered {
        assert_eq!(e["source"], "pointsflow");
        assert_eq!(e["detail"]["request_id"], request.id.as_str());
        assert_eq!(
            e["detail"]["event_id"],
            format!("{}:{}", request.id, e["detail"]["sequence"])
        );
    }
    let credited = &delivered[2]["detail"];
    assert_eq!(credited["points"], 300);
    assert_eq!(credited["member"], "******0001");
    assert_eq!(credited["partner_transaction"], "TX-42");
    assert_eq!(credited["partner_reference"], "pf0000000042");
}
