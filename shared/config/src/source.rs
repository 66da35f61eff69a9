//! Sources: who may send events, how their bodies are read and
//! authenticated, and how their fields map onto a points request.
//!
//! Three kinds share one intake path (`POST /v1/sources/{source}/events`,
//! and the canonical `POST /v1/points-requests` for `api` sources):
//!
//! - `api`: the canonical JSON points request, `Authorization: Bearer` key,
//!   `Idempotency-Key` header;
//! - `salesforce_outbound_message`: a Salesforce Outbound Message (SOAP),
//!   authenticated by a token in the URL and the org id in the message;
//! - `webhook`: any JSON event (Salesforce Flow / Apex callouts, Workday,
//!   SAP SuccessFactors, Darwinbox, ...), authenticated by a bearer key,
//!   HTTP Basic or an HMAC-SHA256 signature.
//!
//! Every secret is a list, so two are valid at once during a rotation.

use std::collections::HashSet;

use pointsflow_core::money::Currency;
use pointsflow_core::values::{ProgramId, SourceId};
use serde::Deserialize;

use crate::{ConfigError, invalid};

/// The largest body a source may accept: 1 MiB, well above an Outbound
/// Message of 100 notifications (about 40 KiB for ten fields each) and
/// below API Gateway's 10 MB. The readers' work is bounded per kilobyte, so
/// this bounds the work one request can cost.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Api,
    SalesforceOutboundMessage,
    Webhook,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Api => "api",
            SourceKind::SalesforceOutboundMessage => "salesforce_outbound_message",
            SourceKind::Webhook => "webhook",
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    pub id: SourceId,
    #[serde(default)]
    pub kind: SourceKind,
    /// `api`: the bearer key (one; use `api_keys` to rotate).
    #[serde(default)]
    pub api_key: Option<String>,
    /// `api`: bearer keys, any of which is accepted.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// `salesforce_outbound_message`: the settings of the org.
    #[serde(default)]
    pub salesforce: Option<SalesforceSettings>,
    /// `webhook`: how the sender authenticates.
    #[serde(default)]
    pub webhook: Option<WebhookSettings>,
    /// The program every event of this source goes to, unless a route
    /// chooses another.
    #[serde(default)]
    pub program: Option<ProgramId>,
    /// Rules choosing the program from a field, the first that matches wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Conditions an event must meet to qualify; one that does not is
    /// recorded as rejected with the condition it failed.
    #[serde(default)]
    pub qualify: Vec<Condition>,
    /// How fields map onto a points request (not for `api` sources).
    #[serde(default)]
    pub mapping: Option<Mapping>,
    /// Bodies above this many bytes are refused before they are read
    /// (default 64 KiB, at most [`MAX_BODY_BYTES`]).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Where the final status of each of the source's requests is sent
    /// (credited, failed, rejected, reversed), signed.
    #[serde(default)]
    pub callback: Option<CallbackSettings>,
}

/// A source's status callback: an HTTPS endpoint and the secret each call
/// is signed with, in the chosen scheme (`pointsflow_core::signing`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSettings {
    pub url: String,
    pub secret: String,
    /// `standard_webhooks` only: secrets being retired, each of which also
    /// signs every call until it is removed, so a receiver that still
    /// holds one accepts the calls during a rotation.
    #[serde(default)]
    pub retiring_secrets: Vec<String>,
    #[serde(default)]
    pub signature: CallbackSignature,
}

/// How a status callback is signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackSignature {
    /// `x-pointsflow-signature: sha256=<hex HMAC of "{timestamp}.{body}">`.
    #[default]
    Pointsflow,
    /// Standard Webhooks 1.0, with a `whsec_` secret.
    StandardWebhooks,
}

impl CallbackSettings {
    /// The secrets that sign each call: the current one first.
    pub fn signing_secrets(&self) -> Vec<&str> {
        std::iter::once(self.secret.as_str())
            .chain(self.retiring_secrets.iter().map(String::as_str))
            .collect()
    }
}

impl std::fmt::Debug for CallbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSettings")
            .field("url", &self.url)
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl SourceEntry {
    /// Every bearer key of an `api` source.
    pub fn bearer_keys(&self) -> Vec<&str> {
        key_list(self.api_key.as_ref(), &self.api_keys)
    }
}

