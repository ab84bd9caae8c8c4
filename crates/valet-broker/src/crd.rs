//! The `BucketAccess` custom resource (`storage-valet.dev/v1alpha1`).
//!
//! The schema carries the same checks as [`BucketAccessSpec::validate`] so
//! that the API server rejects most mistakes at `kubectl apply` time; the
//! code check stays because objects can predate a schema change and because
//! `valet broker apply` reads files that never met an API server.

use std::collections::BTreeSet;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use valet_core::bucket::{alias_suffix, validate_bucket_name, validate_prefix};

/// At most this many buckets per BucketAccess: keeps the inline policy far
/// below IAM's 10,240 character limit and the CEL cost bounded.
pub const MAX_BUCKETS: usize = 20;

/// Grants one Kubernetes ServiceAccount access to S3 buckets in a bucket
/// account, through an IAM role the broker provisions there.
// Several `printcolumn(type_ = "string", ...)` look like duplicates to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "storage-valet.dev",
    version = "v1alpha1",
    kind = "BucketAccess",
    plural = "bucketaccesses",
    singular = "bucketaccess",
    shortname = "ba",
    namespaced,
    status = "BucketAccessStatus",
    derive = "PartialEq",
    doc = "Grants a ServiceAccount least-privilege access to S3 buckets through a broker-managed IAM role",
    printcolumn(
        name = "ServiceAccount",
        type_ = "string",
        json_path = ".spec.serviceAccountName"
    ),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.roleArn"),
    printcolumn(
        name = "Permitted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Permitted\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BucketAccessSpec {
    /// The ServiceAccount in this namespace that gets the role (created if missing).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub service_account_name: String,
    /// The 12-digit AWS account that owns the buckets; the broker's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    pub bucket_account: Option<String>,
    /// The buckets, each with an optional key prefix and an access level.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(
        validation = Rule::new("size(self) <= 1 || self.all(b, has(b.alias))").message("every bucket needs an alias when there are several"),
        validation = Rule::new("self.all(b, !has(b.alias) || self.exists_one(c, has(c.alias) && c.alias == b.alias))").message("aliases must be unique")
    )]
    pub buckets: Vec<BucketGrant>,
    /// true: access revoked (the role keeps no S3 access), role and
    /// ServiceAccount annotation kept; false again restores it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// One bucket grant: an existing bucket by `name`, or the bucket of a
/// BucketClaim in the same namespace by `bucketClaimName`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.name) != has(self.bucketClaimName)").message("give exactly one of name and bucketClaimName")
)]
pub struct BucketGrant {
    /// S3 bucket name (S3 naming rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub name: Option<String>,
    /// A BucketClaim in this namespace: the grant waits until it is Ready,
    /// then uses its bucket (and its bucket account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub bucket_claim_name: Option<String>,
    /// Becomes `S3_BUCKET_<ALIAS>` in the pod (upper-cased, `-` to `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub alias: Option<String>,
    /// Key prefix the grant is limited to, e.g. `team-a/`; no wildcards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^([^/*?$][^*?$]*)?$"))]
    pub prefix: Option<String>,
    /// read, write or readwrite.
    pub access: Access,
}

/// Access level of a grant.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Readwrite,
}

impl Access {
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::Readwrite)
    }
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::Readwrite)
    }
}

/// Observed state, written by the broker.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BucketAccessStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A status condition, shaped like `metav1.Condition`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Permitted, TrustValid or RoleProvisioned.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A spec that passed every check: what the rest of the broker works from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSpec {
    pub service_account: String,
    pub bucket_account: Option<String>,
    pub buckets: Vec<ValidGrant>,
    pub suspended: bool,
    /// The region of the buckets granted by claim (their class's), which
    /// the ServiceAccount's `bucket-region` names; `None`: the account's.
    pub region: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidGrant {
    /// The bucket; for a claim's grant, empty until the claim is resolved
    /// (`claims::resolve_grants`).
    pub name: String,
    /// `bucketClaimName`, when the grant is by claim.
    pub claim: Option<String>,
    /// The claim's BucketClass, once resolved (for `bucketClass` policy entries).
    pub bucket_class: Option<String>,
    pub alias: Option<String>,
    pub prefix: Option<String>,
    pub access: Access,
}

