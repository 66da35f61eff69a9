//! The `pointsflow` command's client for a running stack's HTTP API (the
//! local stack, or a deployed one at its `ApiBaseUrl`): an operator shows a
//! request, approves or declines one waiting for approval, and lists and
//! applies programs.

use serde_json::Value;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The API answered with a problem: its status, stable code and detail.
    #[error("{status} {code}: {detail}")]
    Problem {
        status: u16,
        code: String,
        detail: String,
    },
}

/// An operator's decision, as the API's routes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
}

impl Decision {
    fn route(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Decline => "decline",
        }
    }
}

/// The API at `base`, called with an operator's key.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl ApiClient {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// `GET` of an API path (e.g. `/v1/programs/sales/members/005A`),
    /// each segment encoded.
    pub async fn get_path(&self, path: &str) -> Result<Value, ClientError> {
        let encoded: Vec<String> = path.split('/').map(encode).collect();
        let url = format!("{}{}", self.base, encoded.join("/"));
        self.send(self.http.get(&url).bearer_auth(&self.key), &url)
            .await
    }

    /// `GET /v1/points-requests/{id}`.
    pub async fn show(&self, id: &str) -> Result<Value, ClientError> {
        let url = format!("{}/v1/points-requests/{}", self.base, encode(id));
        self.send(self.http.get(&url).bearer_auth(&self.key), &url)
            .await
    }

    /// `POST /v1/points-requests/{id}/approve` or `/decline`, with the reason.
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        reason: Option<&str>,
    ) -> Result<Value, ClientError> {
        let url = format!(
            "{}/v1/points-requests/{}/{}",
            self.base,
            encode(id),
            decision.route()
        );
        let body = match reason {
            Some(r) => serde_json::json!({ "reason": r }),
            None => serde_json::json!({}),
        };
        self.send(
            self.http.post(&url).bearer_auth(&self.key).json(&body),
            &url,
        )
        .await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Value, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let text = |k: &str| body[k].as_str().unwrap_or("").to_owned();
        Err(ClientError::Problem {
            status,
            code: text("code"),
            detail: text("detail"),
        })
    }
}

/// What applying a program file did (or, in a dry run, would do) to one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramChange {
    pub id: String,
    /// The revision in force before: 0 for the configuration's, or none.
    pub from: Option<u64>,
    /// The revision written (or to be written); none when unchanged.
    pub to: Option<u64>,
    /// `field: before -> after`, one per changed field.
    pub differences: Vec<String>,
}

impl std::fmt::Display for ProgramChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.from, self.to) {
            (_, None) => writeln!(f, "{}: unchanged", self.id)?,
            (None, Some(to)) => writeln!(f, "{}: new program, revision {to}", self.id)?,
            (Some(from), Some(to)) => writeln!(f, "{}: revision {from} -> {to}", self.id)?,
        }
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// Every leaf of a JSON value, by dotted path.
fn leaves(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The fields that differ between two programs, as `field: before -> after`.
pub fn differences(before: &Value, after: &Value) -> Vec<String> {
    let (mut a, mut b) = (Default::default(), Default::default());
    leaves("", before, &mut a);
    leaves("", after, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then(|| {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(none)".into());
                format!("{k}: {} -> {}", show(x), show(y))
            })
        })
        .collect()
}

impl ApiClient {
    /// `GET /v1/programs`.
    pub async fn programs(&self) -> Result<Value, ClientError> {
        let url = format!("{}/v1/programs", self.base);
        self.send(self.http.get(&url).bearer_auth(&self.key), &url)
            .await
    }