/// A single `api_key` and the `api_keys` of a rotation, as one list.
pub(crate) fn key_list<'a>(one: Option<&'a String>, many: &'a [String]) -> Vec<&'a str> {
    one.into_iter().chain(many).map(String::as_str).collect()
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceSettings {
    /// Tokens accepted in the endpoint URL's `token` query parameter.
    pub tokens: Vec<String>,
    /// The orgs allowed to send (15- or 18-character ids).
    pub org_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAuthKind {
    Bearer,
    Basic,
    Hmac,
    /// Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` under one of `secrets` (`whsec_...`).
    StandardWebhooks,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub auth: WebhookAuthKind,
    /// `bearer`: keys accepted in `Authorization: Bearer`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// `basic`: user names and passwords accepted.
    #[serde(default)]
    pub basic: Vec<BasicCredential>,
    /// `hmac`: shared secrets; the signature is HMAC-SHA256 over
    /// `{timestamp}.{body}`, hex, in `signature_header`.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    /// How far a signed timestamp may be from now, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_seconds: u64,
}

fn default_signature_header() -> String {
    "x-pointsflow-signature".into()
}

fn default_timestamp_header() -> String {
    "x-pointsflow-timestamp".into()
}

fn default_tolerance() -> u64 {
    300
}

/// Where a value comes from: a Salesforce field name (`StageName`) for
/// Outbound Messages, a JSON pointer (`/worker/id`) for webhooks.
pub type FieldPath = String;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The recipient's id in the source (a Salesforce user id, an employee id).
    pub recipient: FieldPath,
    #[serde(default)]
    pub recipient_email: Option<FieldPath>,
    /// An amount the program turns into points...
    #[serde(default)]
    pub amount: Option<FieldPath>,
    /// ...in this currency field, or `currency` when the field is absent.
    #[serde(default)]
    pub currency_field: Option<FieldPath>,
    #[serde(default)]
    pub currency: Option<Currency>,
    /// ...or a number of points.
    #[serde(default)]
    pub points: Option<FieldPath>,
    /// The event's id in the source. For Outbound Messages the record id is
    /// used when this is not set.
    #[serde(default)]
    pub event_id: Option<FieldPath>,
    /// The event type the program qualifies on, e.g. `opportunity.closed_won`.
    pub event_type: String,
    /// When the event happened (RFC 3339 or a date); the time of receipt when absent.
    #[serde(default)]
    pub occurred_at: Option<FieldPath>,
    /// Further fields kept on the request, for tracing and reports.
    #[serde(default)]
    pub attributes: Vec<FieldPath>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: FieldPath,
    /// The field's value must be this...
    #[serde(default)]
    pub equals: Option<String>,
    /// ...or one of these.
    #[serde(default, rename = "in")]
    pub one_of: Vec<String>,
}

impl Condition {
    /// Whether a field's value (absent or nil: `None`) meets the condition.
    pub fn holds(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return false;
        };
        match &self.equals {
            Some(expected) => value == expected,
            None => self.one_of.iter().any(|v| v == value),
        }
    }

    /// The condition in words, for a rejection's reason.
    pub fn describe(&self) -> String {
        match &self.equals {
            Some(expected) => format!("{} must be '{expected}'", self.field),
            None => format!("{} must be one of {}", self.field, self.one_of.join(", ")),
        }
    }
}

/// A program chosen by a field's value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub field: FieldPath,
    #[serde(default)]
    pub equals: Option<String>,
    #[serde(default, rename = "in")]
    pub one_of: Vec<String>,
    pub program: ProgramId,
}

impl Route {
    pub fn condition(&self) -> Condition {
        Condition {
            field: self.field.clone(),
            equals: self.equals.clone(),
            one_of: self.one_of.clone(),
        }
    }
}

/// Secrets never reach a log: Debug shows how many there are, not what they are.
pub(crate) struct Redacted(pub(crate) usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted>", self.0)
    }
}

