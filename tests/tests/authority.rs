//! Who may do what, tried as an attacker would: every role refused every
//! command it lacks (403, audited, nothing changed), a second pair of eyes
//! on program revisions, link changes, large reversals and large requests
//! (the same principal twice refused), a declared identity never the
//! second pair of eyes, and the operator's identity taken from API
//! Gateway's IAM request context, never from what the caller writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use pointsflow_admin::Authentication;
use pointsflow_assembly::Assembly;
use pointsflow_core::access::Verified;
use pointsflow_core::ports::{Enrollments, ProgramStore, ProposalStore};
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_core::values::{ProgramId, RecipientId};
use pointsflow_local::embedded::Embedded;
use pointsflow_operations::COMMANDS;
use pointsflow_tests::{ADA, ROLE_OPERATORS, TestStack, deal, spawn_stack, with_role_operators};
use serde_json::{Value, json};

fn key(id: &str) -> &'static str {
    ROLE_OPERATORS.iter().find(|(o, _, _)| *o == id).unwrap().1
}

async fn admin(t: &TestStack, key: &str, command: &str, arguments: Value) -> (u16, Value) {
    t.admin(key, command, &arguments).await
}

/// Everything the commands could change, as JSON (the audit log aside).
async fn state(t: &TestStack) -> Value {
    let program = ProgramId::parse("sales-incentive").unwrap();
    let links: Vec<Value> = [ADA, "005NEW"]
        .iter()
        .map(|r| {
            let r = RecipientId::parse(r).unwrap();
            let links = t.stack.links.clone();
            let program = program.clone();
            async move { json!(links.member_link(&program, &r).await.unwrap()) }
        })
        .collect::<futures::future::JoinAll<_>>()
        .await;
    json!({
        "requests": t.stack.store.all().unwrap().iter().map(|r| json!(r)).collect::<Vec<_>>(),
        "ledger": format!("{:?}", t.stack.ledger.snapshot().unwrap().accounts),
        "programs": t.stack.programs.programs().await.unwrap().iter().map(|p| json!({
            "program": p.program, "revision": p.revision,
            "applied_by": p.applied_by.as_str(), "confirmed_by": p.confirmed_by.as_ref().map(|c| c.as_str().to_owned()),
        })).collect::<Vec<_>>(),
        "proposals": t.stack.proposals.open(100).await.unwrap(),
        "links": links,
        "dead_letters": t.stack.queues.dispatch_dlq.depth(),
    })
}

