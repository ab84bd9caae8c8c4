//! Observed bucket -> the changes that make it the desired one (pure), and
//! how a reviewer reads them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::desired::{DesiredBucket, Rule, Settings, Sse, Versioning};
use crate::status::Failure;

/// What is there under the bucket's name.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Absent,
    /// Ours (the ownership tags prove it), with what it looks like now.
    Owned {
        region: String,
        settings: Settings,
    },
    /// Not ours: someone else's, or another claim's. Never touched.
    Foreign {
        why: String,
    },
}

/// One S3 write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create,
    Tags {
        from: BTreeMap<String, String>,
        to: BTreeMap<String, String>,
    },
    PublicAccessBlock,
    OwnershipControls,
    Policy {
        from: Option<Value>,
        to: Value,
    },
    Encryption(Sse),
    Versioning(Versioning),
    Lifecycle(Vec<Rule>),
    DeleteLifecycle,
}

/// Whether `changes` make the bucket (rather than repair one that exists).
pub fn creates(changes: &[Change]) -> bool {
    changes.first() == Some(&Change::Create)
}

impl Change {
    /// The S3 operation this change calls.
    pub fn operation(&self) -> &'static str {
        match self {
            Change::Create => "CreateBucket",
            Change::Tags { .. } => "PutBucketTagging",
            Change::PublicAccessBlock => "PutPublicAccessBlock",
            Change::OwnershipControls => "PutBucketOwnershipControls",
            Change::Policy { .. } => "PutBucketPolicy",
            Change::Encryption(_) => "PutBucketEncryption",
            Change::Versioning(_) => "PutBucketVersioning",
            Change::Lifecycle(_) => "PutBucketLifecycleConfiguration",
            Change::DeleteLifecycle => "DeleteBucketLifecycle",
        }
    }

    /// The setting, as Events and conditions name it.
    pub fn setting(&self) -> &'static str {
        match self {
            Change::Create => "bucket",
            Change::Tags { .. } => "tags",
            Change::PublicAccessBlock => "Block Public Access",
            Change::OwnershipControls => "Object Ownership",
            Change::Policy { .. } => "bucket policy",
            Change::Encryption(_) => "default encryption",
            Change::Versioning(_) => "versioning",
            Change::Lifecycle(_) | Change::DeleteLifecycle => "lifecycle",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "bucket {bucket} is not ours: {why}; it is left untouched (choose another nameTemplate in the BucketClass or another claim name)"
    )]
    NotOwned { bucket: String, why: String },
    #[error(
        "bucket {bucket} is ours but in region {found}, not {wanted} (a bucket cannot move: set the BucketClass's region back, or claim a new bucket)"
    )]
    WrongRegion {
        bucket: String,
        found: String,
        wanted: String,
    },
}

impl PlanError {
    pub fn reason(&self) -> &'static str {
        match self {
            PlanError::NotOwned { .. } => "BucketNameClash",
            PlanError::WrongRegion { .. } => "BucketInOtherRegion",
        }
    }

    /// Both are refusals: the claim (or the bucket's owner) must change.
    pub fn failure(&self) -> Failure {
        Failure::Refused
    }
}

