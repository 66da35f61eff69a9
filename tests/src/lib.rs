//! Helpers for the end-to-end tests: start the local stack on free ports,
//! talk to it over HTTP, and check the ledger against the sandbox partner.
//! Logs are silent unless `TEST_LOG` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use pointsflow_core::ledger::{Entry, invariants};
use pointsflow_core::ports::LedgerRead;
use pointsflow_core::values::{MemberNumber, PartnerId, RequestId};
use pointsflow_intake::soap::{Notification, OutboundMessage};
use pointsflow_local::client::{ApiClient, ProgramChange};
use pointsflow_local::ops::Target;
use pointsflow_local::{AwsOptions, AwsStack, LocalConfig, Stack, StackOptions};
use serde_json::{Value, json};

/// How long a test waits for what it expects before it fails as hung. A
/// test asserts what the stack reaches, never how fast: this only has to
/// outlast the slowest, busiest machine the tests run on (the AWS API
/// emulator is one Python process, slow when a build shares the machine).
pub const PATIENCE: Duration = Duration::from_secs(300);

pub const API_KEY: &str = "pf_demo_4f1c2b7e9a6d4e0f";
pub const ADA: &str = "0055g00000DemoAA1";
/// The demo config's operator key (`ops-demo`: every role).
pub const OPERATOR_KEY: &str = "pf_ops_demo_3e8a1c5b7d9f2e4a";
/// The demo config's second operator (`ops-lead`: viewer, approver, admin).
pub const LEAD_KEY: &str = "pf_ops_lead_6b2d9f4a1c8e3a7d";

/// One operator per role (`ops-view`, `ops-approve`, `ops-operate`,
/// `ops-admin`), a second approver and a second admin: (id, key, roles).
pub const ROLE_OPERATORS: &[(&str, &str, &[&str])] = &[
    ("ops-view", "pf_ops_view_0123456789abcdef", &["viewer"]),
    ("ops-approve", "pf_ops_approve_0123456789ab", &["approver"]),
    ("ops-approve2", "pf_ops_approve2_0123456789a", &["approver"]),
    ("ops-operate", "pf_ops_operate_0123456789ab", &["operator"]),
    ("ops-admin", "pf_ops_admin_0123456789abcd", &["admin"]),
    ("ops-admin2", "pf_ops_admin2_0123456789abc", &["admin"]),
];

/// Makes [`ROLE_OPERATORS`] the configuration's operators.
pub fn with_role_operators(config: &mut LocalConfig) {
    config.operators = ROLE_OPERATORS
        .iter()
        .map(|(id, key, roles)| {
            toml::from_str::<pointsflow_config::OperatorEntry>(&format!(
                "id = \"{id}\"\napi_key = \"{key}\"\nroles = {roles:?}"
            ))
            .unwrap()
        })
        .collect();
}

/// The admin API of the stack at `base`, as `ops-demo`.
pub fn ops(base: &str) -> ApiClient {
    ApiClient::new(Target::local(base, OPERATOR_KEY))
}

/// The admin API of the stack at `base`, as `ops-lead`.
pub fn lead(base: &str) -> ApiClient {
    ApiClient::new(Target::local(base, LEAD_KEY))
}

/// Proposes a program file's changes as `ops-demo` and confirms each as
/// `ops-lead` (unless `dry_run`): what a program revision takes.
pub async fn apply_programs(
    base: &str,
    file: &pointsflow_config::ProgramFile,
    dry_run: bool,
) -> Vec<ProgramChange> {
    let changes = ops(base).apply_programs(file, dry_run).await.unwrap();
    for proposal in changes.iter().filter_map(|c| c.proposal.as_deref()) {
        lead(base).confirm(proposal).await.unwrap();
    }
    changes
}
/// The demo config's Salesforce source: its URL token and org.
pub const SF_TOKEN: &str = "sf_demo_token_7c1e9b2a4d6f8e0c";
pub const SF_ORG: &str = "00D5g000004DemoEAC";

