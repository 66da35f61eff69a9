//! The `pointsflow` command's client for a running stack's HTTP API (the
//! local stack, or a deployed one at its `ApiBaseUrl`): an operator shows a
//! request, or approves or declines one waiting for approval.

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

#[cfg(test)]
mod tests {
    use super::*;

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
