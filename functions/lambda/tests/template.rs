//! The deployment template grants each function what it uses and nothing
//! more: the internet-facing function cannot reach beyond its list, every
//! DynamoDB grant is narrowed to the partition keys the function owns, no
//! role can be passed but the window scheduler's (to the scheduler), the
//! admin API is IAM-authorized, and each operator role's managed policy
//! allows exactly its commands' routes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use pointsflow_conformance::template::{self, Statement};

const FUNCTIONS: [&str; 7] = [
    "IntakeFunction",
    "EligibilityFunction",
    "DispatchFunction",
    "CallbacksFunction",
    "OperationsFunction",
    "AdminFunction",
    "EventsFunction",
];

/// A partition key of each kind of item (docs/data-model.md).
const ITEMS: [&str; 18] = [
    "REQ#pr_0",
    "LEDGER#pr_0",
    "LEDGER#fund:sales:initial",
    "ACCT#budget#sales",
    "CAP#sales#005#2026-11",
    "LINK#sales",
    "LINKHIST#sales#005",
    "PROGRAMS",
    "PROGRAM#sales",
    "PARTNER#air",
    "AUDIT#2026-11-27",
    "REPORT#window:sales@2026-11-27T18:00Z",
    "WINDOW#sales@2026-11-27T18:00Z",
    "CREDIT#sales@2026-11-27T18:00Z/air/SKY1",
    "PROPOSAL#prop_0",
    "UNSETTLED#0",
    "ENTRY#anything",
    "MARK#sweep",
];

/// The item kinds `statements` allow `action` on in the table.
fn reachable(statements: &[Statement], action: &str) -> BTreeSet<&'static str> {
    ITEMS
        .into_iter()
        .filter(|pk| statements.iter().any(|s| s.allows(action, "table", pk)))
        .collect()
}

#[test]
fn the_internet_facing_function_reaches_nothing_beyond_its_list() {
    let spec = template::function("IntakeFunction");
    let actions: BTreeSet<&str> = spec.actions.iter().map(String::as_str).collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "secretsmanager:GetSecretValue",
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "sqs:SendMessage",
        ]),
        "no scheduler, no PassRole, no invoke, no update, delete or scan"
    );
    assert_eq!(
        reachable(&spec.statements, "dynamodb:PutItem"),
        BTreeSet::from(["REQ#pr_0", "LINK#sales"]),
        "intake writes requests and new links, and no ledger, account, audit, program or link-history item"
    );
    for read in ["dynamodb:GetItem", "dynamodb:Query"] {
        assert_eq!(
            reachable(&spec.statements, read),
            BTreeSet::from([
                "REQ#pr_0",
                "LEDGER#pr_0",
                "LEDGER#fund:sales:initial",
                "LINK#sales",
                "PROGRAMS"
            ]),
            "{read}"
        );
    }
    let resources: BTreeSet<&str> = spec
        .statements
        .iter()
        .flat_map(|s| s.resources.iter().map(String::as_str))
        .collect();
    assert!(resources.iter().all(|r| !r.contains('*')), "{resources:?}");
    // The configuration's secret, and no other: `??????` stands for the
    // six characters Secrets Manager appends to the name in the ARN.
    let secrets: Vec<&&str> = resources
        .iter()
        .filter(|r| r.contains(":secretsmanager:"))
        .collect();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert!(
        secrets[0].ends_with(":secret:${ConfigSecretName}-??????"),
        "{secrets:?}"
    );
    let queues: BTreeSet<&str> = spec
        .statements
        .iter()
        .filter(|s| s.actions.contains("sqs:SendMessage"))
        .flat_map(|s| s.resources.iter().map(String::as_str))
        .collect();
    assert_eq!(queues, BTreeSet::from(["!GetAtt EligibilityQueue.Arn"]));
    assert!(
        !spec.env.iter().any(|v| v.contains("SCHEDULE")),
        "{:?}",
        spec.env
    );
}

