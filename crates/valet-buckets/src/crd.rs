//! The `BucketClass` (cluster-scoped) and `BucketClaim` (namespaced) custom
//! resources (`storage-valet.dev/v1alpha1`), in the vocabulary of Kubernetes
//! COSI: the platform team writes the class, a team writes a short claim, the
//! broker makes the bucket and reports it in the claim's status.
//!
//! Every spec refuses unknown fields (`deny_unknown_fields`, and
//! [`parse_document`] for the top level of a file), so a typo in a class
//! never silently drops a security setting.

use std::collections::BTreeMap;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default `nameTemplate`.
pub const DEFAULT_NAME_TEMPLATE: &str = "{cluster}-{namespace}-{name}";

/// A kind of bucket the platform offers: where it lives, its defaults, who may claim it.
// Several `printcolumn(type_ = "string", ...)` look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "storage-valet.dev",
    version = "v1alpha1",
    kind = "BucketClass",
    plural = "bucketclasses",
    singular = "bucketclass",
    shortname = "bcls",
    derive = "PartialEq",
    doc = "A kind of S3 bucket with the platform's defaults, and who may claim one",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.bucketAccount"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(
        name = "Deletion",
        type_ = "string",
        json_path = ".spec.deletionPolicy"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketClassSpec {
    /// The 12-digit AWS account that owns the buckets; the broker's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    pub bucket_account: Option<String>,
    /// The buckets' region; the broker's region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]+(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,
    /// Namespaces that may claim (names or globs such as `team-*`). With
    /// neither this nor `namespaceSelector`, nobody may claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces whose labels match may claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Bucket name: `{cluster}`, `{namespace}`, `{name}` (the claim), `{account}`,
    /// `{region}`; fitted to S3's rules and 63 characters with a hash.
    #[serde(default = "default_template")]
    pub name_template: String,
    /// Default encryption; SSE-S3 (`AES256`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// S3 versioning (once on, a bucket can only be suspended, never unversioned).
    #[serde(default)]
    pub versioning: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleSpec>,
    /// Extra tags for every bucket (keys under `storage-valet.dev/` are ours).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What deleting a claim does to its bucket.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_template() -> String {
    DEFAULT_NAME_TEMPLATE.to_string()
}

/// `matchLabels` and `matchExpressions`, as Kubernetes label selectors.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelExpression {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// `{ type: AES256 }` or `{ type: aws:kms, kmsKeyArn: ... }`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionSpec {
    #[serde(rename = "type")]
    pub type_: EncryptionType,
    /// The KMS key (ARN) for `aws:kms`; the bucket gets an S3 Bucket Key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionType {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifecycleSpec {
    /// Incomplete multipart uploads are aborted after this many days.
    // A CEL rule, not a schemars range: that one is written as 1.0, which
    // kustomize rewrites to 1 (the manifests would never match the code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 36500").message("use 1 to 36500 days"))]
    pub abort_incomplete_multipart_days: Option<i32>,
    /// Noncurrent object versions expire after this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 36500").message("use 1 to 36500 days"))]
    pub noncurrent_version_expiration_days: Option<i32>,
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// The bucket stays when its claim is deleted (only the finalizer goes).
    #[default]
    Retain,
    /// The bucket is deleted with its claim, only when empty.
    Delete,
}

/// A team's request for a bucket of a class.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "storage-valet.dev",
    version = "v1alpha1",
    kind = "BucketClaim",
    plural = "bucketclaims",
    singular = "bucketclaim",
    shortname = "bc",
    namespaced,
    status = "BucketClaimStatus",
    derive = "PartialEq",
    doc = "A request for an S3 bucket made with a BucketClass's defaults",
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.bucketClassName"),
    printcolumn(name = "Bucket", type_ = "string", json_path = ".status.bucketName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketClaimSpec {
    /// The BucketClass to make the bucket with.
    #[schemars(length(min = 1, max = 253))]
    pub bucket_class_name: String,
}

/// What the broker made, written by the broker.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BucketClaimStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `Provisioned` and `Ready`.
    #[serde(default)]
    pub conditions: Vec<ClaimCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A status condition, shaped like `metav1.Condition`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why a document from a file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error(
        "unknown top-level field {0:?} (expected apiVersion, kind, metadata, spec, status): check the spelling"
    )]
    UnknownField(String),
    #[error("{0}")]
    Invalid(String),
}

/// Reads a document of kind `K` strictly: unknown fields at the top level
/// and in the spec are refused, naming the field.
pub fn parse_document<K: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<K, DocumentError> {
    if let Some(map) = value.as_object() {
        const KNOWN: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
        if let Some(unknown) = map.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(DocumentError::UnknownField(unknown.clone()));
        }
    }
    serde_json::from_value(value).map_err(|e| DocumentError::Invalid(e.to_string()))
}

/// The CRD manifests (BucketClass, then BucketClaim) as YAML documents.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    Ok(format!(
        "{}---\n{}",
        serde_yaml_ng::to_string(&BucketClass::crd())?,
        serde_yaml_ng::to_string(&BucketClaim::crd())?
    ))
}