impl std::fmt::Debug for SourceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEntry")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("api_keys", &Redacted(self.bearer_keys().len()))
            .field("salesforce", &self.salesforce)
            .field("webhook", &self.webhook)
            .field("program", &self.program)
            .field("routes", &self.routes)
            .field("qualify", &self.qualify)
            .field("mapping", &self.mapping)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl std::fmt::Debug for SalesforceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceSettings")
            .field("tokens", &Redacted(self.tokens.len()))
            .field("org_ids", &self.org_ids)
            .finish()
    }
}

impl std::fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredential")
            .field("username", &self.username)
            .field("password", &Redacted(1))
            .finish()
    }
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("auth", &self.auth)
            .field("keys", &Redacted(self.keys.len()))
            .field("basic", &self.basic)
            .field("secrets", &Redacted(self.secrets.len()))
            .field("signature_header", &self.signature_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("tolerance_seconds", &self.tolerance_seconds)
            .finish()
    }
}

/// Salesforce org ids: `00D`, then 12 or 15 more letters and digits.
pub fn is_org_id(id: &str) -> bool {
    (id.len() == 15 || id.len() == 18)
        && id.starts_with("00D")
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn check_secret<'a>(
    entry: &str,
    field: &'static str,
    secret: &'a str,
    min: usize,
    seen: &mut HashSet<&'a str>,
) -> Result<(), ConfigError> {
    if secret.len() < min {
        return Err(invalid(
            entry,
            field,
            format!("must be at least {min} characters"),
        ));
    }
    if !seen.insert(secret) {
        return Err(invalid(
            entry,
            field,
            "is used twice (here or by another source): each needs its own",
        ));
    }
    Ok(())
}

fn check_standard_secret(
    entry: &str,
    field: &'static str,
    secret: &str,
) -> Result<(), ConfigError> {
    pointsflow_core::signing::WebhookSecret::parse(secret)
        .map(|_| ())
        .map_err(|problem| invalid(entry, field, problem))
}

fn check_tolerance(entry: &str, seconds: u64) -> Result<(), ConfigError> {
    if seconds == 0 || seconds > 3_600 {
        return Err(invalid(
            entry,
            "webhook.tolerance_seconds",
            "must be 1 to 3600",
        ));
    }
    Ok(())
}

