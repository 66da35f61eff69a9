//! Reconciliation: requests, ledger and the partner's statement compared
//! credit by credit. Each kind of mismatch planted in the sandbox partner's
//! records is found; a clean window of 10,000 requests reports none.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pointsflow_core::ports::ReportStore;

use pointsflow_core::reconcile::{MismatchKind, ReconcileReport};
use pointsflow_core::window::WindowId;
use pointsflow_local::rig::{WindowRig, member_number};
use pointsflow_memory::MemoryWindowStore;
use pointsflow_partners::wire::CreditStatus;
use pointsflow_partners::{RestConnector, RestConnectorConfig};
use pointsflow_sandbox::magic;
use pointsflow_sandbox::{SandboxConfig, SandboxMember, SandboxPartner, Tamper};
use pointsflow_tests::{ADA, amount_for, deal, spawn_stack};
use serde_json::json;

#[tokio::test]
async fn each_kind_of_mismatch_planted_at_the_partner_is_found() {
    let t = spawn_stack(|_| {}).await;
    let mut ids = BTreeMap::new();
    for (name, points) in [
        ("clean", 100),
        ("removed", 120),
        ("changed", 140),
        ("failed", magic::PENDING_THEN_FAILED),
    ] {
        let id = t
            .accept(&format!("rec-{name}"), &deal(ADA, &amount_for(points)))
            .await;
        ids.insert(name, id);
    }
    let mut references = BTreeMap::new();
    for (name, id) in &ids {
        let view = t.wait_for(id, &["credited", "failed"]).await;
        references.insert(
            *name,
            view["partner_reference"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(t.get(&ids["failed"]).await["status"], "failed");

    // A clean run first: nothing to report.
    let run = || async {
        let answer = t
            .stack
            .operations
            .invoke(json!({"operator": "ops-demo", "command": "reconcile", "last_hours": 1}))
            .await;
        assert!(answer.ok, "{answer:#?}");
        serde_json::from_value::<ReconcileReport>(answer.result.unwrap()).unwrap()
    };
    let clean = run().await;
    assert_eq!(clean.mismatch_count, 0, "{clean:#?}");
    assert_eq!(clean.requests.values().map(|t| t.count).sum::<u64>(), 4);
    assert_eq!(clean.ledger.net(), 100 + 120 + 140);
    assert_eq!(clean.partner.credited_points, 100 + 120 + 140);

    // Behind pointsflow's back: a credit disappears, one changes amount, a
    // failed one turns credited, and one nobody sent appears.
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert!(sandbox.tamper(&references["removed"], Tamper::Remove));
    assert!(sandbox.tamper(&references["changed"], Tamper::Points(147)));
    assert!(sandbox.tamper(
        &references["failed"],
        Tamper::Status(CreditStatus::Credited)
    ));
    assert!(sandbox.tamper(
        "pfstranger0000000000000000000001",
        Tamper::Plant {
            member: "SKY1000001".into(),
            points: 42
        }
    ));
    let report = run().await;
    let found: Vec<(MismatchKind, &str)> = report
        .mismatches
        .iter()
        .map(|m| (m.kind, m.reference.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                MismatchKind::CreditedNotPosted,
                references["failed"].as_str()
            ),
            (
                MismatchKind::PostedNotOnStatement,
                references["removed"].as_str()
            ),
            (MismatchKind::AmountDiffers, references["changed"].as_str()),
            (
                MismatchKind::UnknownReference,
                "pfstranger0000000000000000000001"
            ),
        ],
        "{report:#?}"
    );
    assert_eq!(report.mismatch_count, 4);
    let changed = &report.mismatches[2];
    assert_eq!((changed.ledger_points, changed.partner_points), (140, 147));
    assert_eq!(changed.requests[0].as_str(), ids["changed"]);
    // Stored, and as CSV a header and a row per mismatch.
    let stored = t.stack.reports.report(&report.id).await.unwrap().unwrap();
    assert_eq!(stored, report);
    let csv = report.mismatches_csv();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.lines().nth(3).unwrap().starts_with("amount_differs,"),
        "{csv}"
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_window_of_ten_thousand_requests_reconciles_with_no_mismatch() {
    const MEMBERS: usize = 1_000;
    const PER_MEMBER: usize = 10;
    let sandbox = SandboxPartner::start(
        SandboxConfig {
            api_key: "partner-key".into(),
            members: (0..MEMBERS)
                .map(|i| SandboxMember {
                    member_number: member_number(i),
                    first_name: "Ada".into(),
                    last_name: format!("Member{i}"),
                })
                .collect(),
            slow_response: Duration::from_secs(5),
            behaviour: Default::default(),
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Box::pin(std::future::pending()),
    )
    .await
    .unwrap();
    let connector = Arc::new(
        RestConnector::new(RestConnectorConfig {
            base_url: sandbox.base_url(),
            api_key: "partner-key".into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            reach: pointsflow_partners::Reach::Local,
        })
        .unwrap(),
    );
    let mut program = pointsflow_local::config::default_config()
        .unwrap()
        .programs
        .remove(0);
    program.transfer = serde_json::from_value(json!({
        "mode": "scheduled", "cron": "0 18 * * *", "time_zone": "UTC", "consolidate": true
    }))
    .unwrap();
    let window = WindowId::parse(&format!("{}@2030-01-01T18:00Z", program.id)).unwrap();
    let rig = WindowRig::new(
        program,
        Arc::new(MemoryWindowStore::new()),
        connector,
        window.clone(),
    )
    .await
    .unwrap();
    let owed = rig.seed(MEMBERS, PER_MEMBER).await.unwrap();
    rig.fire().await.unwrap();
    rig.pump(1_000_000).await;
    assert_eq!(sandbox.stats().credits, MEMBERS as u64);

    let answer = rig
        .operations()
        .await
        .unwrap()
        .invoke(json!({"operator": "ops", "command": "reconcile", "window": window.to_string()}))
        .await;
    assert!(answer.ok, "{answer:#?}");
    let report: ReconcileReport = serde_json::from_value(answer.result.unwrap()).unwrap();
    let total: u64 = owed.values().sum();
    assert_eq!(report.mismatch_count, 0, "{:#?}", report.mismatches);
    assert_eq!(report.unsettled, 0);
    let credited = report.requests[&pointsflow_core::request::StatusKind::Credited];
    assert_eq!(
        (credited.count, credited.points),
        ((MEMBERS * PER_MEMBER) as u64, total)
    );
    assert_eq!(report.ledger.net(), total);
    assert_eq!(report.partner.credits, MEMBERS as u64);
    assert_eq!(report.partner.credited_points, total);
}
