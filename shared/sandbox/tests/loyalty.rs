//! The loyalty-commerce connector against the sandbox's loyalty-commerce
//! endpoints: validate the member with names, then order with the
//! validation; orders found by our reference; reversals bounded by the
//! credit; and a platform that is not idempotent on the reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use pointsflow_core::partner::ReversalOutcome;
use pointsflow_core::partner::{CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome};
use pointsflow_core::ports::PartnerConnector;
use pointsflow_core::reason::PersonName;
use pointsflow_core::values::{MemberNumber, PartnerReference, Points};
use pointsflow_partners::{LoyaltyConnector, RestConnectorConfig};
use pointsflow_sandbox::magic;
use pointsflow_sandbox::{SandboxConfig, SandboxMember, SandboxPartner};

const KEY: &str = "sandbox-test-key";

async fn sandbox() -> SandboxPartner {
    SandboxPartner::start(
        SandboxConfig {
            api_key: KEY.into(),
            members: vec![SandboxMember {
                member_number: "SKY1000001".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
            }],
            slow_response: Duration::from_secs(30),
            behaviour: Default::default(),
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Box::pin(std::future::pending()),
    )
    .await
    .unwrap()
}

fn connector(s: &SandboxPartner) -> LoyaltyConnector {
    LoyaltyConnector::new(RestConnectorConfig {
        base_url: s.base_url(),
        api_key: KEY.into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        reach: pointsflow_partners::Reach::Local,
    })
    .unwrap()
}

fn order(reference: u128, points: u64, last_name: &str) -> CreditInstruction {
    CreditInstruction {
        reference: PartnerReference::from_number(reference),
        member: MemberNumber::parse("SKY1000001").unwrap(),
        member_name: Some(PersonName {
            first_name: "ada".into(),
            last_name: last_name.into(),
        }),
        points: Points::new(points).unwrap(),
        partner_program: "SKY".into(),
        timeout: None,
    }
}

#[tokio::test]
async fn a_validated_member_is_credited_and_the_order_found_by_reference() {
    let s = sandbox().await;
    let c = connector(&s);
    assert!(!c.idempotent_on_reference(), "look up before every retry");
    let CreditOutcome::Credited { transaction } = c.credit(&order(1, 250, "LOVELACE")).await else {
        panic!("credited");
    };
    assert_eq!(
        c.status(&PartnerReference::from_number(1), None).await,
        CreditOutcome::Credited {
            transaction: transaction.clone()
        }
    );
    assert_eq!(
        c.status(&PartnerReference::from_number(2), None).await,
        CreditOutcome::NotFound
    );
    assert_eq!(s.credited_by_member()["SKY1000001"], 250);
}

#[tokio::test]
async fn names_that_do_not_match_are_refused_before_any_order() {
    let s = sandbox().await;
    let c = connector(&s);
    match c.credit(&order(3, 250, "Byron")).await {
        CreditOutcome::Rejected(reason) => assert_eq!(reason.code, "partner_name_mismatch"),
        other => panic!("{other:?}"),
    }
    let mut no_names = order(4, 250, "Lovelace");
    no_names.member_name = None;
    assert!(
        matches!(c.credit(&no_names).await, CreditOutcome::Rejected(r) if r.code == "member_names_missing")
    );
    assert_eq!(s.stats().credits, 0);
    let check = |last: &str| MemberCheck {
        member: MemberNumber::parse("SKY1000001").unwrap(),
        first_name: "Ada".into(),
        last_name: last.into(),
        partner_program: "SKY".into(),
        timeout: None,
    };
    assert_eq!(
        c.validate_member(&check("Lovelace")).await,
        MemberCheckOutcome::Valid
    );
    assert!(matches!(
        c.validate_member(&check("Byron")).await,
        MemberCheckOutcome::Invalid(_)
    ));
}

#[tokio::test]
async fn placing_the_same_order_twice_credits_twice_so_dispatch_must_look_up_first() {
    let s = sandbox().await;
    let c = connector(&s);
    c.credit(&order(5, 100, "Lovelace")).await;
    c.credit(&order(5, 100, "Lovelace")).await;
    assert_eq!(
        s.stats().credits,
        2,
        "the platform is not idempotent on the reference"
    );
    assert_eq!(s.credited_by_member()["SKY1000001"], 200);
}

#[tokio::test]
async fn pending_orders_settle_at_the_look_up() {
    let s = sandbox().await;
    let c = connector(&s);
    let ok = order(6, magic::PENDING_THEN_CREDITED, "Lovelace");
    let ko = order(7, magic::PENDING_THEN_FAILED, "Lovelace");
    assert!(matches!(
        c.credit(&ok).await,
        CreditOutcome::Pending {
            transaction: Some(_)
        }
    ));
    assert!(matches!(c.credit(&ko).await, CreditOutcome::Pending { .. }));
    assert!(matches!(
        c.status(&ok.reference, None).await,
        CreditOutcome::Credited { .. }
    ));
    match c.status(&ko.reference, None).await {
        CreditOutcome::Rejected(reason) => assert_eq!(reason.code, "partner_member_closed"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reversal_never_exceeds_the_credit() {
    let s = sandbox().await;
    let c = connector(&s);
    let CreditOutcome::Credited { transaction } = c.credit(&order(8, 300, "Lovelace")).await else {
        panic!("credited");
    };
    let half = Points::new(150).unwrap();
    assert!(matches!(
        c.reverse_order(&transaction, half, "deal reopened").await,
        ReversalOutcome::Reversed { .. }
    ));
    assert_eq!(s.credited_by_member()["SKY1000001"], 150);
    match c
        .reverse_order(&transaction, Points::new(151).unwrap(), "again")
        .await
    {
        ReversalOutcome::Refused(reason) => {
            assert_eq!(reason.code, "partner_reversal_exceeds_credit")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            c.reverse_order("SBX9999999999", half, "none").await,
            ReversalOutcome::Unknown { .. }
        ),
        "an unknown order is a 404: asked again, never assumed"
    );
    // The order still reads as credited (partly reversed) by reference.
    assert!(matches!(
        c.status(&PartnerReference::from_number(8), None).await,
        CreditOutcome::Credited { .. }
    ));
}