/// The changes, in the order they must run: a new bucket is tagged first so
/// that an interrupted creation is still recognised as ours.
pub fn plan(observed: &Observed, desired: &DesiredBucket) -> Result<Vec<Change>, PlanError> {
    let want = &desired.settings;
    let (created, have) = match observed {
        Observed::Foreign { why } => {
            return Err(PlanError::NotOwned {
                bucket: desired.name.clone(),
                why: why.clone(),
            });
        }
        Observed::Owned { region, .. } if region != &desired.region => {
            return Err(PlanError::WrongRegion {
                bucket: desired.name.clone(),
                found: region.clone(),
                wanted: desired.region.clone(),
            });
        }
        Observed::Absent => (true, None),
        Observed::Owned { settings, .. } => (false, Some(settings)),
    };
    let mut out = Vec::new();
    if created {
        out.push(Change::Create);
    }
    let empty = BTreeMap::new();
    let have_tags = have.map_or(&empty, |h| &h.tags);
    if have_tags != &want.tags {
        out.push(Change::Tags {
            from: have_tags.clone(),
            to: want.tags.clone(),
        });
    }
    if have.is_none_or(|h| !h.public_access_blocked) {
        out.push(Change::PublicAccessBlock);
    }
    if have.is_none_or(|h| !h.owner_enforced) {
        out.push(Change::OwnershipControls);
    }
    if let Some(to) = &want.policy
        && have.is_none_or(|h| h.policy.as_ref() != Some(to))
    {
        out.push(Change::Policy {
            from: have.and_then(|h| h.policy.clone()),
            to: to.clone(),
        });
    }
    if have.is_none_or(|h| h.encryption != want.encryption) {
        out.push(Change::Encryption(want.encryption.clone()));
    }
    match have {
        None if want.versioning == Versioning::Enabled => {
            out.push(Change::Versioning(Versioning::Enabled))
        }
        Some(h) if !h.versioning.satisfies(want.versioning) => {
            out.push(Change::Versioning(match want.versioning {
                Versioning::Enabled => Versioning::Enabled,
                _ => Versioning::Suspended,
            }))
        }
        _ => {}
    }
    let have_rules = have.map(|h| h.lifecycle.as_slice()).unwrap_or_default();
    if have_rules != want.lifecycle.as_slice() {
        out.push(if want.lifecycle.is_empty() {
            Change::DeleteLifecycle
        } else {
            Change::Lifecycle(want.lifecycle.clone())
        });
    }
    Ok(out)
}

impl fmt::Display for Change {
    /// One line per change; policy documents and tags as `-`/`+` lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create => write!(f, "create bucket"),
            Change::Tags { from, to } => {
                write!(f, "set tags")?;
                for (k, v) in from {
                    if to.get(k) != Some(v) {
                        write!(f, "\n    - {k}={v}")?;
                    }
                }
                for (k, v) in to {
                    if from.get(k) != Some(v) {
                        write!(f, "\n    + {k}={v}")?;
                    }
                }
                Ok(())
            }
            Change::PublicAccessBlock => write!(
                f,
                "block public access (BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets)"
            ),
            Change::OwnershipControls => {
                write!(f, "object ownership BucketOwnerEnforced (ACLs off)")
            }
            Change::Policy { from, to } => {
                write!(f, "set bucket policy")?;
                write_diff(f, from.as_ref(), to)
            }
            Change::Encryption(sse) => match sse {
                Sse::Kms { key_arn, .. } => {
                    write!(
                        f,
                        "default encryption aws:kms with {key_arn} and a bucket key"
                    )
                }
                other => write!(f, "default encryption {}", sse_name(other)),
            },
            Change::Versioning(v) => write!(f, "versioning {v:?}"),
            Change::Lifecycle(rules) => {
                write!(f, "set lifecycle")?;
                for r in rules {
                    if let Some(d) = r.abort_multipart_days {
                        write!(
                            f,
                            "\n    + abort incomplete multipart uploads after {d} days"
                        )?;
                    }
                    if let Some(d) = r.noncurrent_expiration_days {
                        write!(f, "\n    + expire noncurrent versions after {d} days")?;
                    }
                }
                Ok(())
            }
            Change::DeleteLifecycle => write!(f, "remove lifecycle rules"),
        }
    }
}

fn sse_name(sse: &Sse) -> &str {
    match sse {
        Sse::None => "none",
        Sse::Aes256 => "AES256",
        Sse::Kms { .. } => "aws:kms",
        Sse::Other(s) => s,
    }
}

