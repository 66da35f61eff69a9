//! What pointsflow's two HTTP APIs (intake, for sources; admin, for
//! operators) share: errors as RFC 9457 problem+json with stable codes,
//! JSON answers, and bearer credentials kept as digests and compared in
//! constant time.

pub mod problem;

use lambda_http::http::{HeaderMap, HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use problem::Problem;

/// `value` as a JSON answer with `status`.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => {
            let mut response = Response::new(Body::Text(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "could not serialise a response");
            Problem::internal().into_response()
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or
/// `application/*+json`).
pub fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            let media = media.trim();
            media.eq_ignore_ascii_case("application/json")
                || (media.len() > 5
                    && media[..media.len() - 5]
                        .to_ascii_lowercase()
                        .starts_with("application/")
                    && media.to_ascii_lowercase().ends_with("+json"))
        })
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Secrets kept as digests.
#[derive(Clone, Default)]
pub struct Secrets(Vec<[u8; 32]>);

impl Secrets {
    pub fn of<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Self(secrets.into_iter().map(digest).collect())
    }

    /// Whether `presented` is one of the secrets; looks at all of them.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let mut found = 0u8;
        for d in &self.0 {
            found |= d.ct_eq(&presented).unwrap_u8();
        }
        found == 1
    }
}

/// The credential after `scheme ` in the Authorization header.
pub fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (given, credential) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credential.trim())
}
