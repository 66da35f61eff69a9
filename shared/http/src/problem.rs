//! RFC 9457 problem details with stable codes: the only shape an error
//! leaves either HTTP API in (intake's codes are listed in `openapi.yaml`;
//! the admin API also answers with its commands' codes, docs/operations.md).

use std::borrow::Cow;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

/// Every `code` a problem can carry (documented in `openapi.yaml`).
pub const CODES: &[&str] = &[
    "already_linked",
    "bad_signature",
    "idempotency_key_reused",
    "internal",
    "invalid_field",
    "invalid_idempotency_key",
    "malformed_json",
    "method_not_allowed",
    "missing_idempotency_key",
    "not_found",
    "payload_too_large",
    "unauthorized",
    "unavailable",
    "unknown_program",
    "unsupported_media_type",
];

/// An error answer. `code` is stable and documented; `detail` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub title: &'static str,
    pub detail: Box<str>,
    /// A JSON pointer to the offending field, for 400/422 on a body.
    pub field: Option<Box<str>>,
    pub retry_after: Option<u32>,
    pub allow: Option<&'static str>,
    /// The audit log entry of the operator command that was refused.
    pub audit_id: Option<Box<str>>,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_id: Option<&'a str>,
}

impl Problem {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            title,
            detail: detail.into().into_boxed_str(),
            field: None,
            retry_after: None,
            allow: None,
            audit_id: None,
        }
    }

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "The body is not valid JSON",
            detail,
        )
    }

    pub fn missing_idempotency_key() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "An Idempotency-Key header is required",
            "send a unique Idempotency-Key header per business event (for example the deal id); retries reuse it",
        )
    }

    pub fn invalid_idempotency_key(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "The Idempotency-Key header is not valid",
            detail,
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "send the source's API key as 'Authorization: Bearer <key>'",
        )
    }

    /// An operator's call without an operator's credentials.
    pub fn operator_required(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }

    /// A link for a recipient linked already: only an admin changes it.
    pub fn already_linked(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "already_linked",
            "The recipient is linked already",
            detail,
        )
    }

    /// An operator command refused or failed, under the command's own
    /// code (docs/operations.md lists them), with the status it means.
    pub fn command(code: &str, detail: impl Into<String>, retryable: bool) -> Self {
        let (status, title): (u16, &'static str) = match code {
            "invalid_command" => (400, "The command is not valid"),
            "forbidden" => (403, "The operator lacks the role"),
            "four_eyes" => (403, "A second operator is needed"),
            "not_found" => (404, "Not found"),
            "unavailable" | "partner_unavailable" => (503, "Temporarily unavailable"),
            _ if retryable => (503, "Temporarily unavailable"),
            _ => (409, "The command cannot be carried out now"),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT);
        let mut p = Self::new(status, "", title, detail);
        p.code = Cow::Owned(code.to_owned());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            p.retry_after = Some(1);
        }
        p
    }

    /// A webhook's HMAC signature or its timestamp did not check out.
    pub fn bad_signature(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "The signature is missing, stale or wrong",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut p = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            format!("this resource allows {allow}"),
        );
        p.allow = Some(allow);
        p
    }

    pub fn idempotency_key_reused() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "The Idempotency-Key was used for a different request",
            "a request with this Idempotency-Key exists with a different body; nothing was changed. Use a new key for a new event",
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The body is too large",
            format!("the body may be at most {limit} bytes"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the body as 'Content-Type: application/json'",
        )
    }

    pub fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "A field is missing or invalid",
            detail,
        );
        p.field = Some(field.into().into_boxed_str());
        p
    }

    pub fn unknown_program(program: &str) -> Self {
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_program",
            "No such program",
            format!("no program '{program}' is open to this source"),
        );
        p.field = Some("/program".into());
        p
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            detail,
        );
        p.retry_after = Some(1);
        p
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "an unexpected error occurred; it has been logged",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let wire = Wire {
            kind: format!("urn:pointsflow:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: &self.code,
            field: self.field.as_deref(),
            audit_id: self.audit_id.as_deref(),
        };
        let body = serde_json::to_string(&wire).unwrap_or_default();
        let mut response = Response::new(Body::Text(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    /// Each constructor names its code on the line after its status: the
    /// list of codes is complete when it holds every one of them.
    #[test]
    fn codes_lists_every_code_a_constructor_uses() {
        let source = include_str!("problem.rs");
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        let mut used: Vec<&str> = lines
            .windows(2)
            .filter_map(|w| {
                // `StatusCode::X,` then `"code",`; or both on one line.
                let (_, after) = w[0].split_once("StatusCode::")?;
                let rest = match after.split_once(", \"") {
                    Some((_, rest)) => rest,
                    None => w[1].strip_prefix('"')?,
                };
                rest.split('"').next()
            })
            .filter(|code| !code.is_empty())
            .collect();
        used.sort_unstable();
        used.dedup();
        assert!(used.len() >= 10, "found only {used:?}");
        assert_eq!(used, super::CODES);
    }
}
