//! Pure helpers for what the broker writes to Kubernetes: status
//! conditions and the ServiceAccount annotations.

use std::collections::BTreeMap;

use valet_core::consts::{ANN_BUCKET, ANN_BUCKET_REGION, ANN_BUCKETS, ANN_ROLE_ARN};

use crate::crd::{BucketAccessStatus, Condition, ValidSpec};

pub const READY: &str = "Ready";
/// Whether the BucketAccessPolicies allow every grant (and which did).
pub const PERMITTED: &str = "Permitted";
pub const TRUST_VALID: &str = "TrustValid";
pub const ROLE_PROVISIONED: &str = "RoleProvisioned";

/// On the ServiceAccount: which BucketAccess wrote the annotations (so that
/// deletion removes only its own).
pub const ANN_OWNER: &str = "storage-valet.dev/bucketaccess";
/// On a ServiceAccount the broker created: deleted with its BucketAccess.
pub const ANN_CREATED_BY: &str = "storage-valet.dev/created-by-bucketaccess";

/// One condition to set: type, status, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub ok: Option<bool>,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: &'static str,
        ok: Option<bool>,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Cond {
        Cond {
            type_,
            ok,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_word(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// The next status: conditions in a fixed order, `lastTransitionTime`
/// kept from `old` unless the status word changed (so an unchanged
/// reconcile produces an identical status and no write).
pub fn next_status(
    old: Option<&BucketAccessStatus>,
    role_arn: Option<String>,
    conds: &[Cond],
    generation: Option<i64>,
    now: &str,
) -> BucketAccessStatus {
    let old_conds = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions = conds
        .iter()
        .map(|c| {
            let status = status_word(c.ok).to_string();
            let since = old_conds
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == status)
                .map(|o| o.last_transition_time.clone())
                .unwrap_or_else(|| now.to_string());
            Condition {
                type_: c.type_.to_string(),
                status,
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    BucketAccessStatus {
        role_arn: role_arn.or_else(|| old.and_then(|s| s.role_arn.clone())),
        conditions,
        observed_generation: generation,
    }
}

/// `NAME[/PREFIX]`.
fn bucket_value(name: &str, prefix: Option<&str>) -> String {
    match prefix {
        Some(p) => format!("{name}/{p}"),
        None => name.to_string(),
    }
}

/// Annotations the broker owns on the ServiceAccount, with their values
/// (`None`: the key must be absent). `region` is the bucket account's,
/// used unless the spec's claimed buckets name their own.
pub fn service_account_annotations(
    annotation_prefix: &str,
    role_arn: &str,
    spec: &ValidSpec,
    region: &str,
    owner: &str,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    out.insert(
        format!("{annotation_prefix}/{ANN_ROLE_ARN}"),
        Some(role_arn.to_string()),
    );
    let (single, list) = match spec.buckets.as_slice() {
        [b] if b.alias.is_none() => (Some(bucket_value(&b.name, b.prefix.as_deref())), None),
        grants => {
            let entries: Vec<String> = grants
                .iter()
                .map(|b| {
                    let alias = b.alias.as_deref().unwrap_or(&b.name);
                    format!("{alias}={}", bucket_value(&b.name, b.prefix.as_deref()))
                })
                .collect();
            (None, Some(entries.join(",")))
        }
    };
    out.insert(ANN_BUCKET.to_string(), single);
    out.insert(ANN_BUCKETS.to_string(), list);
    // A claimed bucket is in its class's region, not the account's.
    let region = spec.region.as_deref().unwrap_or(region);
    out.insert(ANN_BUCKET_REGION.to_string(), Some(region.to_string()));
    out.insert(ANN_OWNER.to_string(), Some(owner.to_string()));
    out
}

/// The merge-patch entries needed to move `current` to `want`; empty when
/// nothing differs (the steady state writes nothing).
pub fn annotation_changes(
    current: &BTreeMap<String, String>,
    want: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, Option<String>> {
    want.iter()
        .filter(|(k, v)| current.get(*k) != v.as_ref())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
