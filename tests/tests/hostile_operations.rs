//! Hostile input to the operator commands, through the admin API under
//! each role: generated commands (any JSON body, and arguments of any
//! shape, some naming a real request or claiming to be another operator)
//! never panic or answer 5xx but for a retryable outage, are refused with a
//! known code, and a refused one changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pointsflow_core::ports::{ProgramStore, ProposalStore, RequestGet};
use pointsflow_core::values::RequestId;
use pointsflow_tests::{ADA, ROLE_OPERATORS, deal, spawn_stack, with_role_operators};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const CODES: &[&str] = &[
    "invalid_command",
    "invalid_field",
    "not_found",
    "not_awaiting_approval",
    "already_decided",
    "not_unsettled",
    "not_credited",
    "not_final",
    "no_callback",
    "not_retryable",
    "reversal_exceeds_credit",
    "reversal_id_reused",
    "partner_refused",
    "partner_unavailable",
    "ledger_mismatch",
    "unavailable",
    "forbidden",
    "four_eyes",
    "proposal_closed",
    "revision_conflict",
    "already_linked",
    "conflict",
    "malformed_json",
    "unsupported_media_type",
    "payload_too_large",
];

const COMMANDS: &[&str] = &[
    "get",
    "search",
    "approve",
    "decline",
    "retry",
    "resolve",
    "reverse",
    "reconcile",
    "report",
    "notify",
    "redrive",
    "resend_events",
    "audit",
    "programs",
    "program",
    "propose_program",
    "member",
    "link",
    "unlink",
    "link_history",
    "window",
    "proposals",
    "proposal",
    "confirm",
    "withdraw",
    "explode",
];

const FIELDS: &[&str] = &[
    "request_id",
    "reason",
    "points",
    "reversal_id",
    "window",
    "from",
    "to",
    "last_hours",
    "program",
    "queue",
    "max",
    "day",
    "limit",
    "status",
    "recipient",
    "member",
    "source_record",
    "id",
    "operator",
    "command",
    "proposal_id",
    "revision",
    "member_number",
    "first_name",
    "last_name",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("pr_00000000000000000000000000000000")),
        Just(json!("2026-11-28")),
        Just(json!("sales-incentive@2026-11-27T18:00Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A command's name and arguments of any shape; `real` is used for some
/// request ids.
fn command(real: String) -> impl Strategy<Value = (&'static str, Value)> {
    (
        prop::sample::select(COMMANDS),
        prop::collection::vec((prop::sample::select(FIELDS), any_json()), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(name, fields, with_operator, with_real)| {
            let mut object = serde_json::Map::new();
            if with_operator {
                object.insert("operator".into(), json!("ops-admin2"));
            }
            for (field, value) in fields {
                object.insert(field.to_owned(), value);
            }
            if with_real {
                object.insert("request_id".into(), json!(real.clone()));
            }
            (name, Value::Object(object))
        })
}

#[test]
fn generated_commands_never_panic_and_a_refused_one_changes_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(spawn_stack(with_role_operators));
    let real = rt.block_on(async {
        let id = t.accept("hostile-ops-1", &deal(ADA, "12550.00")).await;
        t.wait_for(&id, &["credited"]).await;
        id
    });
    let state = || {
        rt.block_on(async {
            let request = t
                .stack
                .store
                .get(&RequestId::parse(&real).unwrap())
                .await
                .unwrap()
                .map(|r| serde_json::to_value(r).unwrap());
            let programs = t.stack.programs.programs().await.unwrap().len();
            let proposals = t.stack.proposals.open(1000).await.unwrap().len();
            let links = format!("{:?}", t.stack.links);
            (request, programs, proposals, links)
        })
    };
    let body = prop_oneof![any_json().prop_map(|v| ("get", v)), command(real.clone()),];
    let strategy = (body, prop::sample::select(ROLE_OPERATORS));
    let refused = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |((name, arguments), (operator, key, _))| {
            let before = state();
            let (status, answer) = rt.block_on(t.admin(key, name, &arguments));
            if status == 200 {
                prop_assert_eq!(&answer["ok"], &json!(true));
                return Ok(());
            }
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let code = answer["code"].as_str().unwrap_or_default();
            prop_assert!(
                status < 500 || code == "unavailable" || code == "partner_unavailable",
                "{operator} {name} {arguments}: {status} {answer}"
            );
            prop_assert!(
                CODES.contains(&code) || status == 404,
                "unknown code {code} for {operator} {name} {arguments}: {answer}"
            );
            prop_assert!(!answer["detail"].as_str().unwrap_or_default().is_empty());
            // A refusal changes nothing. An answer that says to run the
            // command again (the partner did not answer a reversal) may
            // have recorded what is to be done, as its message says.
            if status < 500 {
                prop_assert_eq!(
                    before,
                    state(),
                    "a refused {} by {} changed something: {}",
                    name,
                    operator,
                    answer
                );
            }
            Ok(())
        })
        .unwrap();
    let refused = refused.into_inner();
    assert!(refused > 256, "only {refused} of 512 commands were refused");
    rt.block_on(t.settle());
    t.check_ledger();
    rt.block_on(t.stack.shutdown());
}