/// An Opportunity notification as a Salesforce Outbound Message carries it.
pub fn opportunity(n: usize, owner: &str, stage: &str, amount: &str) -> Notification {
    let fields = [
        ("Id", format!("0065g00000{n:05}AAA")),
        ("OwnerId", owner.to_owned()),
        ("StageName", stage.to_owned()),
        ("Amount", amount.to_owned()),
        ("CurrencyIsoCode", "USD".to_owned()),
        ("CloseDate", "2026-11-20".to_owned()),
        ("Name", format!("Deal {n}")),
    ];
    Notification {
        id: format!("04l5g00000{n:05}AAA"),
        object: "Opportunity".into(),
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v)))
            .chain([("Description".to_owned(), None)])
            .collect(),
    }
}

/// An Outbound Message from the demo org.
pub fn outbound_message(notifications: Vec<Notification>) -> String {
    OutboundMessage {
        organization_id: SF_ORG[..15].to_owned(),
        action_id: Some("04k5g000000DemoAAA".into()),
        notifications,
    }
    .to_xml()
}

static LOGS: Once = Once::new();

/// The HTTP API of a running stack, as a client sees it.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

/// The local stack on the embedded adapters.
pub struct TestStack {
    pub stack: Stack,
    pub api: Api,
}

impl std::ops::Deref for TestStack {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The local stack on the AWS adapters, against the AWS API emulator.
pub struct AwsTestStack {
    pub stack: AwsStack,
    pub api: Api,
}

impl std::ops::Deref for AwsTestStack {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// The demo config, tuned for tests: quick retries (and quick status
/// callback retries), and timeouts long enough that no invocation or
/// partner call on a loaded machine runs into them unless a test means it
/// to (the sandbox's "timeout" amounts answer after `slow_response_ms`).
pub fn test_config() -> LocalConfig {
    let mut config = pointsflow_local::config::default_config().unwrap();
    config.queues.function_timeout_ms = 5_000;
    config.queues.visibility_timeout_ms = 6_000;
    config.queues.retry_base_ms = 20;
    config.queues.retry_cap_ms = 300;
    config.callbacks.retry_base_ms = 20;
    config.callbacks.retry_cap_ms = 300;
    config.sandbox.slow_response_ms = 3_000;
    for p in &mut config.partners {
        p.timeout_ms = 2_000;
    }
    config
}

fn logs() {
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            use pointsflow_runtime::masking::{Masker, MaskingWriter};
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_writer(MaskingWriter::new(
                    std::io::stderr,
                    Masker::new(test_config().secrets())
                        .with_members(test_config().member_numbers()),
                ))
                .try_init();
        }
    });
}

fn loopback() -> StackOptions {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    StackOptions {
        listen: any,
        sandbox_listen: any,
    }
}

pub async fn spawn_stack(edit: impl FnOnce(&mut LocalConfig)) -> TestStack {
    logs();
    let mut config = test_config();
    edit(&mut config);
    let stack = Stack::start(config, loopback()).await.unwrap();
    let api = Api {
        client: reqwest::Client::new(),
        base: stack.base_url(),
    };
    TestStack { stack, api }
}

/// The stack on the AWS adapters, with its own table and queues on the emulator.
pub async fn spawn_aws_stack(edit: impl FnOnce(&mut LocalConfig)) -> AwsTestStack {
    logs();
    let mut config = test_config();
    edit(&mut config);
    let aws = AwsOptions {
        endpoint: Some(pointsflow_harness::emulator::endpoint()),
        prefix: pointsflow_harness::emulator::unique_name("pf-e2e"),
        meter: None,
    };
    let stack = AwsStack::start(config, loopback(), aws).await.unwrap();
    let api = Api {
        client: reqwest::Client::new(),
        base: stack.base_url(),
    };
    AwsTestStack { stack, api }
}

fn has_entry(view: &Value, kind: &str) -> bool {
    view["ledger"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(|e| e["type"] == kind))
}

/// A Closed Won deal for `recipient` worth `amount` USD.
pub fn deal(recipient: &str, amount: &str) -> Value {
    json!({
        "program": "sales-incentive",
        "recipient": {"id": recipient},
        "amount": {"value": amount, "currency": "USD"},
        "event": {"type": "opportunity.closed_won", "occurred_at": "2026-11-27T16:00:00Z"}
    })
}

/// The contention scenario: 10 enrolled recipients, a budget that fits 50
/// requests of 100 points and a monthly cap that fits 10 per recipient.
pub const CONTENDERS: usize = 10;

