//! The `BucketAccessPolicy` custom resource (`storage-valet.dev/v1alpha1`,
//! cluster-scoped): which namespaces may be granted which buckets, under
//! which prefixes, up to which access. Written by the platform team; the
//! matching itself is pure and lives in [`crate::permit`].

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::Access;

/// Who may be granted what. Nothing is granted that no policy allows;
/// policies add up, like RBAC.
// Several `printcolumn(type_ = "string", ...)` look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "storage-valet.dev",
    version = "v1alpha1",
    kind = "BucketAccessPolicy",
    plural = "bucketaccesspolicies",
    singular = "bucketaccesspolicy",
    shortname = "bap",
    derive = "PartialEq",
    doc = "Which namespaces may be granted which S3 buckets, prefixes and access levels (deny by default; policies add up)",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.bucketAccount"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.namespaces) || has(self.namespaceSelector)").message("name the namespaces (names or globs) or give a namespaceSelector ({} selects every namespace)")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketAccessPolicySpec {
    /// Namespace names or globs (`team-*`). With `namespaceSelector` too, a
    /// namespace must match both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub namespaces: Option<Vec<String>>,
    /// Namespaces by label (`{}` selects every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// The 12-digit bucket account; the broker's default bucket account when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    pub bucket_account: Option<String>,
    /// The buckets these namespaces may be granted.
    #[schemars(length(min = 1, max = 100))]
    pub buckets: Vec<PolicyBucket>,
}

/// One bucket (or bucket class) the policy allows.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.name) != has(self.bucketClass)").message("give exactly one of name and bucketClass")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyBucket {
    /// Bucket name or glob (`acme-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9.*?-]+$"))]
    pub name: Option<String>,
    /// Buckets claimed through this BucketClass (a BucketClaim's bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub bucket_class: Option<String>,
    /// A grant's prefix must lie under one of these; `{namespace}` is the
    /// grant's namespace; `""` is the whole bucket. Absent: the whole bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub prefixes: Option<Vec<String>>,
    /// The highest access granted: read, write or readwrite.
    pub max_access: Access,
}

/// A label selector, as Kubernetes writes them.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// The CRD manifest as YAML, as `valet crd` prints it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&BucketAccessPolicy::crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kustomize and Helm copies are the code's CRD
    /// (`VALET_BLESS_CRD=1 cargo test -p valet-broker access_policy` rewrites them).
    #[test]
    fn the_installed_crds_are_the_ones_the_code_defines() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let generated = crd_yaml().expect("CRD YAML");
        let want: serde_yaml_ng::Value = serde_yaml_ng::from_str(&generated).expect("YAML");
        for file in [
            "manifests/base/bucketaccesspolicy-crd.yaml",
            "charts/storage-valet/crds/bucketaccesspolicies.yaml",
        ] {
            let path = root.join(file);
            if std::env::var_os("VALET_BLESS_CRD").is_some() {
                let text = format!(
                    "# Generated from crates/valet-broker/src/access_policy.rs (`valet crd`).\n{generated}"
                );
                std::fs::write(&path, text).expect("write CRD");
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let on_disk: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_default();
            assert_eq!(
                on_disk, want,
                "{file} is stale: VALET_BLESS_CRD=1 cargo test -p valet-broker access_policy"
            );
        }
        let spec = &serde_json::to_value(BucketAccessPolicy::crd()).expect("JSON")["spec"];
        assert_eq!(spec["scope"], "Cluster");
    }
}