fn check_path(entry: &str, field: &'static str, path: &str, json: bool) -> Result<(), ConfigError> {
    let ok = if json {
        path.starts_with('/') && path.len() > 1
    } else {
        !path.is_empty() && path.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if ok {
        Ok(())
    } else if json {
        Err(invalid(
            entry,
            field,
            format!("'{path}' is not a JSON pointer such as /worker/id"),
        ))
    } else {
        Err(invalid(
            entry,
            field,
            format!("'{path}' is not a Salesforce field API name such as StageName"),
        ))
    }
}

fn check_condition(
    entry: &str,
    field: &'static str,
    condition: &Condition,
    json: bool,
) -> Result<(), ConfigError> {
    check_path(entry, field, &condition.field, json)?;
    match (&condition.equals, condition.one_of.is_empty()) {
        (Some(_), true) | (None, false) => Ok(()),
        _ => Err(invalid(
            entry,
            field,
            "needs exactly one of `equals` or `in`",
        )),
    }
}

/// One source on its own; `seen` collects secrets across sources.
pub(crate) fn validate<'a>(
    s: &'a SourceEntry,
    seen: &mut HashSet<&'a str>,
) -> Result<(), ConfigError> {
    let entry = format!("sources.{}", s.id);
    let entry = entry.as_str();
    let json = s.kind == SourceKind::Webhook;
    let not_for = |field: &'static str| {
        invalid(
            entry,
            field,
            format!("does not apply to a {} source", s.kind.as_str()),
        )
    };
    if s.kind != SourceKind::Api && !s.bearer_keys().is_empty() {
        return Err(not_for("api_key"));
    }
    if s.kind != SourceKind::SalesforceOutboundMessage && s.salesforce.is_some() {
        return Err(not_for("salesforce"));
    }
    if s.kind != SourceKind::Webhook && s.webhook.is_some() {
        return Err(not_for("webhook"));
    }
    if let Some(bytes) = s.max_body_bytes
        && (bytes == 0 || bytes > MAX_BODY_BYTES)
    {
        return Err(invalid(
            entry,
            "max_body_bytes",
            format!("must be 1 to {MAX_BODY_BYTES} bytes"),
        ));
    }
    if let Some(callback) = &s.callback {
        if callback.url.len() > 2_000 {
            return Err(invalid(
                entry,
                "callback.url",
                "must be at most 2000 characters",
            ));
        }
        if let Err(e) = crate::urls::outbound(&callback.url) {
            return Err(invalid(entry, "callback.url", e.to_string()));
        }
        check_secret(entry, "callback.secret", &callback.secret, 24, seen)?;
        match callback.signature {
            CallbackSignature::Pointsflow => {
                if !callback.retiring_secrets.is_empty() {
                    return Err(invalid(
                        entry,
                        "callback.retiring_secrets",
                        "the pointsflow signature carries one secret; sign with standard_webhooks to rotate without a gap",
                    ));
                }
            }
            CallbackSignature::StandardWebhooks => {
                check_standard_secret(entry, "callback.secret", &callback.secret)?;
                for secret in &callback.retiring_secrets {
                    check_secret(entry, "callback.retiring_secrets", secret, 24, seen)?;
                    check_standard_secret(entry, "callback.retiring_secrets", secret)?;
                }
            }
        }
    }
    match s.kind {
        SourceKind::Api => {
            let keys = s.bearer_keys();
            if keys.is_empty() {
                return Err(invalid(entry, "api_key", "an api source needs a key"));
            }
            for key in keys {
                check_secret(entry, "api_key", key, 16, seen)?;
            }
            for (field, present) in [
                ("mapping", s.mapping.is_some()),
                ("program", s.program.is_some()),
                ("routes", !s.routes.is_empty()),
                ("qualify", !s.qualify.is_empty()),
            ] {
                if present {
                    return Err(invalid(
                        entry,
                        field,
                        "does not apply to an api source: its requests name their program",
                    ));
                }
            }
            return Ok(());
        }
        SourceKind::SalesforceOutboundMessage => {
            let sf = s
                .salesforce
                .as_ref()
                .ok_or_else(|| invalid(entry, "salesforce", "needs tokens and org_ids"))?;
            if sf.tokens.is_empty() {
                return Err(invalid(
                    entry,
                    "salesforce.tokens",
                    "needs at least one token",
                ));
            }
            for token in &sf.tokens {
                check_secret(entry, "salesforce.tokens", token, 24, seen)?;
                if !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(invalid(
                        entry,
                        "salesforce.tokens",
                        "may hold only letters, digits, - and _ (it goes in a URL)",
                    ));
                }
            }
            if sf.org_ids.is_empty() {
                return Err(invalid(
                    entry,
                    "salesforce.org_ids",
                    "needs at least one org id",
                ));
            }
            for org in &sf.org_ids {
                if !is_org_id(org) {
                    return Err(invalid(
                        entry,
                        "salesforce.org_ids",
                        format!("'{org}' is not a Salesforce org id (00D..., 15 or 18 characters)"),
                    ));
                }
            }
        }
        SourceKind::Webhook => {
            let w = s
                .webhook
                .as_ref()
                .ok_or_else(|| invalid(entry, "webhook", "needs auth and its credentials"))?;
            match w.auth {
                WebhookAuthKind::Bearer => {
                    if w.keys.is_empty() {
                        return Err(invalid(entry, "webhook.keys", "bearer auth needs keys"));
                    }
                    for key in &w.keys {
                        check_secret(entry, "webhook.keys", key, 16, seen)?;
                    }
                }
                WebhookAuthKind::Basic => {
                    if w.basic.is_empty() {
                        return Err(invalid(
                            entry,
                            "webhook.basic",
                            "basic auth needs a username and password",
                        ));
                    }
                    for c in &w.basic {
                        if c.username.is_empty() || c.username.contains(':') {
                            return Err(invalid(
                                entry,
                                "webhook.basic.username",
                                "must be non-empty and without ':'",
                            ));
                        }
                        check_secret(entry, "webhook.basic.password", &c.password, 16, seen)?;
                    }
                }
                WebhookAuthKind::StandardWebhooks => {
                    if w.secrets.is_empty() {
                        return Err(invalid(
                            entry,
                            "webhook.secrets",
                            "standard_webhooks auth needs whsec_ secrets",
                        ));
                    }
                    for secret in &w.secrets {
                        check_secret(entry, "webhook.secrets", secret, 24, seen)?;
                        check_standard_secret(entry, "webhook.secrets", secret)?;
                    }
                    check_tolerance(entry, w.tolerance_seconds)?;
                }
                WebhookAuthKind::Hmac => {
                    if w.secrets.is_empty() {
                        return Err(invalid(entry, "webhook.secrets", "hmac auth needs secrets"));
                    }
                    for secret in &w.secrets {
                        check_secret(entry, "webhook.secrets", secret, 32, seen)?;
                    }
                    check_tolerance(entry, w.tolerance_seconds)?;
                    for (field, header) in [
                        ("webhook.signature_header", &w.signature_header),
                        ("webhook.timestamp_header", &w.timestamp_header),
                    ] {
                        if http_header_name(header).is_none() {
                            return Err(invalid(entry, field, "is not an HTTP header name"));
                        }
                    }
                }
            }
        }
    }
    let mapping = s
        .mapping
        .as_ref()
        .ok_or_else(|| invalid(entry, "mapping", "needs at least recipient and event_type"))?;
    check_path(entry, "mapping.recipient", &mapping.recipient, json)?;
    for (field, path) in [
        ("mapping.recipient_email", &mapping.recipient_email),
        ("mapping.amount", &mapping.amount),
        ("mapping.currency_field", &mapping.currency_field),
        ("mapping.points", &mapping.points),
        ("mapping.event_id", &mapping.event_id),
        ("mapping.occurred_at", &mapping.occurred_at),
    ] {
        if let Some(path) = path {
            check_path(entry, field, path, json)?;
        }
    }
    for path in &mapping.attributes {
        check_path(entry, "mapping.attributes", path, json)?;
    }
    match (&mapping.amount, &mapping.points) {
        (Some(_), None) => {
            if mapping.currency_field.is_none() && mapping.currency.is_none() {
                return Err(invalid(
                    entry,
                    "mapping.currency",
                    "an amount needs a currency_field or a currency",
                ));
            }
        }
        (None, Some(_)) => {}
        _ => {
            return Err(invalid(
                entry,
                "mapping.amount",
                "map exactly one of amount or points",
            ));
        }
    }
    // A Standard Webhooks sender's `webhook-id` is the event's id unless a
    // field is mapped.
    let id_in_header = s
        .webhook
        .as_ref()
        .is_some_and(|w| w.auth == WebhookAuthKind::StandardWebhooks);
    if json && mapping.event_id.is_none() && !id_in_header {
        return Err(invalid(
            entry,
            "mapping.event_id",
            "a webhook needs the event's id (or auth = \"standard_webhooks\", whose webhook-id is it): it is what makes a retry a duplicate",
        ));
    }
    if pointsflow_core::values::EventType::parse(&mapping.event_type).is_err() {
        return Err(invalid(
            entry,
            "mapping.event_type",
            format!(
                "'{}' is not an event type such as opportunity.closed_won",
                mapping.event_type
            ),
        ));
    }
    for condition in &s.qualify {
        check_condition(entry, "qualify", condition, json)?;
    }
    for route in &s.routes {
        check_condition(entry, "routes", &route.condition(), json)?;
    }
    if s.program.is_none() {
        return Err(invalid(
            entry,
            "program",
            "name the program events go to when no route chooses another",
        ));
    }
    Ok(())
}

