//! `pointsflow ops` and every operator command of the `pointsflow` CLI:
//! the admin API's commands (`POST /v1/admin/commands/{command}`), on the
//! local stack with an operator's key, or on a deployed stack signed with
//! SigV4 from the shell's AWS credentials (API Gateway's IAM authorization
//! then names the caller; nothing the CLI sends does).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

/// How the CLI proves who the operator is.
#[derive(Debug, Clone)]
pub enum Auth {
    /// An operator key of the configuration (the local stack).
    Key(String),
    /// SigV4 with these credentials, for API Gateway in `region` (deployed).
    Iam {
        credentials: Credentials,
        region: String,
    },
}

/// An admin API: its base URL and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Target {
    api: String,
    auth: Auth,
    client: reqwest::Client,
}

/// The headers SigV4 adds to a `POST` of `body` to `url` at `time`: what
/// API Gateway's IAM authorization checks.
pub fn sigv4_headers(
    url: &str,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?
        .into();
    let headers = [("content-type", "application/json")];
    let request = SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| format!("cannot sign {url}: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("cannot sign {url}: {e}"))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect())
}

impl Target {
    /// The local stack's admin API, with an operator's key.
    pub fn local(api: &str, key: &str) -> Self {
        Self::new(api, Auth::Key(key.to_owned()))
    }

    pub fn new(api: &str, auth: Auth) -> Self {
        Self {
            api: api.trim_end_matches('/').to_owned(),
            auth,
            client: reqwest::Client::new(),
        }
    }

    /// A deployed stack's admin API (its `ApiBaseUrl`), signed with the
    /// shell's AWS credentials and region (`region` overrides it).
    pub async fn deployed(api: &str, region: Option<&str>) -> Result<Self, String> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let provider = sdk
            .credentials_provider()
            .ok_or("no AWS credentials in this shell (aws configure, or AWS_PROFILE)")?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("cannot load the AWS credentials: {e}"))?;
        let region = region
            .map(str::to_owned)
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .ok_or("no AWS region (--region, or AWS_REGION)")?;
        Ok(Self::new(
            api,
            Auth::Iam {
                credentials,
                region,
            },
        ))
    }

    /// Runs one command (`{"command": ..., ...}`) and returns its answer,
    /// `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code",
    /// "message", "retryable"}}` (the API's problem, as the same shape).
    pub async fn invoke(&self, command: Value) -> Result<Value, String> {
        let mut fields = match command {
            Value::Object(fields) => fields,
            _ => return Err("a command is a JSON object".into()),
        };
        let name = match fields.remove("command") {
            Some(Value::String(name)) => name,
            _ => return Err("a command names itself in 'command'".into()),
        };
        let url = format!("{}/v1/admin/commands/{name}", self.api);
        let body = serde_json::to_vec(&Value::Object(fields)).map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .post(&url)
            .header("content-type", "application/json");
        match &self.auth {
            Auth::Key(key) => request = request.bearer_auth(key),
            Auth::Iam {
                credentials,
                region,
            } => {
                for (name, value) in
                    sigv4_headers(&url, &body, credentials, region, SystemTime::now())?
                {
                    request = request.header(name, value);
                }
            }
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.api))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| format!("{} answered {status} without JSON: {e}", self.api))?;
        if status.is_success() {
            return Ok(answer);
        }
        // A problem+json, in the shape of a refused command.
        let text = |k: &str| answer[k].as_str().unwrap_or_default().to_owned();
        Ok(json!({
            "ok": false,
            "command": name,
            "audit_id": answer.get("audit_id"),
            "status": status.as_u16(),
            "error": {
                "code": text("code"),
                "message": text("detail"),
                "retryable": status.as_u16() == 503,
            },
        }))
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
    if let Some(next) = r["next"].as_str() {
        let p = &r["proposal"];
        let _ = writeln!(
            out,
            "proposed {} ({}, by {}): {next}",
            text(&p["id"]),
            text(&p["change"]["kind"]),
            text(&p["proposed_by"])
        );
        return out;
    }
    match command {
        "proposals" => {
            let _ = writeln!(
                out,
                "{:<38} {:<18} {:<26} {:<24} reason",
                "proposal", "kind", "proposed at", "by"
            );
            for p in r["proposals"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "{:<38} {:<18} {:<26} {:<24} {}",
                    text(&p["id"]),
                    text(&p["change"]["kind"]),
                    text(&p["proposed_at"]),
                    text(&p["proposed_by"]),
                    text(&p["reason"])
                );
            }
        }
        "confirm" | "withdraw" | "proposal" => {
            let p = &r["proposal"];
            let _ = writeln!(
                out,
                "{} {}: {} (proposed by {}{})",
                text(&p["id"]),
                text(&p["state"]),
                text(&p["change"]["kind"]),
                text(&p["proposed_by"]),
                p["by"]
                    .as_str()
                    .map(|by| format!(", {} by {by}", text(&p["state"])))
                    .unwrap_or_default()
            );
        }
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
                "{:<32} {:<24} {:<9} {:<10} {:<36} {:<8} summary",
                "started", "operator", "verified", "command", "request", "result"
            );
            for e in r["entries"].as_array().into_iter().flatten() {
                let outcome = &e["outcome"];
                let _ = writeln!(
                    out,
                    "{:<32} {:<24} {:<9} {:<10} {:<36} {:<8} {}",
                    text(&e["started_at"]),
                    text(&e["operator"]),
                    text(&e["verified"]),
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
