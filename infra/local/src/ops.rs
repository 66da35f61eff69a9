//! `pointsflow ops`: the operations function's commands from a terminal,
//! against the local stack (`POST /local/operations` with an operator's
//! key) or a deployed stack (the function `{stack}-operations`, invoked
//! with the AWS credentials of the shell).

use serde_json::{Value, json};

/// Where the operations function runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// The local stack: its base URL and an operator's key (which names
    /// the operator).
    Local {
        api: String,
        key: String,
        client: reqwest::Client,
    },
    /// A deployed stack's function, run as `operator`.
    Deployed {
        function: String,
        operator: String,
        lambda: aws_sdk_lambda::Client,
    },
}

impl Target {
    pub fn local(api: &str, key: &str) -> Self {
        Target::Local {
            api: api.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// The operations function of the stack `stack`, with the shell's
    /// credentials and region (and `endpoint`, for an emulator).
    pub async fn deployed(stack: &str, operator: &str, endpoint: Option<&str>) -> Self {
        Self::deployed_with(&pointsflow_aws::sdk_config(endpoint).await, stack, operator)
    }

    /// [`Self::deployed`] with a given SDK configuration.
    pub fn deployed_with(sdk: &aws_config::SdkConfig, stack: &str, operator: &str) -> Self {
        Target::Deployed {
            function: format!("{stack}-operations"),
            operator: operator.to_owned(),
            lambda: aws_sdk_lambda::Client::new(sdk),
        }
    }

    /// Runs one command (`{"command": ..., ...}`) and returns the function's
    /// answer (`{"ok": ..., "result" | "error": ...}`).
    pub async fn invoke(&self, command: Value) -> Result<Value, String> {
        match self {
            Target::Local { api, key, client } => {
                let response = client
                    .post(format!("{api}/local/operations"))
                    .bearer_auth(key)
                    .json(&command)
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach {api}: {e}"))?;
                let status = response.status();
                let answer: Value = response
                    .json()
                    .await
                    .map_err(|e| format!("{api} answered {status} without JSON: {e}"))?;
                Ok(answer)
            }
            Target::Deployed {
                function,
                operator,
                lambda,
            } => {
                let mut command = command;
                if let Some(fields) = command.as_object_mut() {
                    fields.insert("operator".into(), operator.as_str().into());
                }
                let payload = serde_json::to_vec(&command).map_err(|e| e.to_string())?;
                let out = lambda
                    .invoke()
                    .function_name(function)
                    .payload(aws_sdk_lambda::primitives::Blob::new(payload))
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "invoking {function}: {}",
                            aws_sdk_lambda::error::DisplayErrorContext(e)
                        )
                    })?;
                let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
                if let Some(error) = out.function_error() {
                    return Err(format!(
                        "{function} failed ({error}): {}",
                        String::from_utf8_lossy(body)
                    ));
                }
                serde_json::from_slice(body).map_err(|e| format!("{function} answered: {e}"))
            }
        }
    }
}

/// A `[#####     ] done/total` line on stderr.
pub fn progress_bar(done: u64, total: u64) {
    let width = 30u64;
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    eprint!(
        "\r[{}{}] {done}/{total}",
        "#".repeat(filled as usize),
        " ".repeat((width - filled) as usize)
    );
}

/// Redrives a dead-letter queue a hundred messages per invocation,
/// showing progress, until it is empty or a round moves nothing. Returns
/// what moved, what failed and what is left.
pub async fn redrive(target: &Target, queue: &str, max: Option<u64>) -> Result<Value, String> {
    const ROUND: u64 = 100;
    let (mut moved, mut failed, mut left) = (0u64, 0u64, 0u64);
    let mut total = None;
    loop {
        let budget = max.map_or(ROUND, |m| m.saturating_sub(moved + failed).min(ROUND));
        if budget == 0 {
            break;
        }
        let answer = target
            .invoke(json!({"command": "redrive", "queue": queue, "max": budget}))
            .await?;
        if answer["ok"] != true {
            return Ok(answer);
        }
        let report = &answer["result"]["report"];
        let (m, f) = (
            report["moved"].as_u64().unwrap_or(0),
            report["failed"].as_u64().unwrap_or(0),
        );
        moved += m;
        failed += f;
        left = report["left"].as_u64().unwrap_or(0);
        let all = *total.get_or_insert(moved + failed + left);
        if all > 0 {
            progress_bar(moved + failed, all.max(moved + failed));
        }
        if m == 0 || left == 0 {
            break;
        }
    }
    if total.is_some_and(|t| t > 0) {
        eprintln!();
    }
    Ok(json!({
        "ok": true,
        "command": "redrive",
        "result": {"queue": queue, "report": {"moved": moved, "failed": failed, "left": left}}
    }))
}