/// Edits a configuration for [`contend`]. The function timeout is long
/// enough for a batch of 10 against the (single-threaded) AWS API emulator
/// under this load; a timeout would only retry the batch.
pub fn contention_config(config: &mut LocalConfig) {
    config.queues.function_timeout_ms = 10_000;
    config.queues.visibility_timeout_ms = 12_000;
    let program = &mut config.programs[0];
    program.budget = pointsflow_core::values::Points::new(50 * 100).unwrap();
    program.monthly_cap_per_recipient =
        Some(pointsflow_core::values::Points::new(10 * 100).unwrap());
    let id = program.id.clone();
    for i in 0..CONTENDERS {
        config.members.push(pointsflow_local::config::MemberEntry {
            program: id.clone(),
            recipient: pointsflow_core::values::RecipientId::parse(&format!("0055g0000Race{i:04}"))
                .unwrap(),
            member_number: format!("SKY20{i:05}"),
            first_name: "Race".into(),
            last_name: format!("Contender{i}"),
        });
    }
}

/// Sends 200 requests of 100 points at once, 20 per recipient, and waits
/// for every one to settle; returns how many were credited per recipient
/// and the rejection codes.
pub async fn contend(api: &Api) -> (Vec<usize>, BTreeMap<String, usize>) {
    let submissions = (0..200).map(|n| {
        let recipient = format!("0055g0000Race{:04}", n % CONTENDERS);
        async move {
            api.accept(&format!("race-{n}"), &deal(&recipient, "5000.00"))
                .await
        }
    });
    let ids = futures::future::join_all(submissions).await;
    let mut credited = vec![0; CONTENDERS];
    let mut rejected = BTreeMap::new();
    for (n, id) in ids.iter().enumerate() {
        let view = api
            .wait_for_within(
                id,
                &["credited", "rejected", "failed"],
                Duration::from_secs(180),
            )
            .await;
        match view["status"].as_str().unwrap() {
            "credited" => credited[n % CONTENDERS] += 1,
            "rejected" => {
                *rejected
                    .entry(view["reason"]["code"].as_str().unwrap().to_owned())
                    .or_default() += 1
            }
            other => panic!("{id} ended {other}: {view:#}"),
        }
    }
    (credited, rejected)
}

/// What [`contend`] must come to: exactly the 50 the budget fits, never more
/// than the cap's 10 for anyone, and the rest refused for budget or cap.
pub fn assert_contention(credited: &[usize], rejected: &BTreeMap<String, usize>) {
    assert_eq!(
        credited.iter().sum::<usize>(),
        50,
        "{credited:?} {rejected:?}"
    );
    assert!(credited.iter().all(|&n| n <= 10), "{credited:?}");
    assert_eq!(rejected.values().sum::<usize>(), 150, "{rejected:?}");
    assert!(
        rejected
            .keys()
            .all(|k| k == "budget_exhausted" || k == "monthly_cap_reached"),
        "{rejected:?}"
    );
}

/// The deal amount that earns exactly `points` at 2 points per 100 USD.
pub fn amount_for(points: u64) -> String {
    format!("{}.00", points * 50)
}

