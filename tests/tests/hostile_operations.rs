//! Hostile input to the operations function: generated invocations (any
//! JSON, and commands with fields of any shape, some naming a real
//! request) never panic, are answered with a known code when refused, and a
//! refused one changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pointsflow_core::ports::RequestGet;
use pointsflow_core::values::RequestId;
use pointsflow_tests::{ADA, deal, spawn_stack};
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
    "audit",
    "explode",
    "",
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

/// A command with fields of any shape; `real` is used for some request ids.
fn command(real: String) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(COMMANDS),
        prop::collection::vec((prop::sample::select(FIELDS), any_json()), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(name, fields, with_operator, with_real)| {
            let mut object = serde_json::Map::new();
            object.insert("command".into(), json!(name));
            if with_operator {
                object.insert("operator".into(), json!("ops-demo"));
            }
            for (field, value) in fields {
                object.insert(field.to_owned(), value);
            }
            if with_real {
                object.insert("request_id".into(), json!(real.clone()));
            }
            Value::Object(object)
        })
}

#[test]
fn generated_invocations_never_panic_and_a_refused_one_changes_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(spawn_stack(|_| {}));
    let real = rt.block_on(async {
        let id = t.accept("hostile-ops-1", &deal(ADA, "12550.00")).await;
        t.wait_for(&id, &["credited"]).await;
        id
    });
    let stored = |id: &str| {
        rt.block_on(t.stack.store.get(&RequestId::parse(id).unwrap()))
            .unwrap()
            .map(|r| serde_json::to_value(r).unwrap())
    };
    let strategy = prop_oneof![any_json(), command(real.clone())];
    let refused = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |invocation| {
            let before = stored(&real);
            let answer = rt.block_on(t.stack.operations.invoke(invocation.clone()));
            if !answer.ok {
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let error = answer.error.as_ref().unwrap();
                prop_assert!(
                    CODES.contains(&error.code.as_str()),
                    "unknown code {} for {invocation}",
                    error.code
                );
                prop_assert!(!error.message.is_empty());
                // A refusal changes nothing. An answer that says to run the
                // command again (the partner did not answer a reversal) may
                // have recorded what is to be done, as its message says.
                if !error.retryable {
                    prop_assert_eq!(
                        before,
                        stored(&real),
                        "a refused {} changed the request",
                        invocation
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let refused = refused.into_inner();
    assert!(
        refused > 256,
        "only {refused} of 512 invocations were refused"
    );
    rt.block_on(t.settle());
    t.check_ledger();
    rt.block_on(t.stack.shutdown());
}