/// A reconciliation answer's mismatches as CSV.
pub fn report_csv(answer: &Value) -> Result<String, String> {
    let report: pointsflow_core::reconcile::ReconcileReport =
        serde_json::from_value(answer["result"].clone()).map_err(|e| format!("report: {e}"))?;
    Ok(report.mismatches_csv())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The answer as people read it: a table for lists, a summary otherwise.
pub fn render(command: &str, answer: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if answer["ok"] != true {
        let e = &answer["error"];
        let _ = writeln!(
            out,
            "refused: {} ({}){}",
            text(&e["message"]),
            text(&e["code"]),
            if e["retryable"] == true {
                "; running it again may succeed"
            } else {
                ""
            }
        );
        return out;
    }
    let r = &answer["result"];
    match command {
        "get" => {
            let q = &r["request"];
            let _ = writeln!(out, "request      {}", text(&q["id"]));
            let _ = writeln!(out, "state        {}", text(&q["status"]["state"]));
            if let Some(reason) = q["status"]["reason"].as_object() {
                let _ = writeln!(
                    out,
                    "reason       {} ({})",
                    text(&reason["message"].clone()),
                    text(&reason["code"].clone())
                );
            }
            let _ = writeln!(out, "program      {}", text(&q["program"]));
            let _ = writeln!(out, "recipient    {}", text(&q["recipient"]["id"]));
            let _ = writeln!(out, "member       {}", text(&q["member"]));
            let _ = writeln!(out, "points       {}", text(&q["points"]));
            let _ = writeln!(out, "reference    {}", text(&q["partner_reference"]));
            let _ = writeln!(out, "\ntimeline");
            for e in q["timeline"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  {:<32} {:<19} {}",
                    text(&e["at"]),
                    text(&e["state"]),
                    text(&e["detail"])
                );
            }
            for rv in q["reversals"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "reversal     {} {} points {} by {}: {}",
                    text(&rv["id"]),
                    text(&rv["points"]),
                    text(&rv["reversal_state"]),
                    text(&rv["by"]),
                    text(&rv["reason"])
                );
            }
            let _ = writeln!(out, "\nledger");
            for e in r["entries"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  {:<14} {:>10}  {}",
                    text(&e["type"]),
                    text(&e["amount"]),
                    text(&e["id"])
                );
            }
        }
        "search" => {
            let _ = writeln!(
                out,
                "{:<36} {:<18} {:<20} {:>8}  {:<20} received",
                "request", "state", "program", "points", "source record"
            );
            let rows = r["requests"].as_array().cloned().unwrap_or_default();
            for q in &rows {
                let _ = writeln!(
                    out,
                    "{:<36} {:<18} {:<20} {:>8}  {:<20} {}",
                    text(&q["request_id"]),
                    text(&q["state"]),
                    text(&q["program"]),
                    text(&q["points"]),
                    text(&q["source_record"]),
                    text(&q["received_at"])
                );
            }
            let _ = writeln!(
                out,
                "{} requests{}",
                rows.len(),
                if r["truncated"] == true {
                    " (the limit; narrow the search or raise --limit)"
                } else {
                    ""
                }
            );
        }
        "audit" => {
            let _ = writeln!(
                out,
                "{:<32} {:<16} {:<10} {:<36} {:<8} summary",
                "started", "operator", "command", "request", "result"
            );
            for e in r["entries"].as_array().into_iter().flatten() {
                let outcome = &e["outcome"];
                let _ = writeln!(
                    out,
                    "{:<32} {:<16} {:<10} {:<36} {:<8} {}",
                    text(&e["started_at"]),
                    text(&e["operator"]),
                    text(&e["command"]),
                    text(&e["request"]),
                    if outcome.is_null() {
                        "running".to_owned()
                    } else {
                        text(&outcome["code"])
                    },
                    text(&outcome["summary"])
                );
            }
        }
        "redrive" => {
            let report = &r["report"];
            let _ = writeln!(
                out,
                "{}: moved {}, failed {}, left {}",
                text(&r["queue"]),
                text(&report["moved"]),
                text(&report["failed"]),
                text(&report["left"])
            );
        }
        "reconcile" | "report" => {
            let _ = writeln!(out, "report       {}", text(&r["id"]));
            let _ = writeln!(
                out,
                "statement    {} .. {}",
                text(&r["statement_from"]),
                text(&r["statement_to"])
            );
            let _ = writeln!(out, "\n{:<20} {:>10} {:>14}", "requests", "count", "points");
            for (state, totals) in r["requests"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{:<20} {:>10} {:>14}",
                    state,
                    text(&totals["count"]),
                    text(&totals["points"])
                );
            }
            let l = &r["ledger"];
            let p = &r["partner"];
            let _ = writeln!(
                out,
                "\nledger       posted {}, reversed {}, pending {}",
                text(&l["posted"]),
                text(&l["reversed"]),
                text(&l["pending"])
            );
            let _ = writeln!(
                out,
                "partner      {} credits, {} points credited, {} reversed, {} pending, {} failed",
                text(&p["credits"]),
                text(&p["credited_points"]),
                text(&p["reversed_points"]),
                text(&p["pending"]),
                text(&p["failed"])
            );
            let _ = writeln!(
                out,
                "in flight    {} credits (not compared)",
                text(&r["unsettled"])
            );
            let _ = writeln!(out, "mismatches   {}", text(&r["mismatch_count"]));
            let mismatches = r["mismatches"].as_array().cloned().unwrap_or_default();
            if !mismatches.is_empty() {
                let _ = writeln!(
                    out,
                    "\n{:<24} {:<36} {:>8} {:>8}  detail",
                    "kind", "reference", "ledger", "partner"
                );
                for m in &mismatches {
                    let _ = writeln!(
                        out,
                        "{:<24} {:<36} {:>8} {:>8}  {}",
                        text(&m["kind"]),
                        text(&m["reference"]),
                        text(&m["ledger_points"]),
                        text(&m["partner_points"]),
                        text(&m["detail"])
                    );
                }
            }
        }
        "reverse" => {
            let rv = &r["reversal"];
            let _ = writeln!(
                out,
                "reversal {} of {} points: {}",
                text(&rv["id"]),
                text(&rv["points"]),
                text(&rv["reversal_state"])
            );
        }
        _ => {
            let _ = writeln!(out, "{r:#}");
        }
    }
    out
}