/// Only the resolver keeps a sweep mark: no other function reads or
/// writes it.
#[test]
fn only_dispatch_keeps_the_sweep_mark() {
    for function in FUNCTIONS {
        let spec = template::function(function);
        let writes = reachable(&spec.statements, "dynamodb:PutItem").contains("MARK#sweep");
        let reads = reachable(&spec.statements, "dynamodb:GetItem").contains("MARK#sweep");
        let dispatch = function == "DispatchFunction";
        assert_eq!(writes, dispatch, "{function} writes the mark");
        assert_eq!(reads, dispatch, "{function} reads the mark");
    }
}

#[test]
fn every_dynamodb_grant_is_narrowed_and_none_scans() {
    for function in FUNCTIONS {
        for s in template::function(function).statements {
            let on_table = s.resources.contains("table");
            let dynamodb = s.actions.iter().any(|a| a.starts_with("dynamodb:"));
            if dynamodb && s.resources.iter().any(|r| r.starts_with("index/")) {
                // An index grant is not narrowed by key (docs/security.md):
                // it may only query, and only the indexes, nothing else.
                assert_eq!(
                    s.actions,
                    BTreeSet::from(["dynamodb:Query".to_owned()]),
                    "{function}: {s:?}"
                );
                assert!(
                    s.resources.iter().all(|r| r.starts_with("index/")),
                    "{function}: {s:?}"
                );
            }
            if !(on_table && dynamodb) {
                continue;
            }
            // Nothing reads the whole table: searches and reconciliations
            // read indexes (docs/data-model.md).
            assert!(
                !s.actions.contains("dynamodb:Scan"),
                "{function} may not scan: {s:?}"
            );
            let keys = s
                .leading_keys
                .as_ref()
                .unwrap_or_else(|| panic!("{function}: a table grant without LeadingKeys: {s:?}"));
            assert!(keys.iter().all(|k| k != "*"), "{function}: {s:?}");
        }
    }
}

#[test]
fn only_the_window_scheduler_role_is_passed_and_only_to_the_scheduler() {
    for function in FUNCTIONS {
        for s in template::function(function).statements {
            if s.actions.contains("iam:PassRole") {
                assert_eq!(
                    s.resources,
                    BTreeSet::from(["role/WindowSchedulerRole".to_owned()]),
                    "{function}"
                );
                assert!(
                    s.conditions
                        .contains("StringEquals iam:PassedToService scheduler.amazonaws.com"),
                    "{function}: {s:?}"
                );
            }
            assert!(
                !s.actions.contains("lambda:InvokeFunction"),
                "{function} may invoke a function"
            );
        }
    }
    let root = template::root();
    let invokes = |role: &str| -> Vec<String> {
        root["Resources"][role]["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|p| {
                p["PolicyDocument"]["Statement"]
                    .as_sequence()
                    .unwrap()
                    .clone()
            })
            .filter(|s| format!("{:?}", s["Action"]).contains("lambda:InvokeFunction"))
            .map(|s| format!("{:?}", s["Resource"]))
            .collect()
    };
    let window = invokes("WindowSchedulerRole");
    assert!(
        window.len() == 1
            && window[0].contains("DispatchFunction")
            && !window[0].contains("Operations"),
        "{window:?}"
    );
    let reconcile = invokes("ReconcileSchedulerRole");
    assert!(
        reconcile.len() == 1 && reconcile[0].contains("OperationsFunction"),
        "{reconcile:?}"
    );
}

