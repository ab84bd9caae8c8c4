//! The inline S3 access policy the broker writes for a BucketAccess's
//! grants; the document types and the evaluator live in `valet-policy`.

use std::collections::BTreeMap;

use valet_policy::{
    ConditionValues, Effect, MAX_INLINE_POLICIES, POLICY_VERSION, PolicyDocument, PolicyError,
    Statement,
};

use crate::crd::ValidGrant;

/// The inline S3 policy for the grants: nothing wider than each prefix.
pub fn access_policy(
    partition: &str,
    grants: &[ValidGrant],
) -> Result<PolicyDocument, PolicyError> {
    let mut statement = Vec::new();
    for (i, g) in grants.iter().enumerate() {
        let bucket = format!("arn:{partition}:s3:::{}", g.name);
        let prefix = g.prefix.as_deref().unwrap_or("");
        let objects = format!("{bucket}/{prefix}*");
        let allow = |sid: String, action: &[&str], resource: &str, condition| Statement {
            sid: Some(sid),
            resource: Some(vec![resource.to_string()]),
            condition,
            ..Statement::new(Effect::Allow, action)
        };
        if g.access.reads() {
            statement.push(allow(
                format!("Read{i}"),
                &["s3:GetObject", "s3:GetObjectVersion"],
                &objects,
                None,
            ));
            // Without a prefix the whole bucket is granted, so listing needs no condition.
            let list_condition = (!prefix.is_empty()).then(|| {
                BTreeMap::from([(
                    "StringLike".to_string(),
                    BTreeMap::from([(
                        "s3:prefix".to_string(),
                        ConditionValues::one(format!("{prefix}*")),
                    )]),
                )])
            });
            statement.push(allow(
                format!("List{i}"),
                &["s3:ListBucket"],
                &bucket,
                list_condition,
            ));
        }
        if g.access.writes() {
            statement.push(allow(
                format!("Write{i}"),
                &[
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                &objects,
                None,
            ));
            statement.push(allow(
                format!("Uploads{i}"),
                &["s3:ListBucketMultipartUploads"],
                &bucket,
                None,
            ));
        }
    }
    let doc = PolicyDocument {
        version: POLICY_VERSION.into(),
        statement,
    };
    doc.check_size("inline access", MAX_INLINE_POLICIES)?;
    Ok(doc)
}
