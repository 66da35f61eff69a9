//! Scheduled windows through the local stack on the embedded adapters:
//! requests held `scheduled`, the window's schedule firing (once or again
//! and again), consolidation, a dispatch function killed part way, and
//! requests that arrive after their window was dispatched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pointsflow_core::partner::{CreditInstruction, CreditOutcome, MemberCheck, MemberCheckOutcome};
use pointsflow_core::ports::UnsettledIndex;
use pointsflow_core::ports::{PartnerConnector, StoreError};
use pointsflow_core::ports::{ScheduledRequests, WindowStore};
use pointsflow_core::reason::ReasonCode;
use pointsflow_core::request::StatusKind;
use pointsflow_core::unsettled::Unsettled;
use pointsflow_core::values::PartnerReference;
use pointsflow_core::window::{
    Claim, CreditCreated, CreditId, CreditState, RunCounts, RunState, WindowCredit, WindowId,
    WindowRun,
};
use pointsflow_local::client::ClientError;
use pointsflow_local::config::{EXAMPLE_PROGRAMS, ProgramFile};
use pointsflow_local::rig::WindowRig;
use pointsflow_memory::MemoryWindowStore;
use pointsflow_tests::{TestStack, fire, progress, schedule_deals, scheduled_config, spawn_stack};
use serde_json::Value;

/// What each member should have been credited: their requests' sum.
fn expected_by_member(requests: &[(String, String, u64)]) -> BTreeMap<String, u64> {
    let mut by_recipient: BTreeMap<String, u64> = BTreeMap::new();
    for (_, recipient, points) in requests {
        *by_recipient.entry(recipient.clone()).or_default() += points;
    }
    // Recipient `0055g000WinNNNNN` is member `SKY4` + the same number.
    by_recipient
        .into_iter()
        .map(|(r, p)| {
            let n: usize = r.trim_start_matches("0055g000Win").parse().unwrap();
            (format!("SKY4{n:06}"), p)
        })
        .collect()
}

