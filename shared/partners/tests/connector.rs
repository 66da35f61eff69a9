//! The REST connector against the sandbox partner, a real HTTP server:
//! every answer of the contract maps to the outcome dispatch expects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use pointsflow_core::partner::{CreditInstruction, CreditOutcome};
use pointsflow_core::ports::PartnerConnector;
use pointsflow_core::values::{MemberNumber, PartnerReference, Points};
use pointsflow_partners::sandbox::magic;
use pointsflow_partners::{
    RestConnector, RestConnectorConfig, SandboxConfig, SandboxMember, SandboxPartner,
};

const KEY: &str = "sandbox-test-key";

async fn sandbox() -> SandboxPartner {
    SandboxPartner::start(
        SandboxConfig {
            api_key: KEY.into(),
            members: vec![SandboxMember {
                member_number: "sky1000001".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
            }],
            slow_response: Duration::from_millis(800),
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Box::pin(std::future::pending()),
    )
    .await
    .unwrap()
}

fn connector(base_url: String, api_key: &str) -> RestConnector {
    RestConnector::new(RestConnectorConfig {
        base_url,
        api_key: api_key.into(),
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(300),
    })
    .unwrap()
}

fn instruction(reference: u128, points: u64) -> CreditInstruction {
    CreditInstruction {
        reference: PartnerReference::from_number(reference),
        member: MemberNumber::parse("SKY1000001").unwrap(),
        points: Points::new(points).unwrap(),
        partner_program: "SKY".into(),
        timeout: None,
    }
}

fn rejected_code(outcome: &CreditOutcome) -> &str {
    match outcome {
        CreditOutcome::Rejected(reason) => &reason.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_credit_is_idempotent_on_the_reference() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    let first = c.credit(&instruction(1, 250)).await;
    let CreditOutcome::Credited { transaction } = &first else {
        panic!("{first:?}")
    };
    assert_eq!(
        c.credit(&instruction(1, 250)).await,
        first,
        "a repeat returns the original"
    );
    assert_eq!(
        c.status(&PartnerReference::from_number(1), None).await,
        first
    );
    assert_eq!(s.stats().credits, 1);
    assert_eq!(s.stats().attempts, 2);
    assert_eq!(
        s.credit(PartnerReference::from_number(1).as_str())
            .unwrap()
            .transaction_id,
        *transaction
    );
    assert!(c.idempotent_on_reference());
}

#[tokio::test]
async fn an_unknown_reference_is_not_found() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    assert_eq!(
        c.status(&PartnerReference::from_number(9), None).await,
        CreditOutcome::NotFound
    );
}

#[tokio::test]
async fn definitive_refusals_are_rejections() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    assert_eq!(
        rejected_code(&c.credit(&instruction(1, magic::REJECT)).await),
        "partner_member_blocked"
    );
    let mut stranger = instruction(2, 100);
    stranger.member = MemberNumber::parse("SKY9999999").unwrap();
    assert_eq!(
        rejected_code(&c.credit(&stranger).await),
        "partner_unknown_member"
    );
    assert_eq!(s.stats().credits, 0);
}

#[tokio::test]
async fn failures_that_prove_nothing_are_unknown() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    for _ in 0..2 {
        assert!(matches!(
            c.credit(&instruction(1, magic::ALWAYS_5XX)).await,
            CreditOutcome::Unknown { .. }
        ));
    }
    let wrong_key = connector(s.base_url(), "not-the-key");
    assert!(matches!(
        wrong_key.credit(&instruction(2, 100)).await,
        CreditOutcome::Unknown { .. }
    ));
    c.credit(&instruction(3, 100)).await;
    let conflict = c.credit(&instruction(3, 101)).await;
    assert!(
        matches!(&conflict, CreditOutcome::Unknown { detail } if detail.contains("reference_conflict")),
        "{conflict:?}"
    );
    assert_eq!(s.stats().credits, 1);

    // Nothing listening: a port that was just free.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = connector(format!("http://{closed}"), KEY);
    let outcome = nowhere.credit(&instruction(4, 100)).await;
    assert!(
        matches!(&outcome, CreditOutcome::Unknown { detail } if detail.contains("connect")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_retry_after_a_503_credits_once() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    assert!(matches!(
        c.credit(&instruction(1, magic::CREDITED_AFTER_RETRY)).await,
        CreditOutcome::Unknown { .. }
    ));
    assert!(matches!(
        c.credit(&instruction(1, magic::CREDITED_AFTER_RETRY)).await,
        CreditOutcome::Credited { .. }
    ));
    assert_eq!(s.stats().credits, 1);
}

#[tokio::test]
async fn a_timeout_after_the_credit_is_unknown_and_the_look_up_finds_it() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    let outcome = c.credit(&instruction(1, magic::TIMEOUT_AFTER_CREDIT)).await;
    assert!(
        matches!(&outcome, CreditOutcome::Unknown { detail } if detail.contains("timed out")),
        "{outcome:?}"
    );
    assert!(matches!(
        c.status(&PartnerReference::from_number(1), None).await,
        CreditOutcome::Credited { .. }
    ));
    assert_eq!(s.stats().credits, 1);
}

#[tokio::test]
async fn pending_credits_settle_at_the_look_up() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    assert!(matches!(
        c.credit(&instruction(1, magic::PENDING_THEN_CREDITED))
            .await,
        CreditOutcome::Pending { .. }
    ));
    assert!(matches!(
        c.credit(&instruction(2, magic::PENDING_THEN_FAILED)).await,
        CreditOutcome::Pending { .. }
    ));
    assert_eq!(s.stats().credits, 0, "pending is not credited");
    assert!(matches!(
        c.status(&PartnerReference::from_number(1), None).await,
        CreditOutcome::Credited { .. }
    ));
    assert_eq!(
        rejected_code(&c.status(&PartnerReference::from_number(2), None).await),
        "partner_member_closed"
    );
    assert_eq!(s.stats().credits, 1);
    assert_eq!(
        s.credited_by_member().get("SKY1000001"),
        Some(&magic::PENDING_THEN_CREDITED)
    );
}

#[tokio::test]
async fn an_instruction_timeout_shortens_the_call() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    let mut i = instruction(1, magic::TIMEOUT_AFTER_CREDIT);
    i.timeout = Some(Duration::from_millis(50));
    let started = std::time::Instant::now();
    assert!(matches!(c.credit(&i).await, CreditOutcome::Unknown { .. }));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the connector's own timeout was used"
    );
}