#[test]
fn the_admin_api_is_iam_authorized_and_each_role_policy_allows_its_commands() {
    let root = template::root();
    assert_eq!(
        root["Resources"]["HttpApi"]["Properties"]["Auth"]["EnableIamAuthorizer"],
        serde_yaml::Value::Bool(true)
    );
    let events = root["Resources"]["AdminFunction"]["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    assert!(!events.is_empty());
    for (name, event) in events {
        assert_eq!(event["Type"].as_str(), Some("HttpApi"), "{name:?}");
        assert_eq!(
            event["Properties"]["Auth"]["Authorizer"].as_str(),
            Some("AWS_IAM"),
            "{name:?}"
        );
        assert_eq!(
            event["Properties"]["Path"].as_str(),
            Some("/v1/admin/commands/{command}")
        );
    }
    // Nothing else may invoke it (SAM's permission for the API is the only one).
    for (id, resource) in root["Resources"].as_mapping().unwrap() {
        assert_ne!(
            resource["Type"].as_str(),
            Some("AWS::Lambda::Permission"),
            "{id:?} grants an invocation"
        );
    }
    for role in pointsflow_core::access::Role::ALL {
        let name = role.as_str();
        let logical = format!("Pointsflow{}{}Policy", name[..1].to_uppercase(), &name[1..]);
        let granted: BTreeSet<String> = template::policy(&logical)
            .iter()
            .inspect(|s| assert_eq!(s.actions, BTreeSet::from(["execute-api:Invoke".to_owned()])))
            .flat_map(|s| s.resources.iter())
            .map(|r| {
                r.rsplit('/')
                    .next()
                    .unwrap()
                    .trim_end_matches('"')
                    .to_owned()
            })
            .collect();
        let expected: BTreeSet<String> = pointsflow_operations::COMMANDS
            .iter()
            .filter(|(_, roles)| roles.contains(&role))
            .map(|(c, _)| (*c).to_owned())
            .collect();
        assert_eq!(granted, expected, "{logical}");
    }
}

#[test]
fn only_the_operators_functions_and_the_resolver_read_in_batches_and_only_requests() {
    for function in FUNCTIONS {
        let spec = template::function(function);
        let reached = reachable(&spec.statements, "dynamodb:BatchGetItem");
        if ["OperationsFunction", "AdminFunction", "DispatchFunction"].contains(&function) {
            assert_eq!(
                reached,
                BTreeSet::from(["REQ#pr_0"]),
                "{function}: a reconciliation, or the resolver's reading of an hour, reads \
                 request items in batches, nothing else"
            );
        } else {
            assert!(reached.is_empty(), "{function} may not read in batches");
        }
    }
}

/// The events function reads the table's stream, only points requests'
/// records invoke it, a failing record is retried in halves and finally
/// named on its dead-letter queue, and it puts events on the stack's bus,
/// which only the operators' functions may besides: it reads nothing of
/// the table but the programs and writes nothing there.
#[test]
fn the_events_function_reads_requests_changes_and_puts_events_on_its_bus() {
    let spec = template::function("EventsFunction");
    assert_eq!(
        spec.actions,
        BTreeSet::from(
            [
                "secretsmanager:GetSecretValue",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "events:PutEvents",
                "sqs:SendMessage",
            ]
            .map(str::to_owned)
        )
    );
    for read in ["dynamodb:GetItem", "dynamodb:Query"] {
        assert_eq!(
            reachable(&spec.statements, read),
            BTreeSet::from(["PROGRAMS"]),
            "{read}"
        );
    }
    let resources_of = |action: &str| -> BTreeSet<String> {
        spec.statements
            .iter()
            .filter(|s| s.actions.contains(action))
            .flat_map(|s| s.resources.iter().cloned())
            .collect()
    };
    assert_eq!(
        resources_of("events:PutEvents"),
        BTreeSet::from(["!GetAtt EventBus.Arn".to_owned()])
    );
    assert_eq!(
        resources_of("dynamodb:GetRecords"),
        BTreeSet::from(["!GetAtt LedgerTable.StreamArn".to_owned()])
    );
    assert_eq!(
        resources_of("sqs:SendMessage"),
        BTreeSet::from([
            "!GetAtt EventsDeadLetterQueue.Arn".to_owned(),
            "!GetAtt CallbacksQueue.Arn".to_owned()
        ])
    );
    // Status callbacks are queued by it (from the stream), the callbacks
    // function (a retry) and the operators' functions (`notify`,
    // `redrive`): not by eligibility, dispatch or intake.
    for function in FUNCTIONS {
        let queues = template::function(function)
            .statements
            .iter()
            .filter(|s| s.actions.contains("sqs:SendMessage"))
            .any(|s| s.resources.contains("!GetAtt CallbacksQueue.Arn"));
        let allowed = [
            "EventsFunction",
            "CallbacksFunction",
            "OperationsFunction",
            "AdminFunction",
        ]
        .contains(&function);
        assert_eq!(queues, allowed, "{function} and the callbacks queue");
    }
    // Besides it, only the operators' functions (`resend_events`), and on
    // that bus alone.
    for function in FUNCTIONS {
        let spec = template::function(function);
        let puts: BTreeSet<String> = spec
            .statements
            .iter()
            .filter(|s| s.actions.iter().any(|a| a.starts_with("events:")))
            .flat_map(|s| {
                assert_eq!(
                    s.actions,
                    BTreeSet::from(["events:PutEvents".to_owned()]),
                    "{function}"
                );
                s.resources.iter().cloned()
            })
            .collect();
        if ["EventsFunction", "OperationsFunction", "AdminFunction"].contains(&function) {
            assert_eq!(
                puts,
                BTreeSet::from(["!GetAtt EventBus.Arn".to_owned()]),
                "{function}"
            );
        } else {
            assert!(puts.is_empty(), "{function} may put events");
        }
    }
    let root = template::root();
    assert_eq!(
        root["Resources"]["LedgerTable"]["Properties"]["StreamSpecification"]["StreamViewType"]
            .as_str(),
        Some("NEW_AND_OLD_IMAGES")
    );
    let stream =
        &root["Resources"]["EventsFunction"]["Properties"]["Events"]["TableStream"]["Properties"];
    assert_eq!(stream["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert_eq!(
        stream["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let retries = stream["MaximumRetryAttempts"].as_u64().unwrap();
    assert!((1..=10_000).contains(&retries), "finite retries");
    assert!(stream["MaximumRecordAgeInSeconds"].as_u64().unwrap() <= 86_400);
    assert_eq!(
        format!(
            "{:?}",
            stream["DestinationConfig"]["OnFailure"]["Destination"]
        ),
        format!(
            "{:?}",
            root["Resources"]["EventsFunction"]["Properties"]["Policies"][0]["Statement"][4]["Resource"]
                [0]
        )
    );
    // The filter lets through exactly the items whose writes the function
    // reads into changes (requests, member links, window credits), so no
    // other item (ledger entries, counters, rate limits, circuits, link
    // histories, window runs) invokes it.
    let patterns: Vec<serde_json::Value> = stream["FilterCriteria"]["Filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| serde_json::from_str(f["Pattern"].as_str().unwrap()).unwrap())
        .collect();
    let admits = |pk: &str, sk: &str| {
        let matches = |rules: &serde_json::Value, value: &str| {
            rules.as_array().unwrap().iter().any(|rule| match rule {
                serde_json::Value::String(exact) => exact == value,
                other => value.starts_with(other["prefix"].as_str().unwrap()),
            })
        };
        patterns.iter().any(|p| {
            let keys = &p["dynamodb"]["Keys"];
            assert_eq!(p.as_object().unwrap().len(), 1, "{p}");
            matches(&keys["pk"]["S"], pk) && matches(&keys["sk"]["S"], sk)
        })
    };
    let keys = [
        ("REQ#pr_01", "REQUEST", true),
        ("REQ#pr_01", "SOURCEKEY#demo#deal-1", false),
        ("LINK#sales", "RECIPIENT#0055g00000AAAA1", true),
        (
            "LINKHIST#sales#0055g00000AAAA1",
            "2026-12-07T10:00:00.000000Z#ab12",
            false,
        ),
        (
            "CREDIT#sales@2026-12-07T10:00/sky/SK12345678",
            "CREDIT",
            true,
        ),
        ("WINDOW#sales@2026-12-07T10:00", "RUN", false),
        ("LEDGER#pr_01", "ENTRY#1", false),
        ("ACCT#sales", "BALANCE", false),
        ("PARTNER#sky", "RATE", false),
        ("PROGRAM#sales", "REVISION#3", false),
        ("PROPOSAL#p_1", "PROPOSAL", false),
    ];
    for (pk, sk, read) in keys {
        assert_eq!(
            pointsflow_aws::stream::is_event_item(pk, sk),
            read,
            "{pk} {sk}"
        );
        assert_eq!(admits(pk, sk), read, "the filter on {pk} {sk}");
    }
    assert_eq!(
        root["Resources"]["EventArchive"]["Properties"]["RetentionDays"],
        serde_yaml::from_str::<serde_yaml::Value>("!Ref EventArchiveDays").unwrap()
    );
}

/// The optional notification rules (off by default) send a sentence for a
/// credited or a failed request to a topic of the stack's own, which only
/// those two rules may publish to, and leave replayed events out, so a
/// replay to a new consumer notifies nobody twice; the optional event log
/// takes every event.
#[test]
fn notifications_and_the_event_log_are_optional_and_replays_notify_nobody() {
    let root = template::root();
    let parameters = &root["Parameters"];
    for parameter in ["Notifications", "EventLog"] {
        assert_eq!(parameters[parameter]["Default"].as_str(), Some("off"));
    }
    let resources = &root["Resources"];
    for (rule, kind, field) in [
        ("NotifyCredited", "Points Credited", "transaction"),
        ("NotifyFailed", "Points Failed", "reason"),
    ] {
        let properties = &resources[rule]["Properties"];
        assert_eq!(
            resources[rule]["Condition"].as_str(),
            Some("NotificationsOn")
        );
        let pattern = &properties["EventPattern"];
        assert_eq!(pattern["source"][0].as_str(), Some("pointsflow"));
        assert_eq!(pattern["detail-type"][0].as_str(), Some(kind));
        assert_eq!(
            pattern["replay-name"][0]["exists"].as_bool(),
            Some(false),
            "{rule} must leave replayed events out"
        );
        let target = &properties["Targets"][0];
        assert_eq!(
            format!("{:?}", target["Arn"]),
            format!(
                "{:?}",
                serde_yaml::from_str::<serde_yaml::Value>("!Ref NotificationTopic").unwrap()
            )
        );
        let template = target["InputTransformer"]["InputTemplate"]
            .as_str()
            .unwrap();
        for placeholder in [
            "points",
            "recipient",
            "program",
            "partner",
            field,
            "request",
        ] {
            assert!(
                template.contains(&format!("<{placeholder}>")),
                "{rule}: {placeholder}"
            );
            assert!(
                target["InputTransformer"]["InputPathsMap"][placeholder]
                    .as_str()
                    .unwrap()
                    .starts_with("$.detail"),
                "{rule}: {placeholder}"
            );
        }
    }
    let policy = &resources["NotificationTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let statements = policy.as_sequence().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0]["Principal"]["Service"].as_str(),
        Some("events.amazonaws.com")
    );
    assert_eq!(statements[0]["Action"].as_str(), Some("sns:Publish"));
    let sources = format!(
        "{:?}",
        statements[0]["Condition"]["ArnEquals"]["aws:SourceArn"]
    );
    assert!(
        sources.contains("NotifyCredited.Arn") && sources.contains("NotifyFailed.Arn"),
        "{sources}"
    );
    assert_eq!(
        resources["EventLogRule"]["Properties"]["EventPattern"]["source"][0].as_str(),
        Some("pointsflow")
    );
    for resource in ["EventLogGroup", "EventLogPolicy", "EventLogRule"] {
        assert_eq!(
            resources[resource]["Condition"].as_str(),
            Some("EventLogOn")
        );
    }
}