/// Why a spec is invalid; the message says which field and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "spec.serviceAccountName {0:?} is not a valid ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253)"
    )]
    ServiceAccount(String),
    #[error("spec.bucketAccount {0:?} is not a 12-digit AWS account id")]
    Account(String),
    #[error("spec.buckets is empty: list at least one bucket")]
    NoBuckets,
    #[error(
        "spec.buckets has {0} entries; at most {MAX_BUCKETS} are allowed (split into several BucketAccess objects)"
    )]
    TooManyBuckets(usize),
    #[error("spec.buckets[{index}]: {source}")]
    Bucket {
        index: usize,
        source: valet_core::bucket::BucketError,
    },
    #[error(
        "spec.buckets[{index}] needs an alias: with several buckets each one is exposed as S3_BUCKET_<ALIAS>"
    )]
    MissingAlias { index: usize },
    #[error("spec.buckets[{index}]: alias {alias:?} maps to the same env var as an earlier bucket")]
    DuplicateAlias { index: usize, alias: String },
    #[error(
        "spec.buckets[{index}]: give exactly one of name (an existing bucket) and bucketClaimName (a BucketClaim in this namespace)"
    )]
    NameOrClaim { index: usize },
    #[error("spec.buckets[{index}]: bucketClaimName {claim:?} is not a valid object name")]
    ClaimName { index: usize, claim: String },
    #[error("spec.buckets[{index}]: bucket {name:?} with prefix {prefix:?} is listed twice")]
    DuplicateGrant {
        index: usize,
        name: String,
        prefix: String,
    },
}

impl BucketAccessSpec {
    /// Checks everything the schema checks, and what it cannot (S3 reserved
    /// names, alias collisions after upper-casing).
    pub fn validate(&self) -> Result<ValidSpec, SpecError> {
        let sa = &self.service_account_name;
        if !is_dns_subdomain(sa) {
            return Err(SpecError::ServiceAccount(sa.clone()));
        }
        if let Some(acct) = &self.bucket_account
            && (acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(SpecError::Account(acct.clone()));
        }
        if self.buckets.is_empty() {
            return Err(SpecError::NoBuckets);
        }
        if self.buckets.len() > MAX_BUCKETS {
            return Err(SpecError::TooManyBuckets(self.buckets.len()));
        }
        let several = self.buckets.len() > 1;
        let mut suffixes = BTreeSet::new();
        let mut grants = BTreeSet::new();
        let mut out = Vec::with_capacity(self.buckets.len());
        for (index, b) in self.buckets.iter().enumerate() {
            let wrap = |source| SpecError::Bucket { index, source };
            let (name, claim) = match (&b.name, &b.bucket_claim_name) {
                (Some(name), None) => {
                    validate_bucket_name(name).map_err(wrap)?;
                    (name.clone(), None)
                }
                (None, Some(claim)) if is_dns_subdomain(claim) => (String::new(), Some(claim)),
                (None, Some(claim)) => {
                    return Err(SpecError::ClaimName {
                        index,
                        claim: claim.clone(),
                    });
                }
                _ => return Err(SpecError::NameOrClaim { index }),
            };
            // A claim's bucket is known later: it is told apart by the claim's name.
            let key = claim.map_or_else(|| name.clone(), |c| format!("bucketClaimName {c}"));
            let prefix = b.prefix.as_deref().filter(|p| !p.is_empty());
            if let Some(p) = prefix {
                validate_prefix(p).map_err(wrap)?;
            }
            match &b.alias {
                Some(alias) => {
                    let suffix = alias_suffix(alias).map_err(wrap)?;
                    if !suffixes.insert(suffix) {
                        return Err(SpecError::DuplicateAlias {
                            index,
                            alias: alias.clone(),
                        });
                    }
                }
                None if several => return Err(SpecError::MissingAlias { index }),
                None => {}
            }
            if !grants.insert((key.clone(), prefix.unwrap_or_default().to_string())) {
                return Err(SpecError::DuplicateGrant {
                    index,
                    name: key,
                    prefix: prefix.unwrap_or_default().to_string(),
                });
            }
            out.push(ValidGrant {
                name,
                claim: claim.cloned(),
                bucket_class: None,
                alias: b.alias.clone(),
                prefix: prefix.map(str::to_string),
                access: b.access,
            });
        }
        Ok(ValidSpec {
            service_account: sa.clone(),
            bucket_account: self.bucket_account.clone(),
            buckets: out,
            suspended: self.suspended,
            region: None,
        })
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// The CRD manifest as YAML (`valet crd` prints it with the others).
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&BucketAccess::crd())
}