impl Api {
    pub async fn submit(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/points-requests", self.base))
            .bearer_auth(API_KEY)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts an Outbound Message to the demo Salesforce source; returns the
    /// status and body.
    pub async fn post_outbound(&self, xml: String) -> (u16, String) {
        let response = self
            .client
            .post(format!(
                "{}/v1/sources/salesforce/events?token={SF_TOKEN}",
                self.base
            ))
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"\"")
            .body(xml)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Submits and returns the accepted request's id.
    /// Posts `body` to the demo HRIS source, signed with its HMAC secret
    /// and the current time; returns the status.
    pub async fn post_signed_hris(&self, body: String) -> u16 {
        let at = chrono::Utc::now().timestamp().to_string();
        let signature = pointsflow_intake::webhook_signature(
            b"hris_demo_secret_2b8f4e6a1c3d5e7f9a0b",
            &at,
            body.as_bytes(),
        );
        self.client
            .post(format!("{}/v1/sources/hris/events", self.base))
            .header("content-type", "application/json")
            .header("x-pointsflow-timestamp", &at)
            .header("x-pointsflow-signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn accept(&self, key: &str, body: &Value) -> String {
        let response = self.submit(key, body).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    /// `command` with `arguments` on the admin API, as the holder of
    /// `key`: the status and the answer (or problem).
    pub async fn admin(&self, key: &str, command: &str, arguments: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/admin/commands/{command}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(arguments.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, id: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/v1/points-requests/{id}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Polls until the request is in one of `states`, failing after
    /// [`PATIENCE`].
    /// A settled request (`credited`, `failed`) counts once its post or void
    /// is in the ledger too: dispatch writes the state first, then the ledger.
    pub async fn wait_for(&self, id: &str, states: &[&str]) -> Value {
        self.wait_for_within(id, states, PATIENCE).await
    }

    /// [`Api::wait_for`] with another deadline.
    pub async fn wait_for_within(&self, id: &str, states: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let view = self.get(id).await;
            let settled = match view["status"].as_str() {
                Some("credited") => has_entry(&view, "post_pending"),
                Some("failed") => has_entry(&view, "void_pending"),
                _ => true,
            };
            if settled && states.iter().any(|s| view["status"] == *s) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {states:?}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A request's ledger entries, by the id its API answer gave.
pub async fn entries_of(ledger: &dyn LedgerRead, id: &str) -> Vec<Entry> {
    ledger
        .entries_for(&RequestId::parse(id).unwrap())
        .await
        .unwrap()
}

impl TestStack {
    /// Waits until both queues are empty and nothing is in flight.
    pub async fn settle(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.stack.queues.eligibility.depth() + self.stack.queues.dispatch.depth() > 0 {
            assert!(Instant::now() < deadline, "queues never drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every event on the bus, once the events function has published
    /// every write the stores recorded.
    pub async fn published(&self) -> Vec<pointsflow_core::events::Event> {
        let deadline = Instant::now() + PATIENCE;
        while !self.stack.stream.is_empty() {
            assert!(Instant::now() < deadline, "the stream was never drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stack.bus.events()
    }

    /// Waits until the events function has published every stored change
    /// (the store's stream is empty), then returns the detail-types of
    /// request `id`'s events on the bus, in the order the bus took them,
    /// checking that their sequence numbers only rise (none twice).
    pub async fn events_of(&self, id: &str) -> Vec<String> {
        let events: Vec<_> = self
            .published()
            .await
            .into_iter()
            .filter(|e| e.request().is_some_and(|d| d.request_id.as_str() == id))
            .collect();
        let sequences: Vec<u32> = events
            .iter()
            .filter_map(|e| e.request().map(|d| d.sequence))
            .collect();
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "{id}'s events out of order or twice: {sequences:?}"
        );
        events
            .iter()
            .map(|e| e.detail_type.as_str().to_owned())
            .collect()
    }

    pub fn sandbox_credits(&self) -> u64 {
        self.stack.sandbox.as_ref().unwrap().stats().credits
    }

    /// Every ledger invariant holds, and the sandbox partner credited exactly
    /// what the ledger posted, member by member.
    pub fn check_ledger(&self) {
        let snapshot = self.stack.ledger.snapshot().unwrap();
        snapshot.check().unwrap();
        let sandbox = self.stack.sandbox.as_ref().unwrap();
        let credited: BTreeMap<MemberNumber, u64> = sandbox
            .credited_by_member()
            .into_iter()
            .map(|(m, n)| (MemberNumber::parse(&m).unwrap(), n))
            .collect();
        invariants::check_partner_matches(
            &snapshot.entries,
            &PartnerId::parse("sandbox-air").unwrap(),
            &credited,
        )
        .unwrap();
    }
}

/// A window schedule that never fires during a test (the tests fire windows
/// themselves): midnight UTC on the first of January.
pub const YEARLY: &str = "0 0 1 1 *";

/// Makes `sales-incentive` a scheduled program (consolidating or not) with
/// no approval threshold, and enrolls `members` more recipients (with
/// accounts at the sandbox airline); returns their recipient ids.
pub fn scheduled_config(
    config: &mut LocalConfig,
    consolidate: bool,
    members: usize,
) -> Vec<String> {
    let program = &mut config.programs[0];
    program.transfer = serde_json::from_value(json!({
        "mode": "scheduled", "cron": YEARLY, "time_zone": "UTC", "consolidate": consolidate
    }))
    .unwrap();
    program.approval_threshold = None;
    let id = program.id.clone();
    (0..members)
        .map(|i| {
            let recipient = format!("0055g000Win{i:05}");
            config.members.push(pointsflow_local::config::MemberEntry {
                program: id.clone(),
                recipient: pointsflow_core::values::RecipientId::parse(&recipient).unwrap(),
                member_number: format!("SKY4{i:06}"),
                first_name: "Window".into(),
                last_name: format!("Member{i}"),
            });
            recipient
        })
        .collect()
}

/// Fires the schedule of `window` (`program@YYYY-MM-DDTHH:MMZ`) at `dispatch`.
pub async fn fire(
    dispatch: &pointsflow_dispatch::Dispatch,
    window: &str,
) -> pointsflow_core::window::WindowRun {
    let window = pointsflow_core::window::WindowId::parse(window).unwrap();
    dispatch
        .window_closed(&pointsflow_dispatch::window::WindowClosed {
            program: window.program().clone(),
            scheduled_time: window.closes_at(),
        })
        .await
        .unwrap()
}

/// A window's run with its settled credits counted.
pub async fn progress(
    windows: &dyn pointsflow_core::ports::WindowStore,
    window: &str,
) -> pointsflow_core::window::WindowRun {
    let window = pointsflow_core::window::WindowId::parse(window).unwrap();
    let run = windows.run(&window).await.unwrap().unwrap();
    let settled = windows.settled(&window).await.unwrap();
    run.with_settled(&settled)
}

/// Submits `per_member` deals for each recipient (amounts varying), waits
/// until every one is `scheduled`, and returns (request id, recipient,
/// points) for each, and their window.
pub async fn schedule_deals(
    api: &Api,
    recipients: &[String],
    per_member: usize,
    tag: &str,
) -> (Vec<(String, String, u64)>, String) {
    let mut wanted = Vec::new();
    for (r, recipient) in recipients.iter().enumerate() {
        for k in 0..per_member {
            wanted.push((recipient.clone(), 100 + ((r * 7 + k * 13) % 50) as u64 * 10));
        }
    }
    let mut out = Vec::new();
    for chunk in wanted.chunks(50) {
        let ids =
            futures::future::join_all(chunk.iter().enumerate().map(|(i, (recipient, points))| {
                let key = format!("{tag}-{recipient}-{i}-{}", out.len());
                async move {
                    api.accept(&key, &deal(recipient, &amount_for(*points)))
                        .await
                }
            }))
            .await;
        for (id, (recipient, points)) in ids.into_iter().zip(chunk) {
            out.push((id, recipient.clone(), *points));
        }
    }
    let mut window = String::new();
    for (id, _, _) in &out {
        let view = api.wait_for(id, &["scheduled"]).await;
        window = view["window"].as_str().unwrap().to_owned();
    }
    (out, window)
}

/// The states of a request's timeline, in order.
pub fn path(view: &Value) -> Vec<String> {
    view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a real-time request went `received`, `reserved`, `dispatching`,
/// then through any number of the unsettled states a retry or a look-up
/// records (`unknown`, `partner_pending`: a partner that answers late adds
/// one, however fast the machine), each of `through` at least once, and
/// ended `last`.
pub fn assert_settled_path(view: &Value, through: &[&str], last: &str) {
    let states = path(view);
    assert!(
        states.len() >= 4 && states[..3] == ["received", "reserved", "dispatching"],
        "{states:?}"
    );
    assert_eq!(states.last().map(String::as_str), Some(last), "{states:?}");
    let middle = &states[3..states.len() - 1];
    assert!(
        middle
            .iter()
            .all(|s| s == "unknown" || s == "partner_pending"),
        "{states:?}"
    );
    for state in through {
        assert!(middle.iter().any(|s| s == state), "no {state}: {states:?}");
    }
}

/// The partner references a request's timeline names (the first call
/// under each, and a window's move of the request into its credit): one
/// per reference the request was ever given.
pub fn fixed_references(view: &Value) -> Vec<String> {
    let mut references = std::collections::BTreeSet::new();
    for detail in view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
    {
        for (at, _) in detail.match_indices("partner reference ") {
            let rest = &detail[at + "partner reference ".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            references.insert(rest[..end].to_owned());
        }
    }
    references.into_iter().collect()
}
