//! Loading install manifests (kustomize dirs, Helm renders) and checking
//! each document against its Kubernetes type.
#![allow(dead_code)]

pub mod checks;
pub mod rbac;
pub mod render;
pub mod typed;

use serde_json::Value;

/// The repository root (this crate lives in crates/valet-tls).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `Kind/namespace/name` for messages and lookups.
pub fn id(doc: &Value) -> String {
    format!(
        "{}/{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

pub fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}