/// Waits until every request is credited; returns their views.
async fn all_credited(t: &TestStack, requests: &[(String, String, u64)]) -> Vec<Value> {
    let mut views = Vec::new();
    for (id, _, _) in requests {
        views.push(t.wait_for(id, &["credited"]).await);
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_fired_three_times_is_dispatched_once() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, true, 6)).await;
    let (requests, window) = schedule_deals(&t, &recipients, 5, "thrice").await;
    assert_eq!(t.sandbox_credits(), 0, "held until the window");
    assert_eq!(
        t.stack
            .schedules
            .armed()
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>(),
        vec![window.clone()],
        "eligibility armed the window's schedule"
    );
    let ops = pointsflow_tests::ops(&t.base);
    assert!(
        matches!(
            ops.window(&window.to_string()).await,
            Err(ClientError::Problem { code, .. }) if code == "not_found"
        ),
        "no run before the window fires"
    );

    // EventBridge delivers at least once: three firings, at once.
    let (a, b, c) = tokio::join!(
        fire(&t.stack.dispatch, &window),
        fire(&t.stack.dispatch, &window),
        fire(&t.stack.dispatch, &window)
    );
    assert!([a, b, c].iter().all(|run| run.window.to_string() == window));
    t.settle().await;
    all_credited(&t, &requests).await;
    // And once more, late, after it was dispatched.
    let late = fire(&t.stack.dispatch, &window).await;
    assert_eq!(late.state, RunState::Planned);
    t.settle().await;

    assert_eq!(t.sandbox_credits(), 6, "one credit per member, once");
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));
    t.check_ledger();
    let run = progress(t.stack.windows.as_ref(), &window).await;
    // Fired three times at once, it may be planned by more than one
    // invocation (a firing while planning queues the planning again); what
    // counts is that it was planned once in effect: done, nothing left
    // part way, and every request and credit counted once.
    assert_eq!(run.state, RunState::Planned);
    assert!(run.in_progress.is_empty(), "{run:?}");
    assert_eq!(
        (
            run.counts.requests,
            run.counts.credits,
            run.counts.members,
            run.counts.credited,
            run.counts.credited_requests,
            run.counts.pending()
        ),
        (30, 6, 6, 6, 30, 0)
    );
    assert_eq!(
        run.counts.credited_points,
        requests.iter().map(|r| r.2).sum::<u64>()
    );
    // Operators see the same through the API and the CLI.
    let view = ops.window(&window.to_string()).await.unwrap();
    assert_eq!(view["state"], "planned");
    assert_eq!(
        (
            view["credits"].as_u64(),
            view["credited"].as_u64(),
            view["pending"].as_u64()
        ),
        (Some(6), Some(6), Some(0))
    );
    let shown = pointsflow_local::client::render_window(&view);
    assert!(
        shown.contains("planned   30 requests from 6 members in 6 credits"),
        "{shown}"
    );
    assert!(
        shown.contains("credited  6 credits: 30 requests"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_sends_one_credit_per_member_linked_to_each_request() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, true, 120)).await;
    // 1,000 requests from 120 members: 40 members with 9, 80 with 8.
    let mut requests = Vec::new();
    let (nine, _) = schedule_deals(&t, &recipients[..40], 9, "c9").await;
    let (eight, window) = schedule_deals(&t, &recipients[40..], 8, "c8").await;
    requests.extend(nine);
    requests.extend(eight);
    assert_eq!(requests.len(), 1_000);

    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    let views = all_credited(&t, &requests).await;

    let stats = t.stack.sandbox.as_ref().unwrap().stats();
    assert_eq!(stats.credits, 120, "one partner credit per member");
    assert_eq!(stats.points, requests.iter().map(|r| r.2).sum::<u64>());
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));

    // Each request names its credit; the credit lists it, carries the
    // reference the request shows, and its points are the requests' sum.
    // (A source sees the credit's id with the member number masked, as
    // everywhere in its view.)
    let credits: BTreeMap<_, _> = t
        .stack
        .windows
        .credits_of(&WindowId::parse(&window).unwrap())
        .into_iter()
        .map(|c| {
            let member = c.member.as_str();
            let masked = pointsflow_runtime::masking::member_number(member);
            (c.id.to_string().replace(member, &masked), c)
        })
        .collect();
    assert_eq!(credits.len(), 120);
    for (view, (id, recipient, _)) in views.iter().zip(&requests) {
        let credit = &credits[view["credit"].as_str().unwrap()];
        assert!(credit.requests.iter().any(|r| r.as_str() == id));
        assert_eq!(view["partner_reference"], credit.reference.as_str());
        assert_eq!(view["window"], window.as_str());
        let member = &expected_by_member(&[(id.clone(), recipient.clone(), 0)]);
        assert_eq!(credit.member.as_str(), member.keys().next().unwrap());
        let entries = view["ledger"].as_array().unwrap();
        assert!(entries.iter().any(|e| e["type"] == "post_pending"));
    }
    for (seen_as, credit) in &credits {
        let sum: u64 = views
            .iter()
            .filter(|v| v["credit"] == seen_as.as_str())
            .map(|v| v["points"].as_u64().unwrap())
            .sum();
        assert_eq!(credit.points.get(), sum);
    }
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_run_killed_half_way_resumes_and_credits_every_member_once() {
    let mut recipients = Vec::new();
    let mut t = spawn_stack(|c| {
        recipients = scheduled_config(c, true, 200);
        // Slow enough that the kill lands part way.
        c.sandbox.latency_ms = 3;
    })
    .await;
    let (requests, window) = schedule_deals(&t, &recipients, 2, "kill").await;

    // The partner holds every credit past the 100th: the kill lands part
    // way through, whatever the machine's speed.
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    sandbox.hold_credits_after(100);
    fire(&t.stack.dispatch, &window).await;
    let deadline = Instant::now() + pointsflow_tests::PATIENCE;
    while t.sandbox_credits() < 100 {
        assert!(Instant::now() < deadline, "never reached half the credits");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.stack.crash_dispatch();
    let at_crash = t.sandbox_credits();
    assert!(at_crash < 200, "the kill came too late to test anything");
    t.stack.sandbox.as_ref().unwrap().release_credits();
    // The crashed invocations' messages come back after their visibility
    // timeout, to a new dispatch function.
    tokio::time::sleep(Duration::from_millis(700)).await;
    t.stack.restart_dispatch();
    t.settle().await;
    all_credited(&t, &requests).await;

    assert_eq!(
        t.sandbox_credits(),
        200,
        "every member credited exactly once"
    );
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));
    t.check_ledger();
    let run = progress(t.stack.windows.as_ref(), &window).await;
    assert_eq!((run.counts.credited, run.counts.pending()), (200, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_its_window_was_dispatched_goes_in_the_next_window() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, true, 2)).await;
    let (first, window) = schedule_deals(&t, &recipients, 2, "on-time").await;
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    all_credited(&t, &first).await;
    assert_eq!(t.sandbox_credits(), 2);

    // Decided after the window's run was planned: the run does not take it,
    // however often the window fires again.
    let (late, late_window) = schedule_deals(&t, &recipients[..1], 1, "late").await;
    assert_eq!(late_window, window);
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    assert_eq!(t.get(&late[0].0).await["status"], "scheduled");
    assert_eq!(t.sandbox_credits(), 2);

    // The next window takes it.
    let current = WindowId::parse(&window).unwrap();
    let next = WindowId::new(
        current.program(),
        current.closes_at() + chrono::TimeDelta::days(365),
    );
    fire(&t.stack.dispatch, &next.to_string()).await;
    t.settle().await;
    let view = t.wait_for(&late[0].0, &["credited"]).await;
    assert_eq!(view["window"], next.to_string());
    assert_eq!(t.sandbox_credits(), 3);
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consolidation_each_request_is_its_own_credit() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| recipients = scheduled_config(c, false, 3)).await;
    let (requests, window) = schedule_deals(&t, &recipients, 4, "single").await;
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    let views = all_credited(&t, &requests).await;
    assert_eq!(t.sandbox_credits(), 12);
    let references: std::collections::BTreeSet<_> = views
        .iter()
        .map(|v| v["partner_reference"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(references.len(), 12, "a reference per request");
    t.check_ledger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_scheduled_program_arms_its_next_window() {
    let t = spawn_stack(|_| {}).await;
    assert!(
        t.stack.schedules.armed().is_empty(),
        "nothing scheduled yet"
    );
    let weekly = EXAMPLE_PROGRAMS.replacen(
        r#"transfer = { mode = "realtime" }"#,
        r#"transfer = { mode = "scheduled", cron = "0 18 * * FRI", time_zone = "Europe/London" }"#,
        1,
    );
    pointsflow_tests::apply_programs(&t.base, &ProgramFile::parse(&weekly).unwrap(), false).await;
    let armed = t.stack.schedules.armed();
    assert_eq!(armed.len(), 1, "{armed:?}");
    let local = armed[0]
        .closes_at()
        .with_timezone(&chrono_tz::Europe::London);
    assert_eq!(local.format("%a %H:%M").to_string(), "Fri 18:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stack_fires_each_window_at_its_closing_time() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| {
        recipients = scheduled_config(c, true, 2);
        // Every minute: the window closes at the next minute boundary.
        c.programs[0].transfer = serde_json::from_value(serde_json::json!({
            "mode": "scheduled", "cron": "* * * * *", "time_zone": "UTC", "consolidate": true
        }))
        .unwrap();
    })
    .await;
    let (requests, window) = schedule_deals(&t, &recipients, 2, "minutely").await;
    for (id, _, _) in &requests {
        let view = t
            .wait_for_within(id, &["credited"], pointsflow_tests::PATIENCE)
            .await;
        assert!(
            view["window"].as_str().unwrap() >= window.as_str(),
            "{view:#}"
        );
    }
    // A request decided as its window fired goes in the next one: each
    // member is credited their sum, in one or two windows.
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));
    assert!(t.sandbox_credits() <= 4);
    t.check_ledger();
}

