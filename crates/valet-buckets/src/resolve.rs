//! A claim, its class and its namespace -> the bucket it gets (pure): the
//! one decision the controller and `valet broker apply` share.

use std::collections::BTreeMap;

use crate::class::{ClassError, NotPermitted, ValidClass};
use crate::crd::{BucketClaim, BucketClass};
use crate::desired::DesiredBucket;

/// The broker's defaults for what a class leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub cluster: String,
    pub bucket_account: Option<String>,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "BucketClaim {namespace}/{claim}: BucketClass {class} does not exist (kubectl get bucketclasses lists them)"
    )]
    ClassNotFound {
        namespace: String,
        claim: String,
        class: String,
    },
    #[error("BucketClaim {namespace}/{claim}: {source}")]
    InvalidClass {
        namespace: String,
        claim: String,
        source: ClassError,
    },
    #[error("BucketClaim {namespace}/{claim}: {source}")]
    NotPermitted {
        namespace: String,
        claim: String,
        source: NotPermitted,
    },
    #[error(
        "BucketClaim {namespace}/{claim}: BucketClass {class} names no spec.bucketAccount and the broker has no default (set defaultBucketAccount in the broker config)"
    )]
    NoAccount {
        namespace: String,
        claim: String,
        class: String,
    },
}

impl ClaimError {
    /// A short CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            ClaimError::ClassNotFound { .. } => "ClassNotFound",
            ClaimError::InvalidClass { .. } => "InvalidClass",
            ClaimError::NotPermitted { .. } => "NotPermitted",
            ClaimError::NoAccount { .. } => "NoBucketAccount",
        }
    }
}

/// Checks every class once, by name.
pub fn valid_classes(classes: &[BucketClass]) -> BTreeMap<String, Result<ValidClass, ClassError>> {
    classes
        .iter()
        .map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            let valid = ValidClass::new(&name, &c.spec);
            (name, valid)
        })
        .collect()
}

/// The bucket for `claim`, when its class exists, is valid and lets the
/// claim's namespace (with `labels`) claim. Deny by default.
pub fn resolve(
    claim: &BucketClaim,
    classes: &BTreeMap<String, Result<ValidClass, ClassError>>,
    labels: &BTreeMap<String, String>,
    defaults: &Defaults,
) -> Result<DesiredBucket, ClaimError> {
    let namespace = claim
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = claim.metadata.name.clone().unwrap_or_default();
    let class_name = &claim.spec.bucket_class_name;
    let class = match classes.get(class_name) {
        None => {
            return Err(ClaimError::ClassNotFound {
                namespace,
                claim: name,
                class: class_name.clone(),
            });
        }
        Some(Err(e)) => {
            return Err(ClaimError::InvalidClass {
                namespace,
                claim: name,
                source: e.clone(),
            });
        }
        Some(Ok(c)) => c,
    };
    if let Err(source) = class.permits(&namespace, labels) {
        return Err(ClaimError::NotPermitted {
            namespace,
            claim: name,
            source,
        });
    }
    let Some(account) = class
        .bucket_account
        .as_ref()
        .or(defaults.bucket_account.as_ref())
    else {
        return Err(ClaimError::NoAccount {
            namespace,
            claim: name,
            class: class_name.clone(),
        });
    };
    let region = class.region.as_deref().unwrap_or(&defaults.region);
    Ok(DesiredBucket::new(
        class,
        &defaults.cluster,
        &namespace,
        &name,
        account,
        region,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(ns: &str, name: &str, class: &str) -> BucketClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketClaim",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"bucketClassName": class}
        }))
        .expect("claim")
    }

    fn classes() -> BTreeMap<String, Result<ValidClass, ClassError>> {
        let c: BucketClass = serde_json::from_value(serde_json::json!({
            "apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketClass",
            "metadata": {"name": "standard"},
            "spec": {"namespaces": ["team-*"], "region": "eu-central-1"}
        }))
        .expect("class");
        valid_classes(&[c])
    }

    fn defaults() -> Defaults {
        Defaults {
            cluster: "prod".into(),
            bucket_account: Some("222222222222".into()),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn a_permitted_claim_gets_its_bucket_with_the_class_region_and_default_account() {
        let d = resolve(
            &claim("team-a", "media", "standard"),
            &classes(),
            &BTreeMap::new(),
            &defaults(),
        )
        .expect("resolved");
        assert_eq!(d.name, "prod-team-a-media");
        assert_eq!(d.region, "eu-central-1");
        assert_eq!(d.account, "222222222222");
        assert_eq!(d.arn, "arn:aws:s3:::prod-team-a-media");
    }

    #[test]
    fn refusals_have_reasons() {
        let r =
            |c: &BucketClaim| resolve(c, &classes(), &BTreeMap::new(), &defaults()).unwrap_err();
        assert_eq!(r(&claim("other", "x", "standard")).reason(), "NotPermitted");
        assert_eq!(
            r(&claim("team-a", "x", "premium")).reason(),
            "ClassNotFound"
        );
        let mut d = defaults();
        d.bucket_account = None;
        let e = resolve(
            &claim("team-a", "x", "standard"),
            &classes(),
            &BTreeMap::new(),
            &d,
        )
        .unwrap_err();
        assert!(e.to_string().contains("defaultBucketAccount"), "{e}");
    }
}