fn http_header_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use crate::Config;

    const BASE: &str = r#"
[[partners]]
id = "air"
kind = "sandbox"

[[partners]]
id = "rest-air"
kind = "rest"
base_url = "https://partner.example.com"
api_key = "partner_secret_0123456789"

[[programs]]
id = "sales"
name = "Sales"
currency = "USD"
budget = 1000
points = { rule = "given" }
transfer = { mode = "realtime" }
destination = { partner = "air", partner_program = "SKY" }
"#;

    /// `sources` over [`BASE`], whose program lists every source they define.
    fn parse(sources: &str) -> Result<Config, String> {
        let ids: Vec<&str> = sources
            .split("[[sources]]")
            .skip(1)
            .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("id = ")))
            .collect();
        let base = BASE.replace(
            "budget = 1000\n",
            &format!("budget = 1000\nsources = [{}]\n", ids.join(", ")),
        );
        Config::parse(&format!("{base}\n{sources}")).map_err(|e| e.to_string())
    }

    const SALESFORCE: &str = r#"
[[sources]]
id = "sf"
kind = "salesforce_outbound_message"
program = "sales"
salesforce = { tokens = ["sf_token_0123456789abcdefghij"], org_ids = ["00D5g000004Demo"] }
mapping = { recipient = "OwnerId", points = "Points__c", event_type = "opportunity.closed_won" }
"#;

    #[test]
    fn a_valid_source_of_each_kind_parses() {
        let config = parse(&format!(
            r#"{SALESFORCE}
[[sources]]
id = "api"
api_keys = ["api_key_0123456789ab", "api_key_new_0123456789"]

[[sources]]
id = "hook"
kind = "webhook"
program = "sales"
webhook = {{ auth = "hmac", secrets = ["hook_secret_0123456789abcdef0123456789"] }}
mapping = {{ recipient = "/who", points = "/points", event_id = "/id", event_type = "recognition.awarded" }}

[[sources]]
id = "standard"
kind = "webhook"
program = "sales"
webhook = {{ auth = "standard_webhooks", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }}
mapping = {{ recipient = "/who", points = "/points", event_type = "recognition.awarded" }}
callback = {{ url = "https://example.com/hook", secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD8Xpq3shjV3I=", retiring_secrets = ["whsec_Qm9yZWRvbV9pc19ub3RfYV9zZWNyZXRfMTIzNDU2Nzg="], signature = "standard_webhooks" }}

[[operators]]
id = "ops-anna"
api_key = "operator_key_0123456789"
roles = ["viewer", "approver"]

[[operators]]
id = "ops-iam"
principals = ["arn:aws:sts::123456789012:assumed-role/PointsflowAdmin/*"]
roles = ["admin"]
"#
        ))
        .unwrap();
        assert_eq!(config.sources.len(), 4);
        let shown = format!(
            "{:?} {:?} {:?}",
            config.sources, config.partners, config.operators
        );
        for secret in [
            "sf_token_0123",
            "api_key_0123",
            "hook_secret_0123",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "C2FVsBQIhrscChlQIMV",
            "Qm9yZWRvbV9pc19ub3Rf",
            "partner_secret",
            "operator_key",
        ] {
            assert!(!shown.contains(secret), "a secret reached Debug: {shown}");
        }
    }

    #[test]
    fn member_numbers_follow_their_programs_format() {
        let with_format = BASE.replace(
            "budget = 1000\n",
            "budget = 1000\nsources = [\"api\"]\nmember_format = { min_length = 11, max_length = 11, characters = \"digits\", prefix = \"SKY\", check_digit = \"mod7\" }\n",
        );
        let member = |number: &str| {
            Config::parse(&format!(
                "{with_format}\n[[sources]]\nid = \"api\"\napi_key = \"api_key_0123456789ab\"\n\n[[members]]\nprogram = \"sales\"\nrecipient = \"0055g00000DemoAA1\"\nmember_number = \"{number}\"\nfirst_name = \"Ada\"\nlast_name = \"Lovelace\"\n"
            ))
            .map_err(|e| e.to_string())
        };
        let config = member(" sky10000001 ").unwrap();
        assert_eq!(config.member_links()[0].member.as_str(), "SKY10000001");
        assert_eq!(
            member("SKY10000002").unwrap_err(),
            "members[0]: member_number: its check digit is wrong (a mistyped number?)"
        );
        assert_eq!(
            member("SKY1000000X").unwrap_err(),
            "members[0]: member_number: may hold only digits after its prefix"
        );
        assert_eq!(
            member("XYZ10000001").unwrap_err(),
            "members[0]: member_number: must start with SKY"
        );
    }

    #[test]
    fn errors_name_the_source_and_the_field() {
        let cases = [
            (SALESFORCE.replace("00D5g000004Demo", "001000000000001"), "sources.sf: salesforce.org_ids"),
            (SALESFORCE.replace("sf_token_0123456789abcdefghij", "short"), "sources.sf: salesforce.tokens"),
            (SALESFORCE.replace("program = \"sales\"", "program = \"nope\""), "sources.sf: program"),
            (SALESFORCE.replace("OwnerId", "/owner"), "sources.sf: mapping.recipient"),
            (SALESFORCE.replace("points = \"Points__c\", ", ""), "sources.sf: mapping.amount"),
            (SALESFORCE.replace("opportunity.closed_won", "not an event type!"), "sources.sf: mapping.event_type"),
            (
                r#"
[[sources]]
id = "hook"
kind = "webhook"
program = "sales"
webhook = { auth = "basic", basic = [{ username = "u", password = "short" }] }
mapping = { recipient = "/who", points = "/points", event_id = "/id", event_type = "recognition.awarded" }
"#
                .to_owned(),
                "sources.hook: webhook.basic.password",
            ),
            (
                r#"
[[sources]]
id = "hook"
kind = "webhook"
program = "sales"
webhook = { auth = "bearer", keys = ["hook_key_0123456789ab"] }
mapping = { recipient = "/who", points = "/points", event_type = "recognition.awarded" }
"#
                .to_owned(),
                "sources.hook: mapping.event_id",
            ),
            (
                r#"
[[sources]]
id = "api"
api_key = "api_key_0123456789ab"
program = "sales"
"#
                .to_owned(),
                "sources.api: program",
            ),
            (
                r#"
[[sources]]
id = "hook"
kind = "webhook"
program = "sales"
webhook = { auth = "standard_webhooks", secrets = ["hook_secret_0123456789abcdef0123456789"] }
mapping = { recipient = "/who", points = "/points", event_type = "recognition.awarded" }
"#
                .to_owned(),
                "sources.hook: webhook.secrets: must start with whsec_",
            ),
            (
                r#"
[[sources]]
id = "api"
api_key = "api_key_0123456789ab"
callback = { url = "https://example.com/hook", secret = "cb_secret_0123456789abcdef", retiring_secrets = ["cb_old_secret_0123456789abcdef"] }
"#
                .to_owned(),
                "sources.api: callback.retiring_secrets: the pointsflow signature carries one secret",
            ),
            (
                r#"
[[sources]]
id = "api"
api_key = "api_key_0123456789ab"
callback = { url = "https://example.com/hook", secret = "whsec_c2hvcnQ=", signature = "standard_webhooks" }
"#
                .to_owned(),
                "sources.api: callback.secret: must be at least 24 characters",
            ),
            (
                r#"
[[sources]]
id = "api"
api_key = "api_key_0123456789ab"
callback = { url = "https://example.com/hook", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", retiring_secrets = ["whsec_c2hvcnRfa2V5XzAxMjM0NTY3"], signature = "standard_webhooks" }
"#
                .to_owned(),
                "sources.api: callback.retiring_secrets: must encode 24 to 64 bytes",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"ops-anna\"\nroles = [\"viewer\"]\n"),
                "operators.ops-anna: api_key: an operator needs a key",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"ops-anna\"\napi_key = \"sf_token_0123456789abcdefghij\"\nroles = [\"viewer\"]\n"),
                "operators.ops-anna: api_key: is used twice",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"Ops Anna\"\napi_key = \"operator_key_0123456789\"\nroles = [\"viewer\"]\n"),
                "TOML parse error",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"ops-anna\"\napi_key = \"operator_key_0123456789\"\n"),
                "TOML parse error",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"ops-anna\"\napi_key = \"operator_key_0123456789\"\nroles = []\n"),
                "operators.ops-anna: roles",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"ops-anna\"\napi_key = \"operator_key_0123456789\"\nroles = [\"root\"]\n"),
                "TOML parse error",
            ),
            (
                format!("{SALESFORCE}\n[[operators]]\nid = \"ops-anna\"\nprincipals = [\"PointsflowAdmin\"]\nroles = [\"admin\"]\n"),
                "operators.ops-anna: principals",
            ),
        ];
        for (sources, expected) in cases {
            let error = parse(&sources).expect_err(expected);
            assert!(
                error.starts_with(expected),
                "expected {expected}, got {error}"
            );
        }
    }
}
