//! The CRD files in manifests/ and the chart are the ones the code defines,
//! and the broker's RBAC covers the new kinds (read classes; claims, their
//! status and finalizers) without more.

use std::path::PathBuf;

use kube::CustomResourceExt;
use serde_json::Value;
use valet_buckets::crd::{BucketClaim, BucketClass};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const HEADER: &str = "# Generated from crates/valet-buckets/src/crd.rs (VALET_BLESS_CRD=1 cargo test -p valet-buckets --test manifests).\n";

fn check(path: &str, generated: String) -> anyhow::Result<()> {
    let file = repo().join(path);
    if std::env::var_os("VALET_BLESS_CRD").is_some() {
        std::fs::write(&file, format!("{HEADER}{generated}"))?;
    }
    let on_disk: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&file)?)?;
    let want: Value = serde_yaml_ng::from_str(&generated)?;
    assert!(
        on_disk == want,
        "{path} is stale: regenerate it with VALET_BLESS_CRD=1 cargo test -p valet-buckets --test manifests"
    );
    Ok(())
}

#[test]
fn crd_files_are_the_generated_ones() -> anyhow::Result<()> {
    let class = serde_yaml_ng::to_string(&BucketClass::crd())?;
    let claim = serde_yaml_ng::to_string(&BucketClaim::crd())?;
    check("manifests/base/bucketclasses.yaml", class.clone())?;
    check("manifests/base/bucketclaims.yaml", claim.clone())?;
    check("charts/storage-valet/crds/bucketclasses.yaml", class)?;
    check("charts/storage-valet/crds/bucketclaims.yaml", claim)?;
    let kustomization = std::fs::read_to_string(repo().join("manifests/base/kustomization.yaml"))?;
    for f in ["bucketclasses.yaml", "bucketclaims.yaml"] {
        assert!(
            kustomization.contains(f),
            "manifests/base/kustomization.yaml lists {f}"
        );
    }
    Ok(())
}

fn rules(text: &str) -> Vec<Value> {
    // Helm templates are not YAML until rendered: lines with `{{ }}` go
    // first (the rules hold none). Stop at the first document that does not
    // parse: the document iterator does not advance past an error.
    let text: String = text
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map_while(|d| <Value as serde::Deserialize>::deserialize(d).ok())
        // In the chart the name is templated (and filtered out above).
        .filter(|d: &Value| {
            d["kind"] == "ClusterRole"
                && (d["metadata"]["name"] == "storage-valet-broker"
                    || d["metadata"]["name"].is_null())
        })
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn verbs_for(rules: &[Value], resource: &str) -> Vec<String> {
    let mut verbs: Vec<String> = rules
        .iter()
        .filter(|r| {
            r["apiGroups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g == "storage-valet.dev"))
        })
        .filter(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|x| x.iter().any(|x| x == resource))
        })
        .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    verbs.sort();
    verbs
}

#[test]
fn broker_rbac_covers_classes_and_claims_and_no_more() -> anyhow::Result<()> {
    let manifests = std::fs::read_to_string(repo().join("manifests/broker/rbac.yaml"))?;
    let chart =
        std::fs::read_to_string(repo().join("charts/storage-valet/templates/broker-rbac.yaml"))?;
    for (what, text) in [("manifests", manifests), ("chart", chart)] {
        let r = rules(&text);
        assert_eq!(
            verbs_for(&r, "bucketclasses"),
            ["get", "list", "watch"],
            "{what}"
        );
        assert_eq!(
            verbs_for(&r, "bucketclaims"),
            ["get", "list", "patch", "watch"],
            "{what}"
        );
        assert_eq!(
            verbs_for(&r, "bucketclaims/status"),
            ["get", "patch", "update"],
            "{what}"
        );
        assert_eq!(
            verbs_for(&r, "bucketclaims/finalizers"),
            ["update"],
            "{what}"
        );
    }
    Ok(())
}