    /// `GET /v1/programs/{id}`; `None` when there is no such program.
    pub async fn program(&self, id: &str) -> Result<Option<Value>, ClientError> {
        let url = format!("{}/v1/programs/{}", self.base, encode(id));
        match self
            .send(self.http.get(&url).bearer_auth(&self.key), &url)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Problem { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies every program of `file` that differs from the one in force,
    /// as the next revision; with `dry_run`, only says what would change.
    pub async fn apply_programs(
        &self,
        file: &pointsflow_config::ProgramFile,
        dry_run: bool,
    ) -> Result<Vec<ProgramChange>, ClientError> {
        let mut changes = Vec::new();
        for program in &file.programs {
            let id = program.id.to_string();
            let wanted = serde_json::to_value(program).map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                message: format!("cannot encode program {id}: {e}"),
            })?;
            let current = self.program(&id).await?;
            let from = current.as_ref().and_then(|c| c["revision"].as_u64());
            let before = current.map(|c| c["program"].clone()).unwrap_or(Value::Null);
            let differences = differences(&before, &wanted);
            if differences.is_empty() {
                changes.push(ProgramChange {
                    id,
                    from,
                    to: None,
                    differences,
                });
                continue;
            }
            let to = from.map_or(1, |r| r + 1);
            if !dry_run {
                let url = format!("{}/v1/programs/{}", self.base, encode(&id));
                let body = serde_json::json!({ "revision": to, "program": wanted });
                self.send(self.http.put(&url).bearer_auth(&self.key).json(&body), &url)
                    .await?;
            }
            changes.push(ProgramChange {
                id,
                from,
                to: Some(to),
                differences,
            });
        }
        Ok(changes)
    }
}

/// One row of a member import that was not linked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The row's line in the file (the header is line 1).
    pub line: usize,
    pub problem: String,
}

/// What a member import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub linked: usize,
    /// Requests that were waiting for the recipients linked, now released.
    pub released: usize,
    pub failed: Vec<ImportError>,
}

/// The fields of one CSV line: commas separate, double quotes enclose a
/// field that holds commas or quotes (a quote doubled inside).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(field);
    Ok(fields)
}

/// The columns a member import needs, in any order.
const IMPORT_COLUMNS: [&str; 4] = ["recipient", "member_number", "first_name", "last_name"];

impl ApiClient {
    /// `PUT /v1/programs/{program}/members/{recipient}`.
    pub async fn link_member(
        &self,
        program: &str,
        recipient: &str,
        member_number: &str,
        first_name: &str,
        last_name: &str,
    ) -> Result<Value, ClientError> {
        let url = format!(
            "{}/v1/programs/{}/members/{}",
            self.base,
            encode(program),
            encode(recipient)
        );
        let body = serde_json::json!({
            "member_number": member_number,
            "first_name": first_name,
            "last_name": last_name,
        });
        self.send(self.http.put(&url).bearer_auth(&self.key).json(&body), &url)
            .await
    }

    /// Links every row of a CSV file (a header with `recipient`,
    /// `member_number`, `first_name`, `last_name`) in `program`. A row that
    /// is refused is reported with its line and the API's reason, and the
    /// others go on; `progress` is called after each row with (done, total).
    pub async fn import_members(
        &self,
        program: &str,
        csv: &str,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<ImportReport, String> {
        let mut lines = csv
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or("the file is empty")?;
        let header = csv_fields(header.trim_start_matches('\u{feff}'))?;
        let position = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!(
                        "the header has no {name} column (it needs {})",
                        IMPORT_COLUMNS.join(", ")
                    )
                })
        };
        let columns = [
            position(IMPORT_COLUMNS[0])?,
            position(IMPORT_COLUMNS[1])?,
            position(IMPORT_COLUMNS[2])?,
            position(IMPORT_COLUMNS[3])?,
        ];
        let rows: Vec<(usize, &str)> = lines.collect();
        let mut report = ImportReport::default();
        for (done, (index, line)) in rows.iter().enumerate() {
            let line_number = index + 1;
            let outcome = match csv_fields(line) {
                Err(problem) => Err(problem),
                Ok(fields) => {
                    let get = |i: usize| fields.get(columns[i]).map(|f| f.trim()).unwrap_or("");
                    self.link_member(program, get(0), get(1), get(2), get(3))
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            match outcome {
                Ok(view) => {
                    report.linked += 1;
                    report.released += view["released"].as_u64().unwrap_or(0) as usize;
                }
                Err(problem) => {
                    if problem.starts_with("cannot reach") {
                        return Err(problem);
                    }
                    report.failed.push(ImportError {
                        line: line_number,
                        problem,
                    });
                }
            }
            progress(done + 1, rows.len());
        }
        Ok(report)
    }
}

