//! A BucketClass checked once: what the rest of the crate works from, and
//! who may claim it (deny by default, like RBAC: a class that names no
//! namespace and no selector lets nobody claim).

use std::collections::BTreeMap;

use valet_core::bucket::validate_region;

use crate::crd::{
    BucketClassSpec, DeletionPolicy, EncryptionType, LabelOperator, LabelSelector, LifecycleSpec,
};
use crate::naming::{TemplateError, validate_template};

/// Tag keys under this prefix are the broker's (ownership); a class may not set them.
pub const OWN_TAG_PREFIX: &str = "storage-valet.dev/";
/// S3 allows 50 tags per bucket; our ownership tags take 4.
pub const MAX_CLASS_TAGS: usize = 46;

/// Default encryption of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// SSE-S3.
    Aes256,
    /// SSE-KMS with this key and an S3 Bucket Key.
    Kms { key_arn: String },
}

/// A class that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidClass {
    pub name: String,
    pub bucket_account: Option<String>,
    pub region: Option<String>,
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    pub name_template: String,
    pub encryption: Encryption,
    pub versioning: bool,
    pub lifecycle: LifecycleSpec,
    pub tags: BTreeMap<String, String>,
    pub deletion_policy: DeletionPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    #[error("BucketClass {class}: spec.bucketAccount {value:?} is not a 12-digit AWS account id")]
    Account { class: String, value: String },
    #[error("BucketClass {class}: spec.region {value:?} is not an AWS region (e.g. eu-west-1)")]
    Region { class: String, value: String },
    #[error("BucketClass {class}: {source}")]
    Template {
        class: String,
        source: TemplateError,
    },
    #[error(
        "BucketClass {class}: spec.encryption type aws:kms needs kmsKeyArn (arn:aws:kms:REGION:ACCOUNT:key/ID)"
    )]
    KmsKeyMissing { class: String },
    #[error(
        "BucketClass {class}: spec.encryption.kmsKeyArn {value:?} is not a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/ID or alias/NAME)"
    )]
    KmsKey { class: String, value: String },
    #[error(
        "BucketClass {class}: spec.encryption.kmsKeyArn is only for type aws:kms (remove it, or set type: aws:kms)"
    )]
    KmsKeyWithAes { class: String },
    #[error(
        "BucketClass {class}: spec.lifecycle.{field} is {value}; use 1 to 36500 days, or leave it out"
    )]
    LifecycleDays {
        class: String,
        field: &'static str,
        value: i32,
    },
    #[error(
        "BucketClass {class}: spec.lifecycle.noncurrentVersionExpirationDays needs versioning: true (unversioned buckets have no noncurrent versions)"
    )]
    NoncurrentWithoutVersioning { class: String },
    #[error("BucketClass {class}: spec.tags {key:?}: {why}")]
    Tag {
        class: String,
        key: String,
        why: &'static str,
    },
    #[error("BucketClass {class}: spec.namespaces has an empty entry")]
    EmptyNamespace { class: String },
}

impl ValidClass {
    pub fn new(name: &str, spec: &BucketClassSpec) -> Result<ValidClass, ClassError> {
        let class = || name.to_string();
        if let Some(a) = &spec.bucket_account
            && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ClassError::Account {
                class: class(),
                value: a.clone(),
            });
        }
        if let Some(r) = &spec.region
            && validate_region(r).is_err()
        {
            return Err(ClassError::Region {
                class: class(),
                value: r.clone(),
            });
        }
        validate_template(&spec.name_template).map_err(|source| ClassError::Template {
            class: class(),
            source,
        })?;
        let encryption = match &spec.encryption {
            None => Encryption::Aes256,
            Some(e) => match (e.type_, &e.kms_key_arn) {
                (EncryptionType::Aes256, None) => Encryption::Aes256,
                (EncryptionType::Aes256, Some(_)) => {
                    return Err(ClassError::KmsKeyWithAes { class: class() });
                }
                (EncryptionType::Kms, None) => {
                    return Err(ClassError::KmsKeyMissing { class: class() });
                }
                (EncryptionType::Kms, Some(key)) if is_kms_key_arn(key) => Encryption::Kms {
                    key_arn: key.clone(),
                },
                (EncryptionType::Kms, Some(key)) => {
                    return Err(ClassError::KmsKey {
                        class: class(),
                        value: key.clone(),
                    });
                }
            },
        };
        let lifecycle = spec.lifecycle.clone().unwrap_or_default();
        for (field, value) in [
            (
                "abortIncompleteMultipartDays",
                lifecycle.abort_incomplete_multipart_days,
            ),
            (
                "noncurrentVersionExpirationDays",
                lifecycle.noncurrent_version_expiration_days,
            ),
        ] {
            if let Some(v) = value
                && !(1..=36500).contains(&v)
            {
                return Err(ClassError::LifecycleDays {
                    class: class(),
                    field,
                    value: v,
                });
            }
        }
        if lifecycle.noncurrent_version_expiration_days.is_some() && !spec.versioning {
            return Err(ClassError::NoncurrentWithoutVersioning { class: class() });
        }
        if spec.tags.len() > MAX_CLASS_TAGS {
            return Err(ClassError::Tag {
                class: class(),
                key: format!("({} tags)", spec.tags.len()),
                why: "S3 allows 50 tags per bucket and the broker needs 4: at most 46",
            });
        }
        for (key, value) in &spec.tags {
            let why = if key.is_empty() || key.chars().count() > 128 {
                Some("a tag key is 1 to 128 characters")
            } else if value.chars().count() > 256 {
                Some("a tag value is at most 256 characters")
            } else if key.starts_with("aws:") {
                Some("keys starting with aws: are reserved by AWS")
            } else if key.starts_with(OWN_TAG_PREFIX) {
                Some("keys under storage-valet.dev/ are the broker's ownership tags")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ClassError::Tag {
                    class: class(),
                    key: key.clone(),
                    why,
                });
            }
        }
        if spec.namespaces.iter().any(String::is_empty) {
            return Err(ClassError::EmptyNamespace { class: class() });
        }
        Ok(ValidClass {
            name: name.to_string(),
            bucket_account: spec.bucket_account.clone(),
            region: spec.region.clone(),
            namespaces: spec.namespaces.clone(),
            namespace_selector: spec.namespace_selector.clone(),
            name_template: spec.name_template.clone(),
            encryption,
            versioning: spec.versioning,
            lifecycle,
            tags: spec.tags.clone(),
            deletion_policy: spec.deletion_policy,
        })
    }

    /// Whether a claim in `namespace` (with these labels) may use this class.
    pub fn permits(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), NotPermitted> {
        let by_name = self.namespaces.iter().any(|g| glob_match(g, namespace));
        let by_labels = self
            .namespace_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, labels));
        if by_name || by_labels {
            Ok(())
        } else {
            Err(NotPermitted {
                class: self.name.clone(),
                namespace: namespace.to_string(),
            })
        }
    }
}

