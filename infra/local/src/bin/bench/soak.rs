//! `--soak SECS`: a mixed load on the running stack for a fixed time, then
//! the invariants, the throughput, the latency percentiles and the memory
//! over time.
//!
//! Every `--rate`th of a second one of: a new canonical request (70%), the
//! same request sent again (10%: answered with the original, `202`), its
//! key reused with another amount (5%: `409`), a malformed body (5%:
//! `400`/`422`), a Salesforce Outbound Message of 10 deals (5%) and
//! Salesforce's retry of it (5%), both acknowledged. Any other answer is
//! counted as unexpected and fails the run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pointsflow_core::ledger::invariants;
use pointsflow_core::values::{MemberNumber, PartnerId};

use super::*;

/// What one send was, and what it must be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    New,
    Duplicate,
    ReusedKey,
    Malformed,
    OutboundMessage,
    SalesforceRetry,
}

impl Kind {
    fn of(i: u64) -> Self {
        match i % 20 {
            0..=13 => Kind::New,
            14 | 15 if i >= 1_000 => Kind::Duplicate,
            16 if i >= 1_000 => Kind::ReusedKey,
            17 => Kind::Malformed,
            18 => Kind::OutboundMessage,
            19 => Kind::SalesforceRetry,
            _ => Kind::New,
        }
    }

    fn expected(self, status: u16) -> bool {
        match self {
            Kind::New | Kind::Duplicate => status == 202,
            Kind::ReusedKey => status == 409,
            Kind::Malformed => status == 400 || status == 422,
            Kind::OutboundMessage | Kind::SalesforceRetry => status == 200,
        }
    }
}

/// Notifications per Outbound Message in the soak.
const NOTIFICATIONS: u64 = 10;

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    sent: BTreeMap<Kind, u64>,
    unexpected: Vec<String>,
}

fn body(i: u64, recipients: u64, amount: u64) -> String {
    format!(
        r#"{{"program":"sales-incentive","recipient":{{"id":"{}"}},"amount":{{"value":"{amount}.00","currency":"USD"}},"event":{{"type":"opportunity.closed_won","id":"soak-{i}","occurred_at":"2026-11-27T16:00:00Z"}}}}"#,
        recipient(i % recipients)
    )
}

/// The earlier `New` send a duplicate or a reused key refers to: far
/// enough back that it has been answered.
fn earlier_new(i: u64) -> u64 {
    let j = i - 1_000;
    j - (j % 20) + (j % 14)
}