/// Arguments each command accepts (what it does with them is not the
/// point: the role is checked first).
fn arguments(command: &str, request: &str) -> Value {
    let program = serde_json::to_value(
        pointsflow_local::config::default_config().unwrap().programs[0].clone(),
    )
    .unwrap();
    let proposal = "prop_00000000000000000000000000000001";
    match command {
        "get" | "resolve" | "notify" | "approve" => json!({"request_id": request}),
        "decline" | "retry" => json!({"request_id": request, "reason": "no"}),
        "reverse" => json!({"request_id": request, "points": 1, "reason": "no"}),
        "search" => json!({"recipient": ADA}),
        "report" => json!({"id": "period:nothing"}),
        "audit" | "programs" | "proposals" => json!({}),
        "program" => json!({"program": "sales-incentive"}),
        "member" | "link_history" => json!({"program": "sales-incentive", "recipient": ADA}),
        "window" => json!({"window": "sales-incentive@2026-11-27T18:00Z"}),
        "proposal" | "confirm" => json!({"proposal_id": proposal}),
        "withdraw" => json!({"proposal_id": proposal, "reason": "no"}),
        "redrive" => json!({"queue": "dispatch", "max": 1}),
        "resend_events" => json!({"request_id": request}),
        "reconcile" => json!({"last_hours": 1}),
        "link" => json!({"program": "sales-incentive", "recipient": "005NEW",
                         "member_number": "SKY1000005", "first_name": "Grace", "last_name": "Hopper"}),
        "unlink" => json!({"program": "sales-incentive", "recipient": ADA, "reason": "left"}),
        "propose_program" => json!({"revision": 1, "program": program}),
        other => panic!("no arguments for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_is_refused_every_command_it_lacks_and_nothing_changes() {
    let t = spawn_stack(with_role_operators).await;
    let id = t.accept("authz-1", &deal(ADA, "12550.00")).await;
    t.wait_for(&id, &["credited"]).await;
    t.settle().await;
    let before = state(&t).await;
    let mut refusals = 0;
    for (command, roles) in COMMANDS {
        for (operator, key, held) in ROLE_OPERATORS {
            if held.iter().any(|h| roles.iter().any(|r| r.as_str() == *h)) {
                continue;
            }
            let (status, problem) = admin(&t, key, command, arguments(command, &id)).await;
            assert_eq!(status, 403, "{operator} ran {command}: {problem:#}");
            assert_eq!(
                problem["code"], "forbidden",
                "{operator} {command}: {problem:#}"
            );
            // Audited: the refusal is in the log under its id.
            let audit_id = problem["audit_id"].as_str().unwrap();
            let entry = t
                .stack
                .audit
                .all()
                .into_iter()
                .find(|e| e.id == audit_id)
                .unwrap();
            assert_eq!(entry.operator.as_str(), *operator);
            assert_eq!(entry.command, *command);
            assert_eq!(entry.outcome.unwrap().code, "forbidden");
            refusals += 1;
        }
    }
    assert!(refusals >= 60, "only {refusals} refusals tried");
    // `link` is an operator's and an admin's command, but creating a link
    // is the operator's part: an admin alone proposes changes only.
    let (status, problem) = admin(&t, key("ops-admin"), "link", arguments("link", &id)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("forbidden")),
        "{problem:#}"
    );
    assert_eq!(
        state(&t).await,
        before,
        "a refused command changed something"
    );
    // A key that is no operator's, and a source's key: refused before
    // any command runs, so there is nobody to audit.
    let audited = t.stack.audit.all().len();
    for key in ["pf_nobody_0123456789abcdef", pointsflow_tests::API_KEY] {
        let (status, problem) = admin(&t, key, "get", arguments("get", &id)).await;
        assert_eq!(status, 401, "{problem:#}");
    }
    assert_eq!(t.stack.audit.all().len(), audited);
    // The role is checked before the arguments: a viewer probing `confirm`
    // with nonsense learns only that it may not confirm.
    let (status, problem) = admin(&t, key("ops-view"), "confirm", json!({"nonsense": 1})).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("forbidden")),
        "{problem:#}"
    );
    t.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_others_rely_on_need_a_second_operator() {
    let t = spawn_stack(|c| {
        with_role_operators(c);
        c.program_refresh_ms = 50;
    })
    .await;
    let (admin1, admin2) = (key("ops-admin"), key("ops-admin2"));

    // A program revision: proposed by one admin, refused to the same
    // admin, applied when another confirms it, both names kept.
    let mut program = pointsflow_local::config::default_config().unwrap().programs[0].clone();
    program.budget = pointsflow_core::values::Points::new(20_000_000).unwrap();
    let (status, proposed) = admin(
        &t,
        admin1,
        "propose_program",
        json!({"revision": 1, "program": program, "reason": "Q4 budget"}),
    )
    .await;
    assert_eq!(status, 200, "{proposed:#}");
    let proposal = proposed["result"]["proposal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        t.stack.programs.programs().await.unwrap().is_empty(),
        "applied before confirmed"
    );
    let (status, refused) = admin(&t, admin1, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("four_eyes")),
        "{refused:#}"
    );
    let (status, refused) = admin(
        &t,
        key("ops-operate"),
        "confirm",
        json!({"proposal_id": proposal}),
    )
    .await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")));
    let (status, confirmed) = admin(&t, admin2, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!(status, 200, "{confirmed:#}");
    let applied = t.stack.programs.programs().await.unwrap();
    assert_eq!(applied[0].applied_by.as_str(), "ops-admin");
    assert_eq!(
        applied[0].confirmed_by.as_ref().unwrap().as_str(),
        "ops-admin2"
    );
    // Confirmed again: a repeat, nothing more.
    let (status, again) = admin(&t, admin2, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!((status, &again["result"]["changed"]), (200, &json!(false)));

    // Changing Ada's link: an operator may not; an admin proposes it, and
    // only a second admin's confirmation moves her miles.
    let grace = json!({"program": "sales-incentive", "recipient": ADA,
        "member_number": "SKY1000005", "first_name": "Grace", "last_name": "Hopper", "reason": "new account"});
    let (status, refused) = admin(&t, key("ops-operate"), "link", grace.clone()).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("forbidden")));
    let (status, proposed) = admin(&t, admin1, "link", grace).await;
    assert_eq!(status, 200, "{proposed:#}");
    let proposal = proposed["result"]["proposal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let program_id = ProgramId::parse("sales-incentive").unwrap();
    let ada = RecipientId::parse(ADA).unwrap();
    let link = || {
        let links = t.stack.links.clone();
        let (p, r) = (program_id.clone(), ada.clone());
        async move {
            pointsflow_usecases::link::LayeredEnrollments::new(
                pointsflow_local::config::default_config()
                    .unwrap()
                    .member_links(),
                links,
            )
            .member_link(&p, &r)
            .await
            .unwrap()
            .unwrap()
        }
    };
    assert_eq!(link().await.member.as_str(), "SKY1000001");
    // A second proposal from the same link, made before the first lands.
    let katherine = json!({"program": "sales-incentive", "recipient": ADA,
        "member_number": "SKY1000006", "first_name": "Katherine", "last_name": "Johnson", "reason": "typo"});
    let (status, rival) = admin(&t, admin2, "link", katherine).await;
    assert_eq!(status, 200, "{rival:#}");
    let rival = rival["result"]["proposal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = admin(&t, admin1, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!(status, 403);
    let (status, confirmed) = admin(&t, admin2, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!(status, 200, "{confirmed:#}");
    assert_eq!(link().await.member.as_str(), "SKY1000005");
    // The rival was made against a link that is gone: refused, nothing
    // changed, and it is open again (to withdraw, or to propose anew).
    let (status, refused) = admin(&t, admin1, "confirm", json!({"proposal_id": rival})).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("conflict")),
        "{refused:#}"
    );
    assert_eq!(link().await.member.as_str(), "SKY1000005");
    let (_, shown) = admin(
        &t,
        key("ops-view"),
        "proposal",
        json!({"proposal_id": rival}),
    )
    .await;
    assert_eq!(
        shown["result"]["proposal"]["state"], "proposed",
        "{shown:#}"
    );
    let (status, withdrawn) = admin(
        &t,
        admin2,
        "withdraw",
        json!({"proposal_id": rival, "reason": "superseded"}),
    )
    .await;
    assert_eq!(status, 200, "{withdrawn:#}");
    // A declared identity (a direct invocation) proposes nothing.
    let declared = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-admin", "command": "unlink",
            "program": "sales-incentive", "recipient": ADA, "reason": "left"}))
        .await;
    assert_eq!(declared.error.unwrap().code, "four_eyes");
    let (_, history) = admin(
        &t,
        key("ops-view"),
        "link_history",
        json!({"program": "sales-incentive", "recipient": ADA}),
    )
    .await;
    let change = history["result"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(change["from"], "SKY1000001");
    assert_eq!(change["to"], "SKY1000005");
    assert_eq!(change["by"], "ops-admin");
    assert_eq!(change["confirmed_by"], "ops-admin2");

    // A reversal above the program's reversal_limit (5,000): an operator
    // may reverse within it, not above; an admin proposes, another confirms.
    let id = t
        .accept("authz-rev", &deal("0055g00000DemoAA3", "300000.00"))
        .await;
    assert_eq!(t.wait_for(&id, &["credited"]).await["points"], 6000);
    let (status, refused) = admin(
        &t,
        key("ops-operate"),
        "reverse",
        json!({"request_id": id, "reason": "deal lost"}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("forbidden")),
        "{refused:#}"
    );
    let (status, small) = admin(
        &t,
        key("ops-operate"),
        "reverse",
        json!({"request_id": id, "points": 1000, "reason": "partly lost"}),
    )
    .await;
    assert_eq!(status, 200, "{small:#}");
    let (status, proposed) = admin(
        &t,
        admin1,
        "reverse",
        json!({"request_id": id, "reason": "deal lost"}),
    )
    .await;
    assert_eq!(status, 200, "{proposed:#}");
    let proposal = proposed["result"]["proposal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(proposed["result"]["proposal"]["change"]["points"], 5000);
    let (status, _) = admin(&t, admin1, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!(status, 403);
    let (status, done) = admin(&t, admin2, "confirm", json!({"proposal_id": proposal})).await;
    assert_eq!(status, 200, "{done:#}");
    let view = t.get(&id).await;
    assert_eq!(view["points"], 6000);
    let (_, got) = admin(&t, key("ops-view"), "get", json!({"request_id": id})).await;
    let reversals = got["result"]["request"]["reversals"].as_array().unwrap();
    let reversed: u64 = reversals
        .iter()
        .map(|r| r["points"].as_u64().unwrap())
        .sum();
    assert_eq!(reversed, 6000, "{reversals:#?}");
    assert!(
        reversals
            .iter()
            .any(|r| r["by"] == "ops-admin, confirmed by ops-admin2"),
        "{reversals:#?}"
    );

    // A request above the second approval threshold (40,000 points) needs
    // two different approvers; the same one twice is refused.
    let big = t
        .accept("authz-big", &deal("0055g00000DemoAA2", "2100000.00"))
        .await;
    t.wait_for(&big, &["awaiting_approval"]).await;
    let approve = json!({"request_id": big});
    let (status, first) = admin(&t, key("ops-approve"), "approve", approve.clone()).await;
    assert_eq!(status, 200, "{first:#}");
    let (status, again) = admin(&t, key("ops-approve"), "approve", approve.clone()).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (403, Some("four_eyes")),
        "{again:#}"
    );
    assert_eq!(t.get(&big).await["status"], "awaiting_approval");
    // A declared identity (a direct invocation) cannot be the second either.
    let declared = t
        .stack
        .operations
        .invoke(json!({"operator": "someone", "command": "approve", "request_id": big}))
        .await;
    assert_eq!(declared.error.unwrap().code, "four_eyes");
    let (status, second) = admin(&t, key("ops-approve2"), "approve", approve).await;
    assert_eq!(status, 200, "{second:#}");
    let view = t.wait_for(&big, &["credited"]).await;
    assert_eq!(view["approval"]["by"], "ops-approve2");

    // A declared identity cannot confirm a proposal.
    let (_, proposed) = admin(
        &t,
        admin1,
        "unlink",
        json!({"program": "sales-incentive", "recipient": "0055g00000DemoAA3", "reason": "left"}),
    )
    .await;
    let proposal = proposed["result"]["proposal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let declared = t
        .stack
        .operations
        .invoke(json!({"operator": "ops-admin2", "command": "confirm", "proposal_id": proposal}))
        .await;
    assert_eq!(declared.error.unwrap().code, "four_eyes");
    assert_eq!(t.stack.proposals.open(10).await.unwrap().len(), 1);
    t.settle().await;
    t.check_ledger();
    t.stack.shutdown().await;
}

/// Reversals sent at once cannot together pass the program's
/// `reversal_limit` (5,000): the limit is checked on the very version of
/// the request each reversal is recorded over, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversals_sent_at_once_stay_within_the_reversal_limit() {
    let t = spawn_stack(with_role_operators).await;
    let id = t
        .accept("authz-race", &deal("0055g00000DemoAA3", "300000.00"))
        .await;
    assert_eq!(t.wait_for(&id, &["credited"]).await["points"], 6000);
    let reverse = |reason: &'static str| {
        admin(
            &t,
            key("ops-operate"),
            "reverse",
            json!({"request_id": id, "points": 3000, "reason": reason}),
        )
    };
    let ((a, first), (b, second)) = tokio::join!(reverse("first half"), reverse("second half"));
    let mut outcomes = [
        (a, first["code"].as_str().map(str::to_owned)),
        (b, second["code"].as_str().map(str::to_owned)),
    ];
    outcomes.sort();
    assert_eq!(
        outcomes,
        [(200, None), (403, Some("forbidden".to_owned()))],
        "{first:#} {second:#}"
    );
    let (_, got) = admin(&t, key("ops-view"), "get", json!({"request_id": id})).await;
    let reversed: u64 = got["result"]["request"]["reversals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["points"].as_u64().unwrap())
        .sum();
    assert_eq!(reversed, 3000, "{got:#}");
    // Where the reversal is recorded, the limit holds however the caller
    // checked it before.
    let request = pointsflow_core::values::RequestId::parse(&id).unwrap();
    let three = pointsflow_core::values::Points::new(3000).ok();
    let five = pointsflow_core::values::Points::new(5000).ok();
    let refused = t
        .stack
        .operations
        .reverse(&request, "rev-late", three, "late", "ops-operate", five)
        .await
        .unwrap_err();
    assert_eq!(refused.code, "forbidden", "{}", refused.message);
    t.settle().await;
    t.check_ledger();
    t.stack.shutdown().await;
}

/// API Gateway's HTTP API event for an IAM-authorized route, as Lambda
/// receives it (AWS's documented payload 2.0, `requestContext.authorizer.iam`).
fn iam_event(command: &str, user_arn: Option<&str>, body: &str) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../functions/admin/tests/fixtures/apigw-v2-iam.json"
    ))
    .unwrap();
    let path = format!("/v1/admin/commands/{command}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"]["command"] = json!(command);
    event["body"] = json!(body);
    match user_arn {
        Some(arn) => event["requestContext"]["authorizer"]["iam"]["userArn"] = json!(arn),
        None => {
            event["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
        }
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn deployed_the_operator_is_the_iam_principal_in_the_request_context() {
    let mut config = pointsflow_tests::test_config();
    config.operators = vec![
        toml::from_str(
            "id = \"admins\"\nprincipals = [\"arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/*\"]\nroles = [\"viewer\", \"admin\"]",
        )
        .unwrap(),
    ];
    let embedded = Embedded::new(&config, Arc::new(SystemClock), Arc::new(RandomIds));
    let audit = embedded.audit.clone();
    let assembly = Assembly::new(config.clone(), embedded.adapters());
    let admin = assembly.admin(Authentication::Iam).await.unwrap();
    let anna = "arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/anna";

    let response = admin.handle(iam_event("programs", Some(anna), "{}")).await;
    assert_eq!(response.status(), 200);
    let entry = audit.all().pop().unwrap();
    assert_eq!(entry.operator.as_str(), anna);
    assert_eq!(entry.verified, Verified::Iam);

    // Naming someone else in the body is refused: the body never says who.
    let response = admin
        .handle(iam_event(
            "programs",
            Some(anna),
            r#"{"operator": "ops-demo"}"#,
        ))
        .await;
    assert_eq!(response.status(), 400);
    let entry = audit.all().pop().unwrap();
    assert_eq!(
        (
            entry.operator.as_str(),
            entry.outcome.unwrap().code.as_str()
        ),
        (anna, "invalid_command"),
        "the attempt is audited under the caller's principal"
    );
    // No IAM principal (not through API Gateway's IAM authorization), even
    // with an operator's key: unauthorized.
    let mut keyed = iam_event("programs", None, "{}");
    keyed.headers_mut().insert(
        "authorization",
        format!("Bearer {}", pointsflow_tests::OPERATOR_KEY)
            .parse()
            .unwrap(),
    );
    assert_eq!(admin.handle(keyed).await.status(), 401);
    // A principal the configuration does not name holds no role: refused,
    // and audited under its ARN.
    let mallory = "arn:aws:sts::123456789012:assumed-role/PointsflowViewer/mallory";
    let response = admin
        .handle(iam_event("programs", Some(mallory), "{}"))
        .await;
    assert_eq!(response.status(), 403);
    let entry = audit.all().pop().unwrap();
    assert_eq!(entry.operator.as_str(), mallory);
    assert_eq!(entry.outcome.unwrap().code, "forbidden");
    // The role a principal holds is checked: an admin pattern without the
    // operator role cannot redrive.
    let response = admin
        .handle(iam_event("redrive", Some(anna), r#"{"queue": "dispatch"}"#))
        .await;
    assert_eq!(response.status(), 403);
}