/// A line diff of two pretty-printed JSON documents.
fn write_diff(f: &mut fmt::Formatter<'_>, from: Option<&Value>, to: &Value) -> fmt::Result {
    for line in json_diff_lines(from, Some(to)) {
        write!(f, "\n    {line}")?;
    }
    Ok(())
}

/// `-`/`+`/` ` lines turning the pretty-printed `from` into `to` (an
/// absent document has no lines).
pub fn json_diff_lines(from: Option<&Value>, to: Option<&Value>) -> Vec<String> {
    let pretty = |v: Option<&Value>| {
        v.map(|v| serde_json::to_string_pretty(v).unwrap_or_default() + "\n")
            .unwrap_or_default()
    };
    let (old, new) = (pretty(from), pretty(to));
    similar::TextDiff::from_lines(&old, &new)
        .iter_all_changes()
        .map(|c| {
            let sign = match c.tag() {
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
                similar::ChangeTag::Equal => ' ',
            };
            format!("{sign} {}", c.value().trim_end_matches('\n'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ValidClass;

    fn desired() -> DesiredBucket {
        let spec = serde_yaml_ng::from_str(
            "namespaces: [team-a]\nversioning: true\nlifecycle: {abortIncompleteMultipartDays: 7}",
        )
        .expect("spec");
        let class = ValidClass::new("standard", &spec).expect("class");
        DesiredBucket::new(
            &class,
            "prod",
            "team-a",
            "media",
            "222222222222",
            "eu-west-1",
        )
    }

    #[test]
    fn a_new_bucket_gets_every_setting_tags_first() {
        let d = desired();
        let ops: Vec<_> = plan(&Observed::Absent, &d)
            .expect("plan")
            .iter()
            .map(Change::operation)
            .collect();
        assert_eq!(
            ops,
            [
                "CreateBucket",
                "PutBucketTagging",
                "PutPublicAccessBlock",
                "PutBucketOwnershipControls",
                "PutBucketPolicy",
                "PutBucketEncryption",
                "PutBucketVersioning",
                "PutBucketLifecycleConfiguration"
            ]
        );
    }

    #[test]
    fn a_bucket_as_desired_needs_nothing_and_drift_is_named() {
        let d = desired();
        let mut settings = d.settings.clone();
        let owned = |s: &Settings| Observed::Owned {
            region: "eu-west-1".into(),
            settings: s.clone(),
        };
        assert!(plan(&owned(&settings), &d).expect("plan").is_empty());
        settings.public_access_blocked = false;
        settings.encryption = Sse::None;
        let changes = plan(&owned(&settings), &d).expect("plan");
        let names: Vec<_> = changes.iter().map(Change::setting).collect();
        assert_eq!(names, ["Block Public Access", "default encryption"]);
    }

    #[test]
    fn foreign_and_moved_buckets_are_refused() {
        let d = desired();
        let e = plan(
            &Observed::Foreign {
                why: "no tags".into(),
            },
            &d,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "BucketNameClash");
        assert_eq!(
            e.failure(),
            Failure::Refused,
            "a retry cannot fix a name clash"
        );
        let e = plan(
            &Observed::Owned {
                region: "us-east-1".into(),
                settings: d.settings.clone(),
            },
            &d,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "BucketInOtherRegion");
        assert_eq!(e.failure(), Failure::Refused);
    }

    #[test]
    fn policy_changes_read_as_a_diff() {
        let d = desired();
        let mut s = d.settings.clone();
        s.policy = Some(serde_json::json!({"Version": "2012-10-17", "Statement": []}));
        let changes = plan(
            &Observed::Owned {
                region: "eu-west-1".into(),
                settings: s,
            },
            &d,
        )
        .expect("plan");
        let text = changes[0].to_string();
        assert!(text.contains("-   \"Statement\": []"), "{text}");
        assert!(
            text.contains("+       \"Sid\": \"StorageValetDenyInsecureTransport\""),
            "{text}"
        );
    }
}
