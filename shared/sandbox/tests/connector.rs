//! The REST connector against the sandbox partner, a real HTTP server:
//! every answer of the contract maps to the outcome dispatch expects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use pointsflow_core::partner::{CreditInstruction, CreditOutcome};
use pointsflow_core::ports::PartnerConnector;
use pointsflow_core::values::{MemberNumber, PartnerReference, Points};
use pointsflow_partners::{RestConnector, RestConnectorConfig};
use pointsflow_sandbox::magic;
use pointsflow_sandbox::{SandboxBehaviour, SandboxConfig, SandboxMember, SandboxPartner};

const KEY: &str = "sandbox-test-key";

async fn sandbox() -> SandboxPartner {
    sandbox_with(SandboxBehaviour::default()).await
}

async fn sandbox_with(behaviour: SandboxBehaviour) -> SandboxPartner {
    SandboxPartner::start(
        SandboxConfig {
            api_key: KEY.into(),
            members: vec![SandboxMember {
                member_number: "sky1000001".into(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
            }],
            // Far longer than any call waits: a "timeout" amount always times out.
            slow_response: Duration::from_secs(30),
            behaviour,
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Box::pin(std::future::pending()),
    )
    .await
    .unwrap()
}

/// A connector that waits long enough for any answer the sandbox gives.
fn connector(base_url: String, api_key: &str) -> RestConnector {
    connector_waiting(base_url, api_key, Duration::from_secs(10))
}

/// A connector that gives up after 300 ms (for the tests of a timeout).
fn impatient(base_url: String) -> RestConnector {
    connector_waiting(base_url, KEY, Duration::from_millis(300))
}

fn connector_waiting(base_url: String, api_key: &str, timeout: Duration) -> RestConnector {
    RestConnector::new(RestConnectorConfig {
        base_url,
        api_key: api_key.into(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: timeout,
        reach: pointsflow_partners::Reach::Local,
    })
    .unwrap()
}

fn instruction(reference: u128, points: u64) -> CreditInstruction {
    CreditInstruction {
        reference: PartnerReference::from_number(reference),
        member: MemberNumber::parse("SKY1000001").unwrap(),
        member_name: None,
        points: Points::new(points).unwrap(),
        partner_program: "SKY".into(),
        timeout: None,
    }
}

fn rejected_code(outcome: &CreditOutcome) -> String {
    match outcome {
        CreditOutcome::Rejected(reason) => reason.code.to_string(),
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
    let outcome = impatient(s.base_url())
        .credit(&instruction(1, magic::TIMEOUT_AFTER_CREDIT))
        .await;
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
        started.elapsed() < Duration::from_secs(10),
        "the connector's own timeout (10 s) was used"
    );
}

#[tokio::test]
async fn over_the_rate_limit_calls_are_refused_with_429_and_nothing_credited() {
    let s = sandbox_with(SandboxBehaviour {
        rate_limit_per_second: Some(3),
        ..SandboxBehaviour::default()
    })
    .await;
    let c = connector(s.base_url(), KEY);
    let c = &c;
    let started = std::time::Instant::now();
    let outcomes = futures::future::join_all(
        (0..12u128).map(|n| async move { c.credit(&instruction(100 + n, 100)).await }),
    )
    .await;
    let seconds = started.elapsed().as_secs() as usize + 2;
    let credited = outcomes
        .iter()
        .filter(|o| matches!(o, CreditOutcome::Credited { .. }))
        .count();
    // A 429 is the partner refusing before doing anything: not attempted,
    // to be asked again after its Retry-After.
    let refused = outcomes
        .iter()
        .filter(|o| {
            matches!(o, CreditOutcome::NotAttempted { retry_after, .. } if *retry_after == Duration::from_secs(1))
        })
        .count();
    assert_eq!(credited + refused, 12, "{outcomes:?}");
    // The calls spanned at most `seconds` wall-clock seconds: at most 3
    // credited in each, and at least the first 3.
    assert!(
        (3..=3 * seconds).contains(&credited),
        "{credited} credited in {seconds} seconds"
    );
    let stats = s.stats();
    assert!(stats.max_per_second <= 3, "{stats:?}");
    assert_eq!(stats.throttled as usize, refused);
    assert_eq!(
        stats.credits as usize, credited,
        "a refused call credits nothing"
    );
}

#[tokio::test]
async fn a_failing_partner_answers_503_and_credits_nothing() {
    let s = sandbox_with(SandboxBehaviour {
        failure_rate: 1.0,
        ..SandboxBehaviour::default()
    })
    .await;
    let c = connector(s.base_url(), KEY);
    assert!(matches!(
        c.credit(&instruction(7, 100)).await,
        CreditOutcome::Unknown { .. }
    ));
    assert!(matches!(
        c.status(&PartnerReference::from_number(7), None).await,
        CreditOutcome::Unknown { .. }
    ));
    assert_eq!(s.stats().credits, 0);
}

#[tokio::test]
async fn a_slow_partner_times_the_connector_out() {
    let s = sandbox_with(SandboxBehaviour {
        latency: Duration::from_secs(30),
        ..SandboxBehaviour::default()
    })
    .await;
    let c = impatient(s.base_url());
    assert!(matches!(
        c.credit(&instruction(8, 100)).await,
        CreditOutcome::Unknown { .. }
    ));
}

#[tokio::test]
async fn the_statement_lists_credits_by_date() {
    let s = sandbox().await;
    let c = connector(s.base_url(), KEY);
    assert!(matches!(
        c.credit(&instruction(9, 100)).await,
        CreditOutcome::Credited { .. }
    ));
    let http = reqwest::Client::new();
    let statement = |query: String| {
        let http = http.clone();
        let url = format!("{}/v1/statement{query}", s.base_url());
        async move {
            let r = http.get(url).bearer_auth(KEY).send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, body)
        }
    };
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let (status, body) = statement(format!("?from={today}&to={tomorrow}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["credits"].as_array().unwrap().len(), 1);
    let (_, body) = statement(format!("?to={today}")).await;
    assert!(body["credits"].as_array().unwrap().is_empty());
    let (status, body) = statement("?from=yesterday".into()).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_request");
}
