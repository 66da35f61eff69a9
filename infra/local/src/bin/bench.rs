//! `pointsflow-bench`: pushes N points requests through the local stack over
//! HTTP and reports accepted/s, credited/s, the latency from acceptance to
//! credit (p50/p99/max) and the process's peak memory. With `--aws-endpoint`
//! it runs the stack on the AWS adapters and also reports the AWS requests
//! and DynamoDB capacity per points request, and what they cost at list
//! prices (docs/cost.md). See the README's "Benchmark" section.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use pointsflow_core::ledger::AccountId;
use pointsflow_core::ports::{LedgerRead, RequestGet};
use pointsflow_core::program::{PointsRule, TransferMode};
use pointsflow_core::request::{PointsRequest, StatusKind};
use pointsflow_core::values::{IdempotencyKey, Points, RecipientId, RequestId};
use pointsflow_harness::meter::{Meter, Usage};
use pointsflow_local::config::MemberEntry;
use pointsflow_local::{AwsOptions, AwsStack, LocalConfig, Stack, StackOptions};
use pointsflow_sandbox::SandboxPartner;

#[path = "bench/soak.rs"]
mod soak;

#[derive(Debug, Parser)]
#[command(
    name = "pointsflow-bench",
    about = "End-to-end throughput and latency of the local stack"
)]
struct Args {
    /// Requests to push.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests in flight at once from the client.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Distinct enrolled recipients the requests are spread over.
    #[arg(long, default_value_t = 1_000)]
    recipients: u64,
    /// Offered load in requests per second (open loop); 0 pushes as fast as the client can.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Handler invocations in flight per queue.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Run on the AWS adapters against this endpoint (an emulator, e.g.
    /// moto server) and meter every AWS request.
    #[arg(long)]
    aws_endpoint: Option<String>,
    /// Billed Lambda duration assumed per invocation, for the cost estimate.
    #[arg(long, default_value_t = 100)]
    billed_ms: u64,
    /// Instead of the pipeline run: time parsing a Salesforce Outbound
    /// Message of 100 notifications, and intake acknowledging this many
    /// such messages (each answered only once all 100 are stored and queued).
    #[arg(long, default_value_t = 0)]
    outbound_messages: u64,
    /// Instead of the pipeline run: time this many evaluations of a program
    /// with 20 rules (17 conditions, tiers, a minimum and a maximum).
    #[arg(long, default_value_t = 0)]
    rules: u64,
    /// Instead of the pipeline run: time the eligibility handler on this
    /// many batches of 10 stored requests (embedded, or on the AWS adapters
    /// with --aws-endpoint).
    #[arg(long, default_value_t = 0)]
    eligibility_batches: u64,
    /// Instead of the pipeline run: a consolidated scheduled window of this
    /// many members (each with --per-member requests), planned and
    /// dispatched on the embedded adapters against the sandbox partner by
    /// --consumers dispatch invocations at once.
    #[arg(long, default_value_t = 0)]
    window_members: usize,
    /// With --window-members: requests per member.
    #[arg(long, default_value_t = 10)]
    per_member: usize,
    /// With --window-members: once the window is credited, reconcile it
    /// (requests, ledger and the sandbox's statement) and print the time
    /// and memory that took.
    #[arg(long)]
    reconcile: bool,
    /// Instead of the pipeline run: a mixed load (new requests, duplicates,
    /// reused keys, malformed bodies, Outbound Messages and their retries)
    /// at --rate sends per second for this many seconds, then the
    /// invariants, throughput, latency and memory over time.
    #[arg(long, default_value_t = 0)]
    soak: u64,
    /// With the pipeline run: the program is scheduled and consolidated.
    /// The requests are pushed and decided (each is held for the next
    /// window), then the window is fired and dispatched (one partner credit
    /// per member), and the figures cover intake, eligibility and the window.
    #[arg(long)]
    scheduled: bool,
    /// With --soak: seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    sample: u64,
}

/// The running stack, embedded or on the AWS adapters.
enum Running {
    Local(Box<Stack>),
    Aws(Box<AwsStack>, Meter),
}

impl Running {
    fn base_url(&self) -> String {
        match self {
            Running::Local(s) => s.base_url(),
            Running::Aws(s, _) => s.base_url(),
        }
    }

    fn sandbox(&self) -> Option<&SandboxPartner> {
        match self {
            Running::Local(s) => s.sandbox.as_ref(),
            Running::Aws(s, _) => s.sandbox.as_ref(),
        }
    }

    fn store(&self) -> &dyn RequestGet {
        match self {
            Running::Local(s) => s.store.as_ref(),
            Running::Aws(s, _) => s.store.as_ref(),
        }
    }

    fn dispatch(&self) -> &pointsflow_dispatch::Dispatch {
        match self {
            Running::Local(s) => &s.dispatch,
            Running::Aws(s, _) => &s.dispatch,
        }
    }

    fn ledger(&self) -> &dyn LedgerRead {
        match self {
            Running::Local(s) => s.ledger.as_ref(),
            Running::Aws(s, _) => s.ledger.as_ref(),
        }
    }