/// A partner that credits every reference once and remembers it: a repeat
/// of a reference is answered with the first credit.
#[derive(Default)]
struct Airline {
    credits: std::sync::Mutex<BTreeMap<String, (String, u64)>>,
    calls: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl PartnerConnector for Airline {
    fn idempotent_on_reference(&self) -> bool {
        true
    }
    async fn credit(&self, i: &CreditInstruction) -> CreditOutcome {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.credits
            .lock()
            .unwrap()
            .entry(i.reference.to_string())
            .or_insert((i.member.to_string(), i.points.get()));
        CreditOutcome::Credited {
            transaction: format!("T-{}", i.reference),
        }
    }
    async fn status(&self, r: &PartnerReference, _: Option<Duration>) -> CreditOutcome {
        match self.credits.lock().unwrap().get(r.as_str()) {
            Some(_) => CreditOutcome::Credited {
                transaction: format!("T-{r}"),
            },
            None => CreditOutcome::NotFound,
        }
    }
    async fn validate_member(&self, _: &MemberCheck) -> MemberCheckOutcome {
        MemberCheckOutcome::Valid
    }
    async fn reverse(
        &self,
        _: &pointsflow_core::partner::ReversalInstruction,
    ) -> pointsflow_core::partner::ReversalOutcome {
        pointsflow_core::partner::ReversalOutcome::Refused(pointsflow_core::reason::Reason::new(
            ReasonCode::parse("not_supported"),
            "this test partner does not reverse",
        ))
    }
}

impl Airline {
    fn by_member(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (member, points) in self.credits.lock().unwrap().values() {
            *out.entry(member.clone()).or_default() += points;
        }
        out
    }
}

/// A window store that fails chosen writes, as a crash between two steps
/// would leave things: the `n`th finishing of a credit, or the save of the
/// run's last page.
struct Crashing {
    inner: MemoryWindowStore,
    finish_to_fail: u32,
    finishes: std::sync::atomic::AtomicU32,
    fail_last_page: std::sync::atomic::AtomicBool,
}

fn crashed() -> StoreError {
    StoreError::Unavailable("crashed".into())
}

#[async_trait::async_trait]
impl UnsettledIndex for Crashing {
    async fn unsettled(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Unsettled>, StoreError> {
        self.inner.unsettled(before, limit).await
    }
}

#[async_trait::async_trait]
impl WindowStore for Crashing {
    async fn claim(&self, run: &WindowRun) -> Result<Claim, StoreError> {
        self.inner.claim(run).await
    }
    async fn run(&self, w: &WindowId) -> Result<Option<WindowRun>, StoreError> {
        self.inner.run(w).await
    }
    async fn save_run(&self, run: &WindowRun) -> Result<u64, StoreError> {
        if run.state == RunState::Planned
            && self
                .fail_last_page
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(crashed());
        }
        self.inner.save_run(run).await
    }
    async fn create_credit(&self, c: &WindowCredit) -> Result<CreditCreated, StoreError> {
        self.inner.create_credit(c).await
    }
    async fn credit(&self, id: &CreditId) -> Result<Option<WindowCredit>, StoreError> {
        self.inner.credit(id).await
    }
    async fn save_credit(&self, c: &WindowCredit) -> Result<u64, StoreError> {
        if c.state == CreditState::Planned {
            let n = self
                .finishes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            if n == self.finish_to_fail {
                return Err(crashed());
            }
        }
        self.inner.save_credit(c).await
    }
    async fn settled(&self, w: &WindowId) -> Result<RunCounts, StoreError> {
        self.inner.settled(w).await
    }
}

/// A consolidating rig over `store`, crediting `airline`.
async fn rig(windows: Arc<dyn WindowStore>, airline: Arc<Airline>) -> WindowRig {
    let mut program = pointsflow_local::config::default_config()
        .unwrap()
        .programs
        .remove(0);
    program.transfer = serde_json::from_value(serde_json::json!({
        "mode": "scheduled", "cron": "0 18 * * *", "time_zone": "UTC", "consolidate": true
    }))
    .unwrap();
    let window = WindowId::parse(&format!("{}@2030-01-01T18:00Z", program.id)).unwrap();
    WindowRig::new(program, windows, airline, window)
        .await
        .unwrap()
}

/// Every request credited once, one credit per member for the member's sum,
/// the ledger balanced, and the run's counters exact.
async fn assert_window_exact(
    rig: &WindowRig,
    airline: &Airline,
    owed: &BTreeMap<String, u64>,
    requests: u64,
) {
    let all = rig.store.all().unwrap();
    let stuck: Vec<String> = all
        .iter()
        .filter(|r| r.state() != StatusKind::Credited)
        .map(|r| format!("{} {} {:?}", r.id, r.state(), r.credit))
        .collect();
    assert!(
        stuck.is_empty(),
        "{} not credited: {:?}",
        stuck.len(),
        &stuck[..stuck.len().min(5)]
    );
    assert_eq!(
        airline.by_member(),
        *owed,
        "each member credited their sum once"
    );
    assert_eq!(
        airline.credits.lock().unwrap().len(),
        owed.len(),
        "one credit per member"
    );
    rig.ledger.snapshot().unwrap().check().unwrap();
    let run = rig
        .windows
        .run(&rig.window)
        .await
        .unwrap()
        .unwrap()
        .with_settled(&rig.windows.settled(&rig.window).await.unwrap());
    assert_eq!(run.state, RunState::Planned);
    assert!(run.in_progress.is_empty());
    let members = owed.len() as u64;
    assert_eq!(
        (
            run.counts.requests,
            run.counts.members,
            run.counts.credits,
            run.counts.credited,
            run.counts.credited_requests,
            run.counts.points,
            run.counts.pending()
        ),
        (
            requests,
            members,
            members,
            members,
            requests,
            owed.values().sum(),
            0
        ),
        "the run counts every request and credit once"
    );
    let empty = rig
        .store
        .scheduled(&rig.program.id, None, 10)
        .await
        .unwrap();
    assert!(
        empty.entries.is_empty(),
        "nothing left in the scheduled index"
    );
    assert_eq!(rig.dead_letters.depth(), 0);
}

#[tokio::test]
async fn a_planner_stopped_after_moving_requests_finishes_their_credits_when_resumed() {
    // 500 members with 3 requests each: two pages; the stop comes in the
    // second, after its requests moved into credits not yet finished.
    let airline = Arc::new(Airline::default());
    let store = Arc::new(Crashing {
        inner: MemoryWindowStore::new(),
        finish_to_fail: 400,
        finishes: Default::default(),
        fail_last_page: Default::default(),
    });
    let rig = rig(store.clone(), airline.clone()).await;
    let owed = rig.seed(500, 3).await.unwrap();
    rig.fire().await.unwrap();
    let failures = rig.pump(10_000).await;
    assert!(failures >= 1, "the stop happened");
    assert_window_exact(&rig, &airline, &owed, 1_500).await;
    let run = rig.windows.run(&rig.window).await.unwrap().unwrap();
    assert!(run.planning_runs >= 2, "resumed by another planning run");
}

#[tokio::test]
async fn a_planner_stopped_before_saving_its_last_page_counts_and_sends_it_once() {
    let airline = Arc::new(Airline::default());
    let store = Arc::new(Crashing {
        inner: MemoryWindowStore::new(),
        finish_to_fail: 0,
        finishes: Default::default(),
        fail_last_page: std::sync::atomic::AtomicBool::new(true),
    });
    let rig = rig(store.clone(), airline.clone()).await;
    let owed = rig.seed(40, 4).await.unwrap();
    rig.fire().await.unwrap();
    let failures = rig.pump(10_000).await;
    assert!(failures >= 1, "the stop happened");
    assert_window_exact(&rig, &airline, &owed, 160).await;
}

#[tokio::test]
async fn a_window_delivered_many_times_over_is_planned_and_credited_once() {
    let airline = Arc::new(Airline::default());
    let rig = rig(Arc::new(MemoryWindowStore::new()), airline.clone()).await;
    let owed = rig.seed(25, 2).await.unwrap();
    for _ in 0..3 {
        rig.fire().await.unwrap();
    }
    // And the planning message itself delivered again and again.
    for _ in 0..3 {
        rig.queue
            .send_batch(&[serde_json::json!({"plan": {"window": rig.window}}).to_string()])
            .unwrap();
    }
    rig.pump(10_000).await;
    assert_window_exact(&rig, &airline, &owed, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_credit_to_a_loyalty_commerce_partner_validates_the_member_by_name() {
    let mut recipients = Vec::new();
    let t = spawn_stack(|c| {
        recipients = scheduled_config(c, true, 3);
        for p in &mut c.partners {
            p.protocol = pointsflow_local::config::PartnerProtocol::LoyaltyCommerce;
        }
    })
    .await;
    let (requests, window) = schedule_deals(&t, &recipients, 3, "lcp-window").await;
    fire(&t.stack.dispatch, &window).await;
    t.settle().await;
    all_credited(&t, &requests).await;
    assert_eq!(t.sandbox_credits(), 3, "one order per member");
    let sandbox = t.stack.sandbox.as_ref().unwrap();
    assert_eq!(sandbox.credited_by_member(), expected_by_member(&requests));
    t.check_ledger();
}