/// A path segment as typed: ids are letters, digits and `_`; anything
/// else is percent-encoded so it cannot change the path.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A request as an operator reads it: status and why, points, the decision
/// if any, then the timeline.
pub fn render(view: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("id", s(&view["id"]));
    line("status", s(&view["status"]));
    if let Some(reason) = view.get("reason") {
        line(
            "reason",
            format!("{}: {}", s(&reason["code"]), s(&reason["message"])),
        );
    }
    line("program", s(&view["program"]));
    line("recipient", s(&view["recipient"]["id"]));
    if let Some(points) = view["points"].as_u64() {
        line("points", points.to_string());
    }
    if let Some(member) = view.get("member_number") {
        line("member", s(member));
    }
    if let Some(a) = view.get("approval") {
        let why = a["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        line(
            "approval",
            format!(
                "{} by {} at {}{why}",
                s(&a["decision"]),
                s(&a["by"]),
                s(&a["at"])
            ),
        );
    }
    out.push_str("\ntimeline\n");
    for entry in view["timeline"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<25} {:<18} {}\n",
            s(&entry["at"]),
            s(&entry["state"]),
            s(&entry["detail"])
        ));
    }
    out
}

/// A window's run for people: what it planned and where its credits are.
pub fn render_window(view: &Value) -> String {
    let n = |field: &str| view[field].as_u64().unwrap_or(0);
    let mut out = String::new();
    out.push_str(&format!(
        "window    {} ({}, {})\n",
        view["window"].as_str().unwrap_or("?"),
        view["state"].as_str().unwrap_or("?"),
        if view["consolidate"] == true {
            "one credit per member"
        } else {
            "one credit per request"
        }
    ));
    out.push_str(&format!(
        "planned   {} requests from {} members in {} credits, {} points ({} planning invocation(s))\n",
        n("requests"),
        n("members"),
        n("credits"),
        n("points"),
        n("planning_runs")
    ));
    out.push_str(&format!(
        "credited  {} credits: {} requests, {} points\n",
        n("credited"),
        n("credited_requests"),
        n("credited_points")
    ));
    out.push_str(&format!(
        "failed    {} credits: {} requests\n",
        n("failed"),
        n("failed_requests")
    ));
    out.push_str(&format!("pending   {} credits\n", n("pending")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_changed_field() {
        let before = serde_json::json!({"budget": 100, "points": {"rule": "rate", "per": "100"}, "sources": ["a"]});
        let after = serde_json::json!({"budget": 200, "points": {"rule": "rate", "per": "100"}, "sources": ["a", "b"], "state": "paused"});
        assert_eq!(
            differences(&before, &after),
            [
                "budget: 100 -> 200",
                "sources[1]: (none) -> \"b\"",
                "state: (none) -> \"paused\""
            ]
        );
        assert!(differences(&after, &after).is_empty());
    }

    #[test]
    fn csv_fields_follow_quotes() {
        assert_eq!(csv_fields("a,b,,d").unwrap(), ["a", "b", "", "d"]);
        assert_eq!(
            csv_fields(r#"005A,"SKY1000001","O'Brien, Jr.","say ""hi""""#).unwrap(),
            ["005A", "SKY1000001", "O'Brien, Jr.", r#"say "hi""#]
        );
        assert!(csv_fields(r#"a,"open"#).is_err());
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(encode("pr_0a1b"), "pr_0a1b");
        assert_eq!(encode("../x?y"), "%2E%2E%2Fx%3Fy");
    }

    #[test]
    fn a_request_reads_as_lines_and_a_timeline() {
        let view = serde_json::json!({
            "id": "pr_1", "status": "awaiting_approval", "program": "sales",
            "reason": {"code": "approval_required", "message": "above 500"},
            "recipient": {"id": "005A"}, "points": 1000, "member_number": "SKY1",
            "approval": {"decision": "approve", "by": "ops-anna", "at": "2026-11-27T10:00:00Z", "reason": "ok"},
            "timeline": [{"at": "2026-11-27T09:00:00Z", "state": "received", "detail": "accepted"}]
        });
        let text = render(&view);
        assert!(
            text.contains("reason       approval_required: above 500"),
            "{text}"
        );
        assert!(
            text.contains("approval     approve by ops-anna at 2026-11-27T10:00:00Z: ok"),
            "{text}"
        );
        assert!(text.contains("received           accepted"), "{text}");
    }
}