pub(crate) async fn run_soak(args: &Args, config: LocalConfig) -> Result<(), String> {
    let source = config.sources.first().ok_or("no source")?.clone();
    let api_key = source
        .bearer_keys()
        .first()
        .map(|k| k.to_string())
        .ok_or("the first source has no key")?;
    let program = config.programs.first().ok_or("no program")?.id.clone();
    // Every Outbound Message of the run, made before it starts.
    let messages = (0..(args.soak * args.rate.max(1)).div_ceil(20))
        .map(|m| outbound_message_of(&config, m, NOTIFICATIONS, args.recipients))
        .collect::<Result<Vec<_>, _>>()?;
    let messages = Arc::new(messages);
    let running = start(args, config).await?;
    let base = running.base_url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .build()
        .map_err(|e| e.to_string())?;
    let secs = args.soak;
    let rate = args.rate.max(1);
    println!(
        "soak: {secs} s at {rate} sends/s (70% new, 10% duplicates, 5% reused keys, 5% malformed, 10% Outbound Messages of {NOTIFICATIONS} and their retries), {} in flight, on the {}",
        args.concurrency,
        match &args.aws_endpoint {
            Some(e) => format!("AWS adapters at {e}"),
            None => "embedded adapters".to_owned(),
        }
    );

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = started + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, api_key, messages, next, tally) = (
            client.clone(),
            base.clone(),
            api_key.clone(),
            messages.clone(),
            next.clone(),
            tally.clone(),
        );
        let recipients = args.recipients;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                if due >= stop {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let kind = Kind::of(i);
                let request = match kind {
                    Kind::New | Kind::Duplicate | Kind::ReusedKey | Kind::Malformed => {
                        let (key, text) = match kind {
                            Kind::New => (i, body(i, recipients, 1_000 + i % 5_000)),
                            Kind::Duplicate => {
                                let j = earlier_new(i);
                                (j, body(j, recipients, 1_000 + j % 5_000))
                            }
                            Kind::ReusedKey => {
                                let j = earlier_new(i);
                                (j, body(j, recipients, 2 + j % 5_000))
                            }
                            _ => (i, body(i, recipients, 1_000).replace("\"USD\"", "\"usd\"")),
                        };
                        client
                            .post(format!("{base}/v1/points-requests"))
                            .bearer_auth(&api_key)
                            .header("content-type", "application/json")
                            .header("idempotency-key", format!("soak-{key}"))
                            .body(text)
                    }
                    Kind::OutboundMessage | Kind::SalesforceRetry => {
                        let message = if kind == Kind::OutboundMessage {
                            i
                        } else {
                            i - 1
                        };
                        let Some((token, xml)) = messages.get((message / 20) as usize) else {
                            break;
                        };
                        client
                            .post(format!("{base}/v1/sources/salesforce/events?token={token}"))
                            .header("content-type", "text/xml; charset=utf-8")
                            .body(xml.clone())
                    }
                };
                let sent_at = Instant::now();
                let answer = request.send().await;
                let took = sent_at.elapsed();
                let mut t = match tally.lock() {
                    Ok(t) => t,
                    Err(p) => p.into_inner(),
                };
                *t.sent.entry(kind).or_default() += 1;
                t.latencies.push(took);
                match answer {
                    Ok(r) if kind.expected(r.status().as_u16()) => {}
                    Ok(r) => {
                        let status = r.status();
                        t.unexpected
                            .push(format!("send {i} ({kind:?}) answered {status}"));
                    }
                    Err(e) => t.unexpected.push(format!("send {i} ({kind:?}): {e}")),
                }
            }
        }));
    }

    // Memory and progress every --sample seconds while the load runs.
    let sandbox = running.sandbox().ok_or("no sandbox partner")?;
    let mut samples: Vec<(f64, f64, u64, u64)> = Vec::new();
    let sample = Duration::from_secs(args.sample.max(1));
    println!("\n  time   memory (VmRSS)   sends   credited");
    loop {
        let elapsed = started.elapsed();
        let sends = next.load(Ordering::Relaxed).min(secs * rate);
        let credited = sandbox.stats().credits;
        let rss = rss_mib().unwrap_or(0.0);
        println!(
            "{:>5.0} s   {rss:>8.1} MiB   {sends:>7}   {credited:>8}",
            elapsed.as_secs_f64()
        );
        samples.push((elapsed.as_secs_f64(), rss, sends, credited));
        if elapsed >= Duration::from_secs(secs) {
            break;
        }
        tokio::time::sleep(
            sample
                .min(Duration::from_secs(secs).saturating_sub(elapsed))
                .max(Duration::from_millis(100)),
        )
        .await;
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())?;
    }
    let load_took = started.elapsed();

    // Everything accepted is credited: the new requests and each message's deals.
    let tally = match Arc::try_unwrap(tally) {
        Ok(m) => m.into_inner().map_err(|e| e.to_string())?,
        Err(_) => return Err("the load is still running".into()),
    };
    let count = |k: Kind| tally.sent.get(&k).copied().unwrap_or(0);
    let expected = count(Kind::New) + count(Kind::OutboundMessage) * NOTIFICATIONS;
    super::wait_credits(sandbox, expected, Duration::from_secs(600)).await?;
    let drained = started.elapsed();
    // Let stragglers (a late duplicate's handling) finish, then check.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = sandbox.stats();
    if stats.credits != expected {
        return Err(format!(
            "the partner made {} credits for {expected} requests: some credited twice",
            stats.credits
        ));
    }
    // The budget paid exactly what the partner credited; on the embedded
    // adapters, whose ledger can be read whole, also member by member (a
    // member's balance is the sum of its entries).
    let credited: BTreeMap<MemberNumber, u64> = sandbox
        .credited_by_member()
        .into_iter()
        .map(|(m, n)| MemberNumber::parse(&m).map(|m| (m, n)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let total: u64 = credited.values().sum();
    let budget = running
        .ledger()
        .balance(&AccountId::budget(&program))
        .await
        .map_err(|e| e.to_string())?;
    if budget.debits_posted != total || budget.debits_pending != 0 {
        return Err(format!(
            "the budget paid {budget:?}, the partner credited {total}"
        ));
    }
    let per_member = if let Running::Local(stack) = &running {
        let snapshot = stack.ledger.snapshot().map_err(|e| e.to_string())?;
        snapshot.check().map_err(|e| e.to_string())?;
        let partner = PartnerId::parse("sandbox-air").map_err(|e| e.to_string())?;
        invariants::check_partner_matches(&snapshot.entries, &partner, &credited)
            .map_err(|e| e.to_string())?;
        "each member's credits at the partner = the ledger's posted credits; "
    } else {
        ""
    };

    let mut latencies = tally.latencies;
    latencies.sort();
    let sends: u64 = tally.sent.values().sum();
    println!();
    println!(
        "sends             {sends} in {:.0} s ({:.0}/s): {:?}",
        load_took.as_secs_f64(),
        sends as f64 / load_took.as_secs_f64(),
        tally.sent
    );
    println!(
        "answered in       p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 99.9)),
        ms(percentile(&latencies, 100.0))
    );
    println!(
        "credited          {} ({:.0}/s; the last {:.1} s after the load stopped)",
        stats.credits,
        stats.credits as f64 / drained.as_secs_f64(),
        (drained - load_took).as_secs_f64()
    );
    println!(
        "invariants        {per_member}budget paid = {total} points; no request credited twice"
    );
    // Memory: the growth per minute over the second half of the run, and
    // in all, against what was stored meanwhile.
    let half: Vec<&(f64, f64, u64, u64)> = samples
        .iter()
        .filter(|s| s.0 >= secs as f64 / 2.0)
        .collect();
    if let (Some(first), Some(last)) = (half.first(), half.last())
        && last.0 > first.0
    {
        let per_min = (last.1 - first.1) / (last.0 - first.0) * 60.0;
        let stored = (last.2 - first.2).max(1) as f64;
        println!(
            "memory            {:.1} MiB at half time, {:.1} MiB at the end: {per_min:+.2} MiB/min ({:.0} bytes per send stored meanwhile)",
            first.1,
            last.1,
            (last.1 - first.1) * 1024.0 * 1024.0 / stored
        );
    }
    if let Some(peak) = peak_rss_mib() {
        println!("peak memory       {peak:.0} MiB (VmHWM)");
    }
    if !tally.unexpected.is_empty() {
        return Err(format!(
            "{} unexpected answers, e.g. {:?}",
            tally.unexpected.len(),
            &tally.unexpected[..tally.unexpected.len().min(5)]
        ));
    }
    running.shutdown().await;
    Ok(())
}
