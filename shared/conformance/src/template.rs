//! What `template.yaml` gives each function: its environment variables and
//! the IAM actions its policy grants. Tests run a function with exactly that
//! environment and compare the actions it calls (as the AWS API emulator
//! records them per access key) with the grant.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pointsflow_core::access::like;
use serde_yaml::Value;

/// The repository's deployment template.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionSpec {
    pub env: BTreeSet<String>,
    pub actions: BTreeSet<String>,
    /// The policy's statements, as far as the tests read them.
    pub statements: Vec<Statement>,
}

/// One `Allow` statement of a function's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    pub actions: BTreeSet<String>,
    /// `table` (the ledger table), `index/{name}` (one of its indexes),
    /// `role/{logical id}` (a role's ARN), or the resource's text.
    pub resources: BTreeSet<String>,
    /// The `dynamodb:LeadingKeys` patterns of a `ForAllValues:StringLike`
    /// condition, if the statement has one.
    pub leading_keys: Option<Vec<String>>,
    /// The other conditions, as `operator key value` lines.
    pub conditions: BTreeSet<String>,
}

impl Statement {
    /// Whether the statement allows `action` on `resource` for an item
    /// under partition key `pk` (empty: a call without one, a scan or an
    /// index query, which a LeadingKeys condition never covers here).
    pub fn allows(&self, action: &str, resource: &str, pk: &str) -> bool {
        self.actions.contains(action)
            && self.resources.contains(resource)
            && match &self.leading_keys {
                None => true,
                Some(patterns) => !pk.is_empty() && patterns.iter().any(|p| like(p, pk)),
            }
    }
}

/// What a resource of the template stands for (see [`Statement::resources`]).
fn resource_name(v: &Value) -> String {
    match v {
        Value::Tagged(tagged) => {
            let inner = tagged.value.as_str().unwrap_or_default();
            let tag = tagged.tag.to_string();
            if tag == "!GetAtt" && inner == "LedgerTable.Arn" {
                "table".to_owned()
            } else if tag == "!GetAtt" && inner.ends_with("Role.Arn") {
                format!("role/{}", inner.trim_end_matches(".Arn"))
            } else if tag == "!Sub" && inner.starts_with("${LedgerTable.Arn}/index/") {
                inner.trim_start_matches("${LedgerTable.Arn}/").to_owned()
            } else {
                format!("{tag} {inner}")
            }
        }
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn statement(v: &Value) -> Statement {
    let resources = match &v["Resource"] {
        Value::Sequence(items) => items.iter().map(resource_name).collect(),
        other => BTreeSet::from([resource_name(other)]),
    };
    let mut leading_keys = None;
    let mut conditions = BTreeSet::new();
    if let Some(operators) = v["Condition"].as_mapping() {
        for (operator, keys) in operators {
            let operator = operator.as_str().unwrap_or_default();
            for (key, value) in keys.as_mapping().into_iter().flatten() {
                let key = key.as_str().unwrap_or_default();
                if operator == "ForAllValues:StringLike" && key == "dynamodb:LeadingKeys" {
                    leading_keys = Some(strings(value));
                } else {
                    conditions.insert(format!("{operator} {key} {}", strings(value).join(",")));
                }
            }
        }
    }
    Statement {
        actions: strings(&v["Action"]).into_iter().collect(),
        resources,
        leading_keys,
        conditions,
    }
}

fn keys(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| k.as_str().map(str::to_owned))
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The environment and granted actions of the function resource `logical_id`.
pub fn function(logical_id: &str) -> FunctionSpec {
    let text = std::fs::read_to_string(path()).unwrap();
    let root: Value = serde_yaml::from_str(&text).unwrap();
    let resource = &root["Resources"][logical_id];
    assert!(
        resource.is_mapping(),
        "template.yaml has no resource {logical_id}"
    );
    let mut env: BTreeSet<String> =
        keys(&root["Globals"]["Function"]["Environment"]["Variables"]).collect();
    env.extend(keys(&resource["Properties"]["Environment"]["Variables"]));
    let mut actions = BTreeSet::new();
    let mut statements = Vec::new();
    for policy in resource["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for s in policy["Statement"].as_sequence().into_iter().flatten() {
            if s["Effect"].as_str() == Some("Allow") {
                actions.extend(strings(&s["Action"]));
                statements.push(statement(s));
            }
        }
    }
    FunctionSpec {
        env,
        actions,
        statements,
    }
}

/// The statements of a standalone policy resource (a managed policy).
pub fn policy(logical_id: &str) -> Vec<Statement> {
    let text = std::fs::read_to_string(path()).unwrap();
    let root: Value = serde_yaml::from_str(&text).unwrap();
    root["Resources"][logical_id]["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(statement)
        .collect()
}

/// The template, parsed.
pub fn root() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap()
}

/// The DynamoDB calls the emulator saw, made with `access_key`, as
/// (action, resource, partition key).
pub async fn touched(endpoint: &str, access_key: &str) -> BTreeSet<(String, String, String)> {
    let url = format!(
        "{}/_pointsflow/keys/{access_key}",
        endpoint.trim_end_matches('/')
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The IAM actions the emulator saw calls for, made with `access_key`.
pub async fn calls(endpoint: &str, access_key: &str) -> BTreeSet<String> {
    let url = format!(
        "{}/_pointsflow/calls/{access_key}",
        endpoint.trim_end_matches('/')
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
