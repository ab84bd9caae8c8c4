//! What a claimed bucket must look like (pure): the class's settings plus
//! the ones that are always on, whatever the class says.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::class::{Encryption, ValidClass};
use crate::naming::{Identity, bucket_name};

pub const TAG_MANAGED_BY: &str = "storage-valet.dev/managed-by";
pub const MANAGED_BY: &str = "storage-valet";
pub const TAG_CLUSTER: &str = "storage-valet.dev/cluster";
pub const TAG_NAMESPACE: &str = "storage-valet.dev/namespace";
pub const TAG_CLAIM: &str = "storage-valet.dev/bucketclaim";
/// The statement id of the TLS-only deny in every bucket policy.
pub const TLS_SID: &str = "StorageValetDenyInsecureTransport";
/// The id of the one lifecycle rule carrying the class's lifecycle settings.
pub const LIFECYCLE_ID: &str = "storage-valet-class-defaults";

/// Server-side default encryption, as observed or wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    None,
    Aes256,
    Kms {
        key_arn: String,
        bucket_key: bool,
    },
    /// Something we do not set (e.g. DSSE-KMS): always drift.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled.
    Off,
    Enabled,
    Suspended,
}

/// One lifecycle rule in the shape we write; `other` marks anything else
/// (filters, transitions, expirations, disabled rules), which is drift.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub id: String,
    pub abort_multipart_days: Option<i32>,
    pub noncurrent_expiration_days: Option<i32>,
    pub other: bool,
}

/// Every setting the broker manages on a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// All four Block Public Access settings on.
    pub public_access_blocked: bool,
    /// Object Ownership `BucketOwnerEnforced` (ACLs off).
    pub owner_enforced: bool,
    pub encryption: Sse,
    pub versioning: Versioning,
    /// Sorted by id.
    pub lifecycle: Vec<Rule>,
    pub policy: Option<Value>,
    pub tags: BTreeMap<String, String>,
}

/// The bucket a claim gets.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredBucket {
    pub name: String,
    pub arn: String,
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub namespace: String,
    pub claim: String,
    pub settings: Settings,
}

impl DesiredBucket {
    /// The bucket for claim `namespace/claim` of `class`, in `account` and `region`
    /// (the class's, or the broker's defaults the caller resolved).
    pub fn new(
        class: &ValidClass,
        cluster: &str,
        namespace: &str,
        claim: &str,
        account: &str,
        region: &str,
    ) -> DesiredBucket {
        let name = bucket_name(
            &class.name_template,
            &Identity {
                cluster,
                namespace,
                name: claim,
                account,
                region,
            },
        );
        let partition = partition(region);
        let arn = format!("arn:{partition}:s3:::{name}");
        let mut tags = class.tags.clone();
        tags.extend(ownership_tags(cluster, namespace, claim));
        let encryption = match &class.encryption {
            Encryption::Aes256 => Sse::Aes256,
            Encryption::Kms { key_arn } => Sse::Kms {
                key_arn: key_arn.clone(),
                bucket_key: true,
            },
        };
        let lc = &class.lifecycle;
        let lifecycle = if lc.abort_incomplete_multipart_days.is_some()
            || lc.noncurrent_version_expiration_days.is_some()
        {
            vec![Rule {
                id: LIFECYCLE_ID.to_string(),
                abort_multipart_days: lc.abort_incomplete_multipart_days,
                noncurrent_expiration_days: lc.noncurrent_version_expiration_days,
                other: false,
            }]
        } else {
            Vec::new()
        };
        let settings = Settings {
            public_access_blocked: true,
            owner_enforced: true,
            encryption,
            versioning: if class.versioning {
                Versioning::Enabled
            } else {
                Versioning::Off
            },
            lifecycle,
            policy: Some(tls_only_policy(&arn)),
            tags,
        };
        DesiredBucket {
            name,
            arn,
            account: account.to_string(),
            region: region.to_string(),
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
            claim: claim.to_string(),
            settings,
        }
    }

    /// Whether tags found on a bucket prove it is this claim's.
    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        ownership_tags(&self.cluster, &self.namespace, &self.claim)
            .iter()
            .all(|(k, v)| tags.get(k) == Some(v))
    }
}

/// Tags naming cluster, namespace and claim; a bucket is ours only with all four.
pub fn ownership_tags(cluster: &str, namespace: &str, claim: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (TAG_CLUSTER.to_string(), cluster.to_string()),
        (TAG_NAMESPACE.to_string(), namespace.to_string()),
        (TAG_CLAIM.to_string(), claim.to_string()),
    ])
}

/// The AWS partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Denies every request to the bucket and its objects made without TLS.
pub fn tls_only_policy(bucket_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": TLS_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, format!("{bucket_arn}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } }
        }]
    })
}

impl Versioning {
    /// Whether `self` (observed) is what `wanted` asks for. A bucket that was
    /// ever versioned can only be suspended, so `Off` is met by `Suspended`.
    pub fn satisfies(self, wanted: Versioning) -> bool {
        match wanted {
            Versioning::Enabled => self == Versioning::Enabled,
            Versioning::Off | Versioning::Suspended => self != Versioning::Enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tls_only_policy;
    use valet_policy::PolicyDocument;
    use valet_policy::evaluate::{Decision, Request, evaluate};

    /// The always-on bucket policy, judged by the evaluator the broker uses
    /// for every policy: it denies each request made without TLS, on the
    /// bucket and its objects, and nothing made with TLS (a Deny only: what
    /// is allowed stays with the roles' own policies).
    #[test]
    fn the_bucket_policy_denies_requests_without_tls_and_only_those() {
        let arn = "arn:aws:s3:::prod-team-a-media";
        let doc: PolicyDocument =
            serde_json::from_value(tls_only_policy(arn)).expect("a policy document");
        let object = format!("{arn}/uploads/hello.txt");
        for (action, resource) in [
            ("s3:PutObject", object.as_str()),
            ("s3:GetObject", object.as_str()),
            ("s3:ListBucket", arn),
            ("s3:PutBucketPolicy", arn),
        ] {
            let call = |tls: &str| {
                let mut req = Request::call(action, resource).with("aws:SecureTransport", tls);
                req.principal = Some(("AWS".into(), "arn:aws:iam::222222222222:role/app".into()));
                evaluate(&doc, &req)
            };
            assert_eq!(
                call("false"),
                Decision::ExplicitDeny,
                "{action} without TLS"
            );
            assert_eq!(call("true"), Decision::ImplicitDeny, "{action} with TLS");
        }
        let other = Request::call("s3:GetObject", "arn:aws:s3:::someone-else/x")
            .with("aws:SecureTransport", "false");
        assert_eq!(evaluate(&doc, &other), Decision::ImplicitDeny);
    }
}
