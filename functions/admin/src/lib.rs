//! The admin API: every operator command over HTTP, one route per command
//! (`POST /v1/admin/commands/{command}`, the command's arguments as the
//! JSON body), so an IAM policy can grant a role's commands and nothing
//! else. Who calls is established once, before any route runs: deployed,
//! API Gateway's IAM authorization (SigV4) has verified the caller and puts
//! its principal ARN in the request context, which this function trusts
//! because only API Gateway may invoke it; locally, an operator key of the
//! configuration. The configuration maps principals (or keys) to roles;
//! the command itself checks them, audits, and answers
//! (`pointsflow-operations`). Errors are problem+json with the command's
//! stable code.

use std::collections::BTreeSet;
use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use pointsflow_config::OperatorEntry;
use pointsflow_core::access::{OperatorIdentity, Principal, Role, Verified, like};
use pointsflow_http::{Problem, Secrets};
use pointsflow_operations::{Invocation, Operations, roles_of};
use serde_json::Value;

/// Where every command is served: `{PREFIX}{command}`.
pub const PREFIX: &str = "/v1/admin/commands/";

/// Bodies above this are refused before they are parsed (a program
/// revision is the largest command).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How callers prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// API Gateway's IAM authorization: the principal in the request
    /// context (deployed; nothing in the request itself is trusted).
    Iam,
    /// An operator key as `Authorization: Bearer` (the local stack).
    Keys,
}

/// One configured operator entry, its keys as digests.
struct Entry {
    id: String,
    keys: Secrets,
    principals: Vec<String>,
    roles: BTreeSet<Role>,
}

impl Entry {
    fn matches_principal(&self, principal: &str) -> bool {
        self.principals
            .iter()
            .any(|pattern| like(pattern, principal))
    }

    fn new(e: &OperatorEntry) -> Self {
        Self {
            id: e.id.to_string(),
            keys: Secrets::of(e.keys()),
            principals: e.principals.clone(),
            roles: e.roles.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admin {
    authentication: Authentication,
    entries: Arc<Vec<Entry>>,
    operations: Operations,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("authentication", &self.authentication)
            .finish_non_exhaustive()
    }
}

impl Admin {
    pub fn new(
        authentication: Authentication,
        operators: &[OperatorEntry],
        operations: Operations,
    ) -> Self {
        Self {
            authentication,
            entries: Arc::new(operators.iter().map(Entry::new).collect()),
            operations,
        }
    }

    /// The Lambda handler: every outcome is a response, never an `Err`.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        match self.answer(&request).await {
            Ok(response) => response,
            Err(problem) => problem.into_response(),
        }
    }

    async fn answer(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let path = request.uri().path();
        let name = path
            .strip_prefix(PREFIX)
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| Problem::not_found(format!("no route for {path}")))?;
        if roles_of(name).is_empty() {
            return Err(Problem::not_found(format!("no command {name}")));
        }
        if request.method() != Method::POST {
            return Err(Problem::method_not_allowed("POST"));
        }
        let operator = self.authenticate(request)?;
        let arguments = arguments(request)?;
        let invocation = Invocation::authenticated(operator, name, arguments);
        let answer = self.operations.run(invocation).await;
        match (&answer.error, answer.ok) {
            (Some(e), false) => {
                let mut problem = Problem::command(&e.code, e.message.clone(), e.retryable);
                problem.audit_id = answer.audit_id.as_deref().map(Into::into);
                Err(problem)
            }
            _ => Ok(pointsflow_http::json(StatusCode::OK, &answer)),
        }
    }

    /// Who is calling, with the roles the configuration gives them.
    pub fn authenticate(&self, request: &Request) -> Result<OperatorIdentity, Problem> {
        match self.authentication {
            Authentication::Iam => {
                let arn = iam_principal(request).ok_or_else(|| {
                    Problem::operator_required(
                        "no IAM principal in the request context: call the admin API through API Gateway, signed with SigV4",
                    )
                })?;
                let principal = Principal::parse(&arn)
                    .map_err(|e| Problem::operator_required(format!("principal: {e}")))?;
                // A principal no entry names holds no role: its commands
                // are refused, and audited, as forbidden.
                let roles = self
                    .entries
                    .iter()
                    .filter(|e| e.matches_principal(&arn))
                    .flat_map(|e| e.roles.iter().copied())
                    .collect();
                Ok(OperatorIdentity {
                    principal,
                    roles,
                    verified: Verified::Iam,
                })
            }
            Authentication::Keys => {
                let presented = pointsflow_http::authorization(request.headers(), "bearer")
                    .ok_or_else(|| {
                        Problem::operator_required(
                            "this API needs an operator's key as 'Authorization: Bearer <key>'",
                        )
                    })?;
                let mut found = None;
                for e in self.entries.iter() {
                    if e.keys.accepts(presented) {
                        found = Some(e);
                    }
                }
                let entry = found.ok_or_else(|| {
                    Problem::operator_required("the key is not an operator's key")
                })?;
                let principal = Principal::parse(&entry.id)
                    .map_err(|e| Problem::operator_required(format!("operator id: {e}")))?;
                Ok(OperatorIdentity {
                    principal,
                    roles: entry.roles.clone(),
                    verified: Verified::Key,
                })
            }
        }
    }
}

/// The caller's IAM principal, as API Gateway's IAM authorization wrote
/// it into the request context.
fn iam_principal(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()?
            .iam
            .as_ref()?
            .user_arn
            .clone()
            .filter(|arn| !arn.is_empty()),
        _ => None,
    }
}

/// The command's arguments: the JSON object in the body (none: `{}`).
fn arguments(request: &Request) -> Result<Value, Problem> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::payload_too_large(MAX_BODY_BYTES));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    if !pointsflow_http::is_json(request) {
        return Err(Problem::unsupported_media_type());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Problem::malformed_json(
            "the body is a JSON object of the command's arguments",
        )),
        Err(e) => Err(Problem::malformed_json(e.to_string())),
    }
}