/// A claim that its class does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "BucketClass {class} does not allow claims from namespace {namespace}: its spec.namespaces and spec.namespaceSelector do not match (ask the platform team to add the namespace, or use another class)"
)]
pub struct NotPermitted {
    pub class: String,
    pub namespace: String,
}

fn is_kms_key_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && validate_region(parts[3]).is_ok()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && (parts[5].strip_prefix("key/").is_some_and(|k| !k.is_empty())
            || parts[5]
                .strip_prefix("alias/")
                .is_some_and(|k| !k.is_empty()))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == s;
    };
    let Some(mut tail) = s.strip_prefix(first) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or_default();
    for piece in pieces {
        match tail.find(piece) {
            Some(i) => tail = &tail[i + piece.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

/// Kubernetes label selector semantics; an empty selector matches everything.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator {
                LabelOperator::In => value.is_some_and(|v| e.values.contains(v)),
                LabelOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                LabelOperator::Exists => value.is_some(),
                LabelOperator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BucketClassSpec {
        serde_yaml_ng::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn globs() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(!glob_match("team-*", "other"));
        assert!(glob_match("ab*ab", "ab"[..].repeat(2).as_str()));
        assert!(!glob_match("ab*ab", "ab"));
    }

    #[test]
    fn nobody_may_claim_a_class_that_names_no_one() {
        let c = ValidClass::new("c", &spec("{}")).expect("valid");
        assert!(c.permits("team-a", &BTreeMap::new()).is_err());
    }

    #[test]
    fn namespaces_and_selector_add_up() {
        let c = ValidClass::new(
            "c",
            &spec("namespaces: [team-*]\nnamespaceSelector: {matchLabels: {tenant: 'true'}}"),
        )
        .expect("valid");
        assert!(c.permits("team-a", &BTreeMap::new()).is_ok());
        let labels = BTreeMap::from([("tenant".to_string(), "true".to_string())]);
        assert!(c.permits("other", &labels).is_ok());
        let err = c.permits("other", &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("namespace other"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_yaml_ng::from_str::<BucketClassSpec>("versoning: true").unwrap_err();
        assert!(err.to_string().contains("versoning"), "{err}");
        let err =
            serde_yaml_ng::from_str::<BucketClassSpec>("encryption: {type: AES256, kmsKey: x}")
                .unwrap_err();
        assert!(err.to_string().contains("kmsKey"), "{err}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = |y| ValidClass::new("c", &spec(y)).unwrap_err().to_string();
        assert!(e("encryption: {type: 'aws:kms'}").contains("kmsKeyArn"));
        assert!(e("encryption: {type: 'aws:kms', kmsKeyArn: nope}").contains("not a KMS key ARN"));
        assert!(
            e("lifecycle: {abortIncompleteMultipartDays: 0}")
                .contains("abortIncompleteMultipartDays")
        );
        assert!(e("lifecycle: {noncurrentVersionExpirationDays: 3}").contains("versioning"));
        assert!(e("tags: {storage-valet.dev/claim: x}").contains("ownership"));
        assert!(e("nameTemplate: '{cluster}'").contains("{namespace}"));
        assert!(e("region: mars").contains("spec.region"));
        let ok = ValidClass::new(
            "c",
            &spec("encryption: {type: 'aws:kms', kmsKeyArn: 'arn:aws:kms:eu-west-1:222222222222:key/abc'}"),
        )
        .expect("valid");
        assert!(matches!(ok.encryption, Encryption::Kms { .. }));
    }
}
