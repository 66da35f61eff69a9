//! The `pointsflow` command's operator client: the admin API's commands
//! (through [`Target`]: an operator key locally, SigV4 deployed) for
//! showing and deciding requests, listing and proposing programs, linking
//! members, reading windows and confirming proposals.

use serde_json::{Value, json};

use crate::ops::Target;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Unreachable(String),
    /// The command was refused: its stable code and why.
    #[error("{code}: {detail}")]
    Problem { code: String, detail: String },
}

/// An operator's decision on a request waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Decline,
}

impl Decision {
    fn command(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Decline => "decline",
        }
    }
}

/// The admin API, as an operator.
#[derive(Debug, Clone)]
pub struct ApiClient {
    target: Target,
}

impl ApiClient {
    pub fn new(target: Target) -> Self {
        Self { target }
    }

    /// Runs `command` with `arguments`: its result, or why not.
    pub async fn command(&self, command: &str, mut arguments: Value) -> Result<Value, ClientError> {
        if let Some(fields) = arguments.as_object_mut() {
            fields.insert("command".into(), json!(command));
        }
        let answer = self
            .target
            .invoke(arguments)
            .await
            .map_err(ClientError::Unreachable)?;
        if answer["ok"] == true {
            return Ok(answer["result"].clone());
        }
        let text = |k: &str| answer["error"][k].as_str().unwrap_or("").to_owned();
        Err(ClientError::Problem {
            code: text("code"),
            detail: text("message"),
        })
    }

    /// A recipient's link in force.
    pub async fn member(&self, program: &str, recipient: &str) -> Result<Value, ClientError> {
        self.command(
            "member",
            json!({ "program": program, "recipient": recipient }),
        )
        .await
    }

    /// A scheduled window's run and progress.
    pub async fn window(&self, window: &str) -> Result<Value, ClientError> {
        self.command("window", json!({ "window": window })).await
    }

    /// Confirms another operator's proposal: it takes effect now.
    pub async fn confirm(&self, proposal: &str) -> Result<Value, ClientError> {
        self.command("confirm", json!({ "proposal_id": proposal }))
            .await
    }

    /// A request with its timeline and ledger entries.
    pub async fn show(&self, id: &str) -> Result<Value, ClientError> {
        self.command("get", json!({ "request_id": id })).await
    }

    /// Approves or declines a request waiting for approval.
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        reason: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut arguments = json!({ "request_id": id });
        if let Some(r) = reason {
            arguments["reason"] = json!(r);
        }
        self.command(decision.command(), arguments).await?;
        self.show(id).await
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
    /// The proposal another admin confirms (none in a dry run).
    pub proposal: Option<String>,
}

impl std::fmt::Display for ProgramChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.from, self.to) {
            (_, None) => writeln!(f, "{}: unchanged", self.id)?,
            (None, Some(to)) => writeln!(f, "{}: new program, revision {to}", self.id)?,
            (Some(from), Some(to)) => writeln!(f, "{}: revision {from} -> {to}", self.id)?,
        }
        if let Some(p) = &self.proposal {
            writeln!(
                f,
                "  proposed as {p}: another admin confirms it (pointsflow proposals confirm {p})"
            )?;
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
    /// Every program in force.
    pub async fn programs(&self) -> Result<Value, ClientError> {
        self.command("programs", json!({})).await
    }

    /// A program in force; `None` when there is no such program.
    pub async fn program(&self, id: &str) -> Result<Option<Value>, ClientError> {
        match self.command("program", json!({ "program": id })).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Problem { code, .. }) if code == "not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Proposes every program of `file` that differs from the one in force
    /// as its next revision (another admin confirms each); with `dry_run`,
    /// only says what would change.
    pub async fn apply_programs(
        &self,
        file: &pointsflow_config::ProgramFile,
        dry_run: bool,
    ) -> Result<Vec<ProgramChange>, ClientError> {
        let mut changes = Vec::new();
        for program in &file.programs {
            let id = program.id.to_string();
            let wanted = serde_json::to_value(program).map_err(|e| {
                ClientError::Unreachable(format!("cannot encode program {id}: {e}"))
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
                    proposal: None,
                });
                continue;
            }
            // Revision 0 is the configuration's: the first applied is 1.
            let applied = from.filter(|r| *r > 0);
            let to = applied.map_or(1, |r| r + 1);
            let mut proposal = None;
            if !dry_run {
                let proposed = self
                    .command(
                        "propose_program",
                        json!({ "revision": to, "program": wanted }),
                    )
                    .await?;
                proposal = proposed["proposal"]["id"].as_str().map(str::to_owned);
            }
            changes.push(ProgramChange {
                id,
                from,
                to: Some(to),
                differences,
                proposal,
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
    /// Links a recipient who has none; for one linked to another member,
    /// proposes the change (an admin's, with `reason`).
    pub async fn link_member(
        &self,
        program: &str,
        recipient: &str,
        member_number: &str,
        first_name: &str,
        last_name: &str,
        reason: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut arguments = json!({
            "program": program,
            "recipient": recipient,
            "member_number": member_number,
            "first_name": first_name,
            "last_name": last_name,
        });
        if let Some(r) = reason {
            arguments["reason"] = json!(r);
        }
        self.command("link", arguments).await
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
                    // A recipient linked to another member: the change is
                    // proposed (an admin's), with the row as its reason.
                    let reason = format!("member import, line {line_number}");
                    self.link_member(program, get(0), get(1), get(2), get(3), Some(&reason))
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            match outcome {
                Ok(view) => match view["proposal"]["id"].as_str() {
                    // The recipient is linked to another member: a change,
                    // proposed for another admin to confirm.
                    Some(id) => report.failed.push(ImportError {
                        line: line_number,
                        problem: format!(
                            "linked to another member already: proposed as {id} for another admin to confirm"
                        ),
                    }),
                    None => {
                        report.linked += 1;
                        report.released += view["released"].as_u64().unwrap_or(0) as usize;
                    }
                },
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

/// A request as an operator reads it (the `get` command's result): status
/// and why, points, the decisions if any, then the timeline.
pub fn render(found: &Value) -> String {
    let view = &found["request"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    line("id", s(&view["id"]));
    line("status", s(&view["status"]["state"]));
    if let Some(reason) = view["status"].get("reason") {
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
    if let Some(member) = view.get("member") {
        line("member", s(member));
    }
    if let Some(a) = view.get("first_approval") {
        line(
            "approval 1",
            format!(
                "{} by {} at {}",
                s(&a["decision"]),
                s(&a["by"]),
                s(&a["at"])
            ),
        );
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
    fn a_request_reads_as_lines_and_a_timeline() {
        let view = serde_json::json!({"request": {
            "id": "pr_1", "program": "sales",
            "status": {"state": "awaiting_approval", "reason": {"code": "approval_required", "message": "above 500"}},
            "recipient": {"id": "005A"}, "points": 1000, "member": "SKY1",
            "approval": {"decision": "approve", "by": "ops-anna", "at": "2026-11-27T10:00:00Z", "reason": "ok"},
            "timeline": [{"at": "2026-11-27T09:00:00Z", "state": "received", "detail": "accepted"}]
        }, "entries": []});
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