    async fn shutdown(self) {
        match self {
            Running::Local(s) => s.shutdown().await,
            Running::Aws(s, _) => s.shutdown().await,
        }
    }
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn recipient(i: u64) -> String {
    format!("0055g0000B{i:07}")
}

fn config(args: &Args) -> Result<LocalConfig, String> {
    let mut config = pointsflow_local::config::default_config().map_err(|e| e.to_string())?;
    config.queues.concurrency = args.consumers;
    if args.scheduled && args.aws_endpoint.is_some() {
        // An emulator is slow: planning a window's page of 1,000 requests
        // takes it longer than the 10 s a planner keeps in hand, and a
        // planner cut off reads its page again, which DynamoDB's speed
        // never causes. So every invocation gets Lambda's longest timeout,
        // and the counts are those of a run that is never cut off.
        config.queues.function_timeout_ms = 900_000;
        config.queues.visibility_timeout_ms = 5_400_000;
    }
    let program = config
        .programs
        .first_mut()
        .ok_or("the default config has no program")?;
    program.points = PointsRule::Rate {
        points: Points::new(2).map_err(|e| e.to_string())?,
        per: 100.into(),
    };
    program.monthly_cap_per_recipient = None;
    program.budget = Points::new(1_000_000_000_000).map_err(|e| e.to_string())?;
    program.transfer = if args.scheduled {
        // Once a year, so it never fires by itself during a run: the bench fires it.
        serde_json::from_value(serde_json::json!({
            "mode": "scheduled", "cron": "0 0 1 1 *", "time_zone": "UTC", "consolidate": true
        }))
        .map_err(|e| e.to_string())?
    } else {
        TransferMode::Realtime
    };
    let program_id = program.id.clone();
    config.members = (0..args.recipients)
        .map(|i| {
            Ok(MemberEntry {
                program: program_id.clone(),
                recipient: RecipientId::parse(&recipient(i)).map_err(|e| e.to_string())?,
                member_number: format!("SKY{i:08}"),
                first_name: "Bench".into(),
                last_name: format!("Member{i}"),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(config)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pointsflow-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// List prices, us-east-1, per million (docs/cost.md gives the sources).
const API_PER_M: f64 = 1.00;
const LAMBDA_REQUESTS_PER_M: f64 = 0.20;
const LAMBDA_GB_SECOND_ARM64: f64 = 0.000_013_333_4;
const SQS_PER_M: f64 = 0.40;
const DYNAMODB_WRITE_UNITS_PER_M: f64 = 0.625;
const DYNAMODB_READ_UNITS_PER_M: f64 = 0.125;
/// The functions' memory (template.yaml, Globals).
const LAMBDA_GB: f64 = 0.25;

async fn start(args: &Args, config: LocalConfig) -> Result<Running, String> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let options = StackOptions {
        listen: loopback,
        sandbox_listen: loopback,
    };
    Ok(match &args.aws_endpoint {
        None => Running::Local(Box::new(
            Stack::start(config, options)
                .await
                .map_err(|e| e.to_string())?,
        )),
        Some(endpoint) => {
            let meter = Meter::new();
            let aws = AwsOptions {
                endpoint: Some(endpoint.clone()),
                prefix: pointsflow_harness::emulator::unique_name("bench"),
                meter: Some(meter.clone()),
            };
            let stack = AwsStack::start(config, options, aws)
                .await
                .map_err(|e| e.to_string())?;
            // Creating the table and queues and funding the budget is set-up.
            meter.reset();
            Running::Aws(Box::new(stack), meter)
        }
    })
}

/// Waits until the pipeline is quiet after the last credit: on AWS, until
/// no DynamoDB write has been made for two seconds; embedded, until every
/// request has left the pipeline.
async fn settle(running: &Running, ids: &[RequestId], within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    match running {
        Running::Aws(_, meter) => {
            let mut last = meter.usage().write_units;
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let now = meter.usage().write_units;
                if now == last {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the pipeline did not go quiet within {} s",
                        within.as_secs()
                    ));
                }
                last = now;
            }
        }
        Running::Local(_) => loop {
            let requests = fetch(running, ids).await?;
            if requests.iter().all(|r| r.state().is_terminal()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "requests still in the pipeline after {} s",
                    within.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        },
    }
}

/// Waits until every request is decided and held for its window. On AWS,
/// the pipeline going quiet is not enough (an emulator starved of CPU goes
/// quiet too, with requests still to decide), so each quiet spell is
/// checked by reading the requests through a client of its own, which the
/// meter does not count.
async fn wait_scheduled(
    running: &Running,
    ids: &[RequestId],
    endpoint: Option<&str>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(3_600);
    if let (Running::Aws(stack, _), Some(endpoint)) = (running, endpoint) {
        let sdk = pointsflow_harness::emulator::config_at(endpoint).await;
        let unmetered = pointsflow_aws::DynamoRequestStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &stack.table,
        );
        loop {
            settle(running, ids, Duration::from_secs(3_600)).await?;
            let requests = fetch_from(&unmetered, ids).await?;
            if requests.iter().all(|r| r.state() == StatusKind::Scheduled) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("requests not all scheduled after 3,600 s".into());
            }
        }
    }
    loop {
        let requests = fetch(running, ids).await?;
        if requests.iter().all(|r| r.state() == StatusKind::Scheduled) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("requests not all scheduled after 600 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fetch(running: &Running, ids: &[RequestId]) -> Result<Vec<PointsRequest>, String> {
    fetch_from(running.store(), ids).await
}

async fn fetch_from(
    store: &dyn RequestGet,
    ids: &[RequestId],
) -> Result<Vec<PointsRequest>, String> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(ids)
        .map(|id| async move {
            store
                .get(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("request {id} is missing"))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
}

/// A 100-notification Outbound Message from the demo org; `batch` makes its records distinct.
fn outbound_message(config: &LocalConfig, batch: u64) -> Result<(String, String), String> {
    outbound_message_of(config, batch, 100, 1_000)
}

/// An Outbound Message of `size` Closed Won deals from the demo org, owned
/// by the first `recipients` recipients; `batch` makes its records distinct.
fn outbound_message_of(
    config: &LocalConfig,
    batch: u64,
    size: u64,
    recipients: u64,
) -> Result<(String, String), String> {
    use pointsflow_intake::soap::{Notification, OutboundMessage};
    let source = config
        .sources
        .iter()
        .find(|s| s.id.as_str() == "salesforce")
        .ok_or("the default config has no salesforce source")?;
    let sf = source.salesforce.as_ref().ok_or("no salesforce settings")?;
    let token = sf.tokens.first().ok_or("no token")?.clone();
    let org = sf.org_ids.first().ok_or("no org id")?[..15].to_owned();
    let notifications = (0..size)
        .map(|i| {
            let n = batch * size + i;
            let fields = [
                ("Id", format!("0065g0{n:09}")),
                ("OwnerId", recipient(n % recipients)),
                ("StageName", "Closed Won".to_owned()),
                ("Amount", format!("{}.00", 1_000 + n % 5_000)),
                ("CurrencyIsoCode", "USD".to_owned()),
                ("CloseDate", "2026-11-20".to_owned()),
                ("Name", format!("Bench deal {n}")),
            ];
            Notification {
                id: format!("04l5g0{n:09}"),
                object: "Opportunity".into(),
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Some(v)))
                    .collect(),
            }
        })
        .collect();
    let xml = OutboundMessage {
        organization_id: org,
        action_id: Some("04k5g000000BenchAAA".into()),
        notifications,
    }
    .to_xml();
    Ok((token, xml))
}

/// The reader's worst time over bodies built to make it work hard, at the
/// default body limit and at the largest a source may configure.
fn hostile_parse_times() {
    use pointsflow_intake::soap::{self, hostile};
    let mut worst = (Duration::ZERO, "", 0usize);
    for size in [
        pointsflow_intake::DEFAULT_MAX_BODY_BYTES,
        pointsflow_config::MAX_BODY_BYTES,
    ] {
        for family in hostile::FAMILIES {
            let body = (family.build)(size);
            let mut slowest = Duration::ZERO;
            let mut outcome = String::new();
            for _ in 0..5 {
                let started = Instant::now();
                let parsed = soap::parse(body.as_bytes());
                slowest = slowest.max(started.elapsed());
                outcome = match &parsed {
                    Ok(m) => format!("read, {} notifications", m.notifications.len()),
                    Err(e) => format!("refused: {e}"),
                };
                std::hint::black_box(parsed).ok();
            }
            println!(
                "hostile {:>5} KiB  {:>8.3} ms  {}  ({outcome})",
                body.len() / 1024,
                ms(slowest),
                family.name
            );
            if slowest > worst.0 {
                worst = (slowest, family.name, body.len());
            }
        }
    }
    println!(
        "hostile worst: {:.3} ms for {} KiB ({:.4} ms per KiB): {}",
        ms(worst.0),
        worst.2 / 1024,
        ms(worst.0) / (worst.2 as f64 / 1024.0),
        worst.1
    );
}

/// Credits per second between the 10th and the 90th percentile of the
/// requests' credit times: the rate the pipeline sustained, without the
/// ramp at either end.
fn steady_rate(requests: &[PointsRequest]) -> Option<f64> {
    let mut at: Vec<chrono::DateTime<chrono::Utc>> = requests
        .iter()
        .filter_map(|r| r.entered(StatusKind::Credited))
        .collect();
    at.sort();
    let (low, high) = (at.len() / 10, at.len() * 9 / 10);
    let span = (*at.get(high)? - *at.get(low)?).to_std().ok()?;
    (!span.is_zero()).then(|| (high - low) as f64 / span.as_secs_f64())
}

/// Waits until the sandbox has made `credits` credits, for at most `within`.
pub(crate) async fn wait_credits(
    sandbox: &SandboxPartner,
    credits: u64,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while sandbox.stats().credits < credits {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {credits} credited after {} s",
                sandbox.stats().credits,
                within.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until the sandbox has made `credits` credits and nothing moved for a second.
async fn settle_credits(running: &Running, credits: u64) -> Result<(), String> {
    let sandbox = running.sandbox().ok_or("no sandbox partner")?;
    wait_credits(sandbox, credits, Duration::from_secs(300)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

async fn run_outbound(args: &Args, config: LocalConfig) -> Result<(), String> {
    let (_, sample) = outbound_message(&config, 0)?;
    let rounds = 1_000;
    let mut parse_times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let parsed =
            pointsflow_intake::soap::parse(sample.as_bytes()).map_err(|e| e.to_string())?;
        parse_times.push(started.elapsed());
        std::hint::black_box(parsed);
    }
    parse_times.sort();
    println!(
        "parse 100 notifications ({} KiB): p50 {:.3} ms  p99 {:.3} ms  over {rounds} parses",
        sample.len() / 1024,
        ms(percentile(&parse_times, 50.0)),
        ms(percentile(&parse_times, 99.0))
    );

    hostile_parse_times();

    let running = start(args, config.clone()).await?;
    let client = reqwest::Client::new();
    let mut acks = Vec::new();
    for batch in 0..args.outbound_messages {
        let (token, xml) = outbound_message(&config, batch + 1)?;
        let url = format!(
            "{}/v1/sources/salesforce/events?token={token}",
            running.base_url()
        );
        for attempt in ["first", "retry"] {
            // Measure intake alone: let the pipeline finish the previous
            // message first (on the emulator it competes for the same server).
            let done = if attempt == "first" { batch } else { batch + 1 };
            settle_credits(&running, done * 100).await?;
            let started = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "text/xml; charset=utf-8")
                .body(xml.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.text().await.map_err(|e| e.to_string())?;
            let took = started.elapsed();
            if !status.is_success() || !body.contains("<Ack>true</Ack>") {
                return Err(format!(
                    "message {batch} ({attempt}) not acknowledged: {status} {body}"
                ));
            }
            if attempt == "first" {
                acks.push(took);
            }
            println!(
                "message {batch:>3} {attempt:<5}  acknowledged in {:.1} ms",
                ms(took)
            );
        }
    }
    acks.sort();
    if !acks.is_empty() {
        println!(
            "acknowledged (first delivery, 100 stored and queued): p50 {:.1} ms  max {:.1} ms over {} messages",
            ms(percentile(&acks, 50.0)),
            ms(percentile(&acks, 100.0)),
            acks.len()
        );
    }
    running.shutdown().await;
    Ok(())
}

/// The rules alone: one program of 20 rules, a request that passes them all
/// (so every rule is evaluated), timed in batches of 1,000 evaluations.
fn run_rules(evaluations: u64) -> Result<(), String> {
    use pointsflow_core::program::Program;
    use pointsflow_core::request::{NewRequest, Recipient, SourceEvent};
    use pointsflow_core::values::{EventType, IdempotencyKey, ProgramId, SourceId};
    let mut conditions = String::new();
    for i in 0..15 {
        conditions.push_str(&format!(
            "{{ field = \"attributes.f{i}\", in = [\"a\", \"b\", \"v{i}\"] }},\n"
        ));
    }
    conditions.push_str("{ field = \"amount\", gte = \"1000\", lt = \"10000000\" },\n");
    conditions.push_str("{ field = \"event.type\", equals = \"opportunity.closed_won\" },\n");
    let program: Program = toml::from_str(&format!(
        r#"
id = "sales"
name = "Sales"
currency = "USD"
sources = ["salesforce"]
budget = 1000000
transfer = {{ mode = "realtime" }}
destination = {{ partner = "air", partner_program = "SKY" }}
min_points_per_request = 10
max_points_per_request = 100000
points = {{ rule = "tiers", tiers = [{{ from = "0.01", points = 100 }}, {{ from = "10000", points = 500 }}, {{ from = "50000", points = 2000 }}] }}
conditions = [
{conditions}]
"#
    ))
    .map_err(|e| e.to_string())?;
    program.validate().map_err(|e| e.to_string())?;
    let attributes: serde_json::Map<String, serde_json::Value> = (0..15)
        .map(|i| (format!("f{i}"), serde_json::Value::String(format!("v{i}"))))
        .collect();
    let request = NewRequest {
        source: SourceId::parse("salesforce").map_err(|e| e.problem)?,
        idempotency_key: IdempotencyKey::parse("bench").map_err(|e| e.problem)?,
        program: ProgramId::parse("sales").map_err(|e| e.problem)?,
        recipient: Recipient {
            id: RecipientId::parse("0055g00000DemoAA1").map_err(|e| e.problem)?,
            email: None,
        },
        award: Some(pointsflow_core::request::Award::Amount(
            pointsflow_core::money::Money::parse(
                "12550.00",
                pointsflow_core::money::Currency::parse("USD").map_err(|e| e.problem)?,
            )
            .map_err(|e| e.problem)?,
        )),
        event: SourceEvent {
            kind: EventType::parse("opportunity.closed_won").map_err(|e| e.problem)?,
            id: Some("0065g00000Q4zXyAAB".into()),
            occurred_at: chrono::Utc::now(),
            occurred_at_is_receipt: false,
            attributes,
        },
    }
    .into_request(chrono::Utc::now());
    let rules = program.conditions.len() + 3;
    let batch = 1_000u64;
    let mut per_evaluation = Vec::new();
    for _ in 0..evaluations.div_ceil(batch) {
        let started = Instant::now();
        for _ in 0..batch {
            let outcome = program.evaluate(std::hint::black_box(&request));
            std::hint::black_box(outcome).map_err(|r| r.message)?;
        }
        per_evaluation.push(started.elapsed() / batch as u32);
    }
    per_evaluation.sort();
    println!(
        "rules evaluation ({rules} rules, all passed): p50 {:.2} us  p99 {:.2} us per request over {} evaluations",
        percentile(&per_evaluation, 50.0).as_secs_f64() * 1e6,
        percentile(&per_evaluation, 99.0).as_secs_f64() * 1e6,
        per_evaluation.len() as u64 * batch
    );
    Ok(())
}

/// The eligibility handler alone, per record, on batches of 10 requests
/// stored directly (so nothing else is queued for it meanwhile).
async fn run_eligibility(args: &Args, config: LocalConfig) -> Result<(), String> {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use pointsflow_core::ports::RequestCreate;
    use pointsflow_core::request::{Award, NewRequest, Recipient, SourceEvent};
    use pointsflow_core::values::{EventType, ProgramId, SourceId};
    let source = SourceId::parse("demo").map_err(|e| e.problem)?;
    let running = start(args, config).await?;
    let (store, eligibility): (Arc<dyn RequestCreate>, _) = match &running {
        Running::Local(s) => (s.store.clone(), s.eligibility.clone()),
        Running::Aws(s, _) => (s.store.clone(), s.eligibility.clone()),
    };
    let usd = pointsflow_core::money::Currency::parse("USD").map_err(|e| e.problem)?;
    let mut per_record = Vec::new();
    for batch in 0..args.eligibility_batches {
        let mut event = SqsEvent::default();
        for i in 0..10u64 {
            let n = batch * 10 + i;
            let request = NewRequest {
                source: source.clone(),
                idempotency_key: IdempotencyKey::parse(&format!("elig-{n}"))
                    .map_err(|e| e.problem)?,
                program: ProgramId::parse("sales-incentive").map_err(|e| e.problem)?,
                recipient: Recipient {
                    id: RecipientId::parse(&recipient(n % args.recipients))
                        .map_err(|e| e.problem)?,
                    email: None,
                },
                award: Some(Award::Amount(
                    pointsflow_core::money::Money::parse("12550.00", usd).map_err(|e| e.problem)?,
                )),
                event: SourceEvent {
                    kind: EventType::parse("opportunity.closed_won").map_err(|e| e.problem)?,
                    id: Some(format!("elig-{n}")),
                    occurred_at: chrono::Utc::now(),
                    occurred_at_is_receipt: false,
                    attributes: Default::default(),
                },
            }
            .into_request(chrono::Utc::now());
            store.create(&request).await.map_err(|e| e.to_string())?;
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("m-{n}"));
            message.body = Some(serde_json::json!({ "request_id": request.id }).to_string());
            event.records.push(message);
        }
        let started = Instant::now();
        let response = eligibility
            .handle(lambda_runtime::LambdaEvent::new(event, Default::default()))
            .await
            .map_err(|e| e.to_string())?;
        let took = started.elapsed();
        if !response.batch_item_failures.is_empty() {
            return Err(format!(
                "batch {batch}: {} records failed",
                response.batch_item_failures.len()
            ));
        }
        per_record.push(took / 10);
    }
    per_record.sort();
    println!(
        "eligibility, batches of 10 on the {}: p50 {:.3} ms  p99 {:.3} ms per record over {} batches",
        if args.aws_endpoint.is_some() {
            "AWS adapters"
        } else {
            "embedded adapters"
        },
        ms(percentile(&per_record, 50.0)),
        ms(percentile(&per_record, 99.0)),
        per_record.len()
    );
    running.shutdown().await;
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    if args.rules > 0 {
        return run_rules(args.rules);
    }
    if args.window_members > 0 {
        return run_window(&args).await;
    }
    let config = config(&args)?;
    if args.eligibility_batches > 0 {
        return run_eligibility(&args, config).await;
    }
    if args.outbound_messages > 0 {
        return run_outbound(&args, config).await;
    }
    if args.soak > 0 {
        return soak::run_soak(&args, config).await;
    }
    let source = config.sources.first().ok_or("no source")?.clone();
    let window = match config.programs.first() {
        Some(p) if args.scheduled => Some(
            p.window_after(chrono::Utc::now())?
                .ok_or("the scheduled program has no next window")?,
        ),
        _ => None,
    };
    let program = config.programs.first().ok_or("no program")?.id.clone();
    let running = start(&args, config).await?;
    // Parsed once: the client's cost per request is part of what the bench
    // measures on the same cores.
    let url = reqwest::Url::parse(&format!("{}/v1/points-requests", running.base_url()))
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()
        .map_err(|e| e.to_string())?;

    println!(
        "pushing {} requests at {}, at most {} in flight, over {} recipients, {} consumers per queue, on the {}",
        args.requests,
        if args.rate == 0 {
            "full speed".to_owned()
        } else {
            format!("{}/s", args.rate)
        },
        args.concurrency,
        args.recipients,
        args.consumers,
        match &args.aws_endpoint {
            Some(e) => format!("AWS adapters at {e}"),
            None => "embedded adapters".to_owned(),
        }
    );
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.concurrency {
        let (client, url, api_key, next, refused) = (
            client.clone(),
            url.clone(),
            source
                .bearer_keys()
                .first()
                .map(|k| k.to_string())
                .unwrap_or_default(),
            next.clone(),
            refused.clone(),
        );
        let (requests, recipients, rate) = (args.requests, args.recipients, args.rate);
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = format!(
                    r#"{{"program":"sales-incentive","recipient":{{"id":"{}"}},"amount":{{"value":"{}.00","currency":"USD"}},"event":{{"type":"opportunity.closed_won","id":"bench-{i}","occurred_at":"2026-11-27T16:00:00Z"}}}}"#,
                    recipient(i % recipients),
                    1_000 + i % 5_000
                );
                let sent = client
                    .post(url.clone())
                    .bearer_auth(&api_key)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("bench-{i}"))
                    .body(body)
                    .send()
                    .await;
                if !matches!(sent, Ok(ref r) if r.status() == 202) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for c in clients {
        c.await.map_err(|e| e.to_string())?;
    }
    let accepted_in = started.elapsed();
    let refused = refused.load(Ordering::Relaxed);
    let expected = args.requests - refused;

    let sandbox = running.sandbox().ok_or("no sandbox partner")?;
    let ids = (0..args.requests)
        .map(|i| {
            IdempotencyKey::parse(&format!("bench-{i}"))
                .map(|key| RequestId::derive(&source.id, &key))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A consolidated window makes one partner credit per member.
    let mut credits_expected = expected;
    let mut window_took = None;
    if let Some(window) = &window {
        wait_scheduled(&running, &ids, args.aws_endpoint.as_deref()).await?;
        let fired = Instant::now();
        running
            .dispatch()
            .window_closed(&pointsflow_dispatch::window::WindowClosed {
                program: program.clone(),
                scheduled_time: window.closes_at,
            })
            .await
            .map_err(|e| e.to_string())?;
        credits_expected = expected.min(args.recipients);
        wait_credits(sandbox, credits_expected, Duration::from_secs(3_600)).await?;
        window_took = Some(fired.elapsed());
    }
    wait_credits(sandbox, credits_expected, Duration::from_secs(600)).await?;
    let credited_in = started.elapsed();
    let peak = peak_rss_mib();
    settle(&running, &ids, Duration::from_secs(60)).await?;
    let usage = match &running {
        Running::Aws(_, meter) => Some((meter.usage(), meter.hottest_of("ACCT#budget#"))),
        Running::Local(_) => None,
    };

    let requests = fetch(&running, &ids).await?;
    let first_received = requests.iter().map(|r| r.received_at).min();
    let mut timed: Vec<(Duration, chrono::DateTime<chrono::Utc>)> = requests
        .iter()
        .filter(|r| r.state() == StatusKind::Credited)
        .filter_map(|r| {
            let credited = r.entered(StatusKind::Credited)?;
            Some(((credited - r.received_at).to_std().ok()?, r.received_at))
        })
        .collect();
    timed.sort();
    let latencies: Vec<Duration> = timed.iter().map(|(d, _)| *d).collect();
    // Where in the run the slowest 0.1% were accepted, to tell start-up from steady state.
    let slow_at: Vec<f64> = timed
        .iter()
        .rev()
        .take((timed.len() / 1000).max(1))
        .filter_map(|(_, at)| Some((*at - first_received?).to_std().ok()?.as_secs_f64()))
        .collect();
    // The budget's posted debits are exactly the points of the credited requests.
    let credited_points: u64 = requests
        .iter()
        .filter(|r| r.state() == StatusKind::Credited)
        .filter_map(|r| r.points.map(Points::get))
        .sum();
    let budget = running
        .ledger()
        .balance(&AccountId::budget(&program))
        .await
        .map_err(|e| e.to_string())?;
    if budget.debits_posted != credited_points || budget.debits_pending != 0 {
        return Err(format!(
            "the budget does not match the credits: {budget:?}, credited {credited_points} points"
        ));
    }
    if let Running::Local(stack) = &running {
        let snapshot = stack.ledger.snapshot().map_err(|e| e.to_string())?;
        snapshot.check().map_err(|e| e.to_string())?;
    }
    let stats = sandbox.stats();

    println!();
    println!("requests          {}", args.requests);
    println!("refused           {refused}");
    println!(
        "credited          {} (sandbox credits {}, attempts {})",
        latencies.len(),
        stats.credits,
        stats.attempts
    );
    println!(
        "accepted/s        {:.0}",
        expected as f64 / accepted_in.as_secs_f64()
    );
    println!(
        "credited/s        {:.0}",
        expected as f64 / credited_in.as_secs_f64()
    );
    if window_took.is_none()
        && let Some(rate) = steady_rate(&requests)
    {
        // From the first send to the last credit, the figure above cannot
        // pass the offered rate and counts the last request's latency; this
        // one is the rate the credits kept in the middle of the run.
        println!(
            "credited/s steady {rate:.0} (between the 10th and the 90th percentile of the credit times)"
        );
    }
    if let Some(took) = window_took {
        println!(
            "window            {credits_expected} partner credits for {} requests, fired to credited in {:.1} s",
            latencies.len(),
            took.as_secs_f64()
        );
    }
    println!(
        "accept->credit    p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 100.0))
    );
    if let (Some(lo), Some(hi)) = (
        slow_at.iter().copied().reduce(f64::min),
        slow_at.iter().copied().reduce(f64::max),
    ) {
        println!("slowest 0.1%      accepted {lo:.1} s to {hi:.1} s into the run");
    }
    match peak {
        Some(mib) => {
            println!("peak memory       {mib:.0} MiB (VmHWM of this process: stack and client)")
        }
        None => println!("peak memory       unavailable (no /proc/self/status)"),
    }
    println!("ledger            budget debits posted = credited points ({credited_points})");
    if let Some((usage, budget_shard)) = usage {
        print_usage(&usage, budget_shard.as_ref(), expected, args.billed_ms);
    }
    let credits = window.as_ref().map(|w| {
        (
            pointsflow_core::window::WindowId::new(&program, w.closes_at),
            credits_expected,
        )
    });
    print_events(&running, &requests, credits, &args).await?;
    running.shutdown().await;
    Ok(())
}

/// EventBridge's price per million custom events (each up to 64 KB) and
/// the archive's per GB processed.
const EVENTS_PER_M: f64 = 1.00;
const ARCHIVE_PER_GB: f64 = 0.10;
/// The events function's batch: up to 100 stream records, or what one
/// second brought (the template's `BatchSize`, `MaximumBatchingWindowInSeconds`).
const STREAM_BATCH: f64 = 100.0;

/// The events the requests made (each request's whole history, as the
/// events function makes them from its writes) and, for a scheduled run,
/// the window's credits (`credits`: the window, and how many credits it
/// made), and their price: one `PutEvents` entry per event (64 KB chunks;
/// an event is under 1 KB), the archive, and the events function's
/// invocations at the offered rate (a stream read by a Lambda trigger is
/// free). On the local stack, the events its embedded bus took must be
/// exactly these.
async fn print_events(
    running: &Running,
    requests: &[PointsRequest],
    credits: Option<(pointsflow_core::window::WindowId, u64)>,
    args: &Args,
) -> Result<(), String> {
    use pointsflow_core::events::{MemberNumbers, credit_events, request_events};
    let n = requests.len().max(1) as f64;
    let mut events: Vec<_> = requests
        .iter()
        .flat_map(|r| request_events(None, r, MemberNumbers::Masked))
        .collect();
    let request_events = events.len();
    // The window's credits, planned then credited: read from the local
    // stack's store; on the AWS adapters, counted (two events a credit).
    let mut credit_writes = 0;
    let mut uncounted = 0;
    if let Some((window, made)) = &credits {
        match running {
            Running::Local(stack) => {
                for credit in stack.windows.credits_of(window) {
                    credit_writes += credit.version + 1;
                    events.extend(credit_events(&credit, MemberNumbers::Masked));
                }
            }
            Running::Aws(..) => uncounted = 2 * made,
        }
    }
    // An entry's size: its detail, and about 200 bytes of source,
    // detail-type, time and bus name.
    let sizes: Vec<u64> = events
        .iter()
        .map(|e| e.detail_json().len() as u64 + 200)
        .collect();
    let chunks: u64 = sizes.iter().map(|b| b.div_ceil(64 * 1024)).sum();
    let bytes: u64 = sizes.iter().sum();
    // Each write of a request is one stream record, and each of a credit.
    let records: u64 = requests.iter().map(|r| r.version + 1).sum::<u64>() + credit_writes;
    if let Running::Local(stack) = running {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stack.stream.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let taken = stack.bus.taken();
        if taken != events.len() as u64 {
            return Err(format!(
                "the local bus took {taken} events; the requests' histories make {}",
                events.len()
            ));
        }
    }
    let per_second = (args.rate as f64 * records as f64 / n).max(1.0);
    let invocations = (per_second / STREAM_BATCH).ceil().max(1.0) / per_second * records as f64 / n;
    let put = EVENTS_PER_M * chunks as f64 / n;
    let archive = ARCHIVE_PER_GB * bytes as f64 / n / 1e9 * 1e6;
    let lambda = invocations
        * (LAMBDA_REQUESTS_PER_M
            + args.billed_ms as f64 / 1_000.0 * LAMBDA_GB * LAMBDA_GB_SECOND_ARM64 * 1e6);
    println!();
    println!(
        "events per points request (over {} requests):",
        requests.len()
    );
    println!("  events                    {:.3}", events.len() as f64 / n);
    if credits.is_some() {
        println!(
            "    of which window credits' {:.3}",
            (events.len() - request_events) as f64 / n
        );
    }
    if uncounted > 0 {
        println!(
            "    and not counted here: the window credits' {uncounted} events (two a credit; their items are not read back from the AWS adapters)"
        );
    }
    println!("  PutEvents 64 KB chunks    {:.3}", chunks as f64 / n);
    println!("  stream records            {:.3}", records as f64 / n);
    println!(
        "  events invocations        {invocations:.3} (batches of up to 100 records or 1 s at {} requests/s)",
        args.rate
    );
    println!("list price per million points requests, events on their own line:");
    println!("  EventBridge PutEvents     ${put:.2}");
    println!("  archive                   ${archive:.2}");
    println!(
        "  events function           ${lambda:.2} ({} ms billed per invocation)",
        args.billed_ms
    );
    println!("  events total              ${:.2}", put + archive + lambda);
    Ok(())
}

/// The AWS requests and capacity per points request, and their list price.
fn print_usage(usage: &Usage, budget_shard: Option<&(String, u64)>, requests: u64, billed_ms: u64) {
    let n = requests.max(1) as f64;
    println!();
    println!("AWS requests per points request (over {requests} requests):");
    for ((service, operation), calls) in &usage.calls {
        println!(
            "  {service:<9} {operation:<22} {calls:>7}  {:>6.3}",
            *calls as f64 / n
        );
    }
    let sqs = usage.service_calls("sqs") as f64 / n;
    let table_write_units = usage.write_units as f64 / n;
    let index_write_units = usage.index_write_units as f64 / n;
    let write_units = usage.all_write_units() as f64 / n;
    let read_units = usage.read_units / n;
    // Lambda: one intake invocation per request, and one per SQS batch
    // (each batch that processed messages deletes them in one call).
    let batches = usage
        .calls
        .get(&("sqs".to_owned(), "DeleteMessageBatch".to_owned()))
        .copied()
        .unwrap_or(0) as f64;
    let invocations = 1.0 + batches / n;
    println!("  SQS requests              {sqs:.3}");
    println!(
        "  DynamoDB write units      {write_units:.3} (table {table_write_units:.3}, indexes {index_write_units:.3})"
    );
    println!("  DynamoDB read units       {read_units:.3}");
    println!("  largest item written      {} bytes", usage.largest_item);
    // DynamoDB gives one item, or one partition key value, at most 1,000
    // write units a second.
    for (label, hot) in [
        ("hottest item             ", usage.hottest.as_ref()),
        ("hottest budget shard     ", budget_shard),
    ] {
        let Some((what, units)) = hot else { continue };
        let per_request = *units as f64 / n;
        println!(
            "  {label} {what}: {per_request:.3} write units per request, \
             {:.0} per second per 1,000 requests per second; ceiling {:.0} requests per second",
            per_request * 1_000.0,
            1_000.0 / per_request
        );
    }
    if usage.unmodelled_updates > 0 {
        println!(
            "  NOTE: {} updates named an indexed attribute; their index writes are not counted",
            usage.unmodelled_updates
        );
    }
    println!("  Lambda invocations        {invocations:.3}");

    let api = API_PER_M;
    let lambda_requests = LAMBDA_REQUESTS_PER_M * invocations;
    let lambda_duration =
        invocations * billed_ms as f64 / 1_000.0 * LAMBDA_GB * LAMBDA_GB_SECOND_ARM64 * 1e6;
    let queues = SQS_PER_M * sqs;
    let tables = DYNAMODB_WRITE_UNITS_PER_M * write_units + DYNAMODB_READ_UNITS_PER_M * read_units;
    println!();
    println!("list price per million points requests (us-east-1):");
    println!("  API Gateway HTTP API      ${api:.2}");
    println!("  Lambda requests           ${lambda_requests:.2}");
    println!(
        "  Lambda duration           ${lambda_duration:.2} ({billed_ms} ms billed per invocation, arm64, {} MB)",
        (LAMBDA_GB * 1024.0) as u64
    );
    println!("  SQS                       ${queues:.2}");
    println!("  DynamoDB on demand        ${tables:.2}");
    println!(
        "  total                     ${:.2}",
        api + lambda_requests + lambda_duration + queues + tables
    );
}

/// A consolidated window on the embedded adapters against the sandbox.
async fn run_window(args: &Args) -> Result<(), String> {
    use pointsflow_core::ports::WindowStore;
    use pointsflow_core::window::WindowId;
    use pointsflow_local::rig::{WindowRig, member_number};
    use pointsflow_partners::{RestConnector, RestConnectorConfig};
    use pointsflow_sandbox::{SandboxBehaviour, SandboxConfig, SandboxMember};
    let members = args.window_members;
    let requests = members * args.per_member;
    let mut program = pointsflow_local::config::default_config()
        .map_err(|e| e.to_string())?
        .programs
        .remove(0);
    program.transfer = serde_json::from_value(serde_json::json!({
        "mode": "scheduled", "cron": "0 18 * * *", "time_zone": "UTC", "consolidate": true
    }))
    .map_err(|e| e.to_string())?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    // The sandbox outlives the dispatch mapping: reconciliation reads its statement.
    let sandbox_shutdown = tokio_util::sync::CancellationToken::new();
    let stop = sandbox_shutdown.clone();
    let sandbox = SandboxPartner::start(
        SandboxConfig {
            api_key: "bench".into(),
            members: (0..members)
                .map(|i| SandboxMember {
                    member_number: member_number(i),
                    first_name: "Bench".into(),
                    last_name: format!("Member{i}"),
                })
                .collect(),
            slow_response: Duration::from_secs(1),
            behaviour: SandboxBehaviour::default(),
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Box::pin(async move { stop.cancelled().await }),
    )
    .await
    .map_err(|e| e.to_string())?;
    let connector = RestConnector::new(RestConnectorConfig {
        base_url: sandbox.base_url(),
        api_key: "bench".into(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        reach: pointsflow_partners::Reach::Local,
    })
    .map_err(|e| e.to_string())?;
    let window = WindowId::parse(&format!("{}@2030-01-01T18:00Z", program.id))?;
    let windows = Arc::new(pointsflow_memory::MemoryWindowStore::new());
    let rig = WindowRig::new(
        program,
        windows.clone(),
        Arc::new(connector),
        window.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "window of {requests} requests from {members} members, consolidated, {} dispatch invocations at once, embedded adapters, sandbox partner (no added latency)",
        args.consumers
    );
    let seeding = Instant::now();
    let owed = rig.seed(members, args.per_member).await?;
    println!(
        "seeded            {requests} scheduled requests in {:.1} s (set-up, not timed below; {:.0} MiB)",
        seeding.elapsed().as_secs_f64(),
        peak_rss_mib().unwrap_or(0.0)
    );
    let mapping = rig.mapping(args.consumers, shutdown.clone());
    let started = Instant::now();
    rig.fire().await?;
    let mut planned_in = None;
    let done = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let run = windows
            .run(&window)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the window has no run")?;
        if planned_in.is_none() && run.state == pointsflow_core::window::RunState::Planned {
            planned_in = Some(started.elapsed());
        }
        let settled = windows.settled(&window).await.map_err(|e| e.to_string())?;
        let run = run.with_settled(&settled);
        if planned_in.is_some() && run.counts.pending() == 0 && rig.queue.depth() == 0 {
            break run;
        }
        if started.elapsed() > Duration::from_secs(1_800) {
            return Err("the window did not finish within 30 minutes".into());
        }
    };
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = mapping.await;
    let stats = sandbox.stats();
    let credited = sandbox.credited_by_member();
    if credited != owed {
        return Err("the partner's credits per member differ from what was owed".into());
    }
    rig.ledger
        .snapshot()
        .map_err(|e| e.to_string())?
        .check()
        .map_err(|e| e.to_string())?;
    println!(
        "planned           {} requests from {} members into {} credits in {:.1} s",
        done.counts.requests,
        done.counts.members,
        done.counts.credits,
        planned_in.unwrap_or_default().as_secs_f64()
    );
    println!(
        "partner calls     {} ({} credits, {} points; each member credited their sum once)",
        stats.attempts, stats.credits, stats.points
    );
    println!(
        "end to end        {:.1} s from the schedule firing to the last credit settled ({:.0} credits/s, {:.0} requests/s)",
        elapsed.as_secs_f64(),
        done.counts.credits as f64 / elapsed.as_secs_f64(),
        done.counts.requests as f64 / elapsed.as_secs_f64()
    );
    match peak_rss_mib() {
        Some(mib) => println!(
            "peak memory       {mib:.0} MiB (VmHWM of this process: the requests, ledger and sandbox included)"
        ),
        None => println!("peak memory       unavailable (no /proc/self/status)"),
    }
    if args.reconcile {
        reconcile_window(&rig, &window, done.counts.requests).await?;
    }
    sandbox_shutdown.cancel();
    sandbox.stopped().await;
    Ok(())
}

/// The resident memory now, in MiB.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Reconciles the benchmark's window, timing it and measuring the memory
/// it takes above what the stack already holds (the peak is reset first:
/// `/proc/self/clear_refs`).
async fn reconcile_window(
    rig: &pointsflow_local::rig::WindowRig,
    window: &pointsflow_core::window::WindowId,
    requests: u64,
) -> Result<(), String> {
    let operations = rig.operations().await.map_err(|e| e.to_string())?;
    let before = rss_mib().unwrap_or(0.0);
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let answer = operations
        .invoke(serde_json::json!({
            "operator": "bench", "command": "reconcile", "window": window.to_string()
        }))
        .await;
    let elapsed = started.elapsed();
    let result = answer
        .result
        .ok_or_else(|| format!("the reconciliation was refused: {:?}", answer.error))?;
    let mismatches = result["mismatch_count"].as_u64().unwrap_or(u64::MAX);
    println!(
        "reconciled        {requests} requests, {} partner credits, {} mismatches in {:.1} s",
        result["partner"]["credits"],
        mismatches,
        elapsed.as_secs_f64()
    );
    match (reset, peak_rss_mib()) {
        (true, Some(peak)) => println!(
            "reconcile memory  {:.0} MiB above the {before:.0} MiB the stack held (peak {peak:.0} MiB while reconciling)",
            (peak - before).max(0.0)
        ),
        _ => println!("reconcile memory  unavailable (no /proc/self/clear_refs)"),
    }
    if mismatches != 0 {
        return Err(format!(
            "a clean window reconciled with {mismatches} mismatches"
        ));
    }
    Ok(())
}
