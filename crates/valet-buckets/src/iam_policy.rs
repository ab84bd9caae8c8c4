//! The S3 permissions the broker's provisioning role needs for claims, for
//! `valet broker iam-policy`: exactly the operations `s3` calls.
//!
//! S3 cannot condition bucket-level calls on the bucket's own tags
//! (`aws:ResourceTag` is not evaluated for most bucket operations), so the
//! statements are limited by name instead: only buckets whose names the
//! classes' templates can produce (`PREFIX*`), and the broker itself checks
//! the ownership tags before any change.

use serde_json::{Value, json};

/// Bucket-level operations of a reconcile, a deletion and the emptiness check.
pub const BUCKET_ACTIONS: [&str; 18] = [
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketTagging",
    "s3:PutBucketTagging",
    "s3:GetBucketPublicAccessBlock",
    "s3:PutBucketPublicAccessBlock",
    "s3:GetBucketOwnershipControls",
    "s3:PutBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:PutBucketPolicy",
    "s3:GetEncryptionConfiguration",
    "s3:PutEncryptionConfiguration",
    "s3:GetBucketVersioning",
    "s3:PutBucketVersioning",
    "s3:GetLifecycleConfiguration",
    // Also what DeleteBucketLifecycle needs.
    "s3:PutLifecycleConfiguration",
];

/// Statements for buckets named `name_prefix*` in `partition`.
pub fn statements(partition: &str, name_prefix: &str) -> Vec<Value> {
    vec![json!({
        "Sid": "StorageValetClaimedBuckets",
        "Effect": "Allow",
        "Action": BUCKET_ACTIONS,
        "Resource": format!("arn:{partition}:s3:::{name_prefix}*"),
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Sse, Versioning};
    use crate::plan::Change;

    /// The IAM action each S3 write of a plan needs.
    fn action_of(op: &str) -> &'static str {
        match op {
            "CreateBucket" => "s3:CreateBucket",
            "PutBucketTagging" => "s3:PutBucketTagging",
            "PutPublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
            "PutBucketOwnershipControls" => "s3:PutBucketOwnershipControls",
            "PutBucketPolicy" => "s3:PutBucketPolicy",
            "PutBucketEncryption" => "s3:PutEncryptionConfiguration",
            "PutBucketVersioning" => "s3:PutBucketVersioning",
            "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
                "s3:PutLifecycleConfiguration"
            }
            other => panic!("no IAM action known for {other}"),
        }
    }

    #[test]
    fn every_write_a_plan_makes_is_allowed_and_only_on_the_prefix() {
        let changes = [
            Change::Create,
            Change::Tags {
                from: Default::default(),
                to: Default::default(),
            },
            Change::PublicAccessBlock,
            Change::OwnershipControls,
            Change::Policy {
                from: None,
                to: serde_json::Value::Null,
            },
            Change::Encryption(Sse::Aes256),
            Change::Versioning(Versioning::Enabled),
            Change::Lifecycle(Vec::new()),
            Change::DeleteLifecycle,
        ];
        for c in changes {
            assert!(BUCKET_ACTIONS.contains(&action_of(c.operation())), "{c:?}");
        }
        let s = &statements("aws", "prod-")[0];
        assert_eq!(s["Resource"], "arn:aws:s3:::prod-*");
        assert_eq!(s["Effect"], "Allow");
    }
}
