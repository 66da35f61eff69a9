//! What `template.yaml` gives each function: its environment variables and
//! the IAM actions its policy grants. Tests run a function with exactly that
//! environment and compare the actions it calls (as the AWS API emulator
//! records them per access key) with the grant.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// The repository's deployment template.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionSpec {
    pub env: BTreeSet<String>,
    pub actions: BTreeSet<String>,
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
    for policy in resource["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        for statement in policy["Statement"].as_sequence().into_iter().flatten() {
            if statement["Effect"].as_str() == Some("Allow") {
                actions.extend(strings(&statement["Action"]));
            }
        }
    }
    FunctionSpec { env, actions }
}

/// The IAM actions the emulator saw calls for, made with `access_key`.
pub async fn calls(endpoint: &str, access_key: &str) -> BTreeSet<String> {
    let url = format!(
        "{}/_pointsflow/calls/{access_key}",
        endpoint.trim_end_matches('/')
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
