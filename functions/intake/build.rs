//! Embeds the OpenAPI document (`openapi.yaml` at the repository root) as
//! JSON, for `GET /v1/openapi.json`: converted once here, so the function
//! carries no YAML parser.

#![allow(clippy::panic, clippy::expect_used)]

use std::path::Path;

fn main() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.yaml");
    println!("cargo::rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    // Read as YAML values first: they refuse a key given twice in one
    // mapping, which would otherwise silently replace the first.
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", source.display()));
    let document: serde_json::Value = serde_json::to_value(&yaml)
        .unwrap_or_else(|e| panic!("{} is not a JSON document: {e}", source.display()));
    let out =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapi.json");
    std::fs::write(&out, document.to_string())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
