//! The S3 calls of a claim: observe (reads only), apply a plan, delete.
//!
//! Ownership is proved before anything else: a bucket is read beyond its
//! tags, changed or deleted only when the tags name this cluster, namespace
//! and claim. Steady state is one HeadBucket, the tags and six reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectOwnership, OwnershipControls,
    OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging, VersioningConfiguration,
};

use crate::desired::{DesiredBucket, Rule, Settings, Sse, Versioning};
use crate::plan::{Change, Observed};
use crate::probe::{CallProbe, ProbeInterceptor};
use crate::status::Failure;

/// What a failed S3 call means for a claim.
#[derive(Debug, Clone, thiserror::Error)]
pub enum S3Error {
    #[error(
        "S3 {op} on {bucket} was denied ({message}): give the provisioning role s3:{op} on the broker's buckets (valet broker iam-policy prints the policy)"
    )]
    AccessDenied {
        op: &'static str,
        bucket: String,
        message: String,
    },
    #[error("S3 {op} on {bucket} was throttled after retries ({message}); will retry later")]
    Throttled {
        op: &'static str,
        bucket: String,
        message: String,
    },
    #[error(
        "S3 endpoint unreachable during {op} on {bucket} ({message}): check network access and the S3 endpoint override"
    )]
    Unreachable {
        op: &'static str,
        bucket: String,
        message: String,
    },
    #[error("S3 {op} on {bucket}: {code}: {message}")]
    Service {
        op: &'static str,
        bucket: String,
        code: String,
        message: String,
    },
    #[error("S3 {op} on {bucket}: cannot build the request: {message}")]
    Build {
        op: &'static str,
        bucket: String,
        message: String,
    },
}

impl S3Error {
    /// A short CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            S3Error::AccessDenied { .. } => "S3AccessDenied",
            S3Error::Throttled { .. } => "S3Throttled",
            S3Error::Unreachable { .. } => "S3Unreachable",
            S3Error::Service { .. } | S3Error::Build { .. } => "S3Error",
        }
    }

    pub fn failure(&self) -> Failure {
        match self {
            S3Error::Throttled { .. } | S3Error::Unreachable { .. } => Failure::Transient,
            S3Error::AccessDenied { .. } | S3Error::Service { .. } | S3Error::Build { .. } => {
                Failure::Error
            }
        }
    }
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Removed,
    /// There was no bucket under the name.
    AlreadyGone,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeleteError {
    #[error(
        "bucket {bucket} still holds objects: deletionPolicy Delete removes only empty buckets (empty it, or set deletionPolicy: Retain in the BucketClass)"
    )]
    NotEmpty { bucket: String },
    #[error("bucket {bucket} is not ours ({why}): it is never deleted")]
    NotOwned { bucket: String, why: String },
    #[error(transparent)]
    S3(#[from] S3Error),
}

impl DeleteError {
    pub fn reason(&self) -> &'static str {
        match self {
            DeleteError::NotEmpty { .. } => "BucketNotEmpty",
            DeleteError::NotOwned { .. } => "BucketNameClash",
            DeleteError::S3(e) => e.reason(),
        }
    }
}

/// The S3 operations of one bucket account and region, counted.
#[derive(Clone, Debug)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    probe: Arc<CallProbe>,
}

impl S3 {
    /// Wraps a client config (credentials, region, endpoint): adds the probe;
    /// path-style addressing when an endpoint override is given (moto, MinIO).
    pub fn new(
        builder: aws_sdk_s3::config::Builder,
        endpoint: Option<&str>,
        probe: Arc<CallProbe>,
    ) -> S3 {
        let mut builder = builder.interceptor(ProbeInterceptor(probe.clone()));
        if let Some(url) = endpoint {
            builder = builder.endpoint_url(url).force_path_style(true);
        }
        S3 {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            probe,
        }
    }

    pub fn probe(&self) -> &Arc<CallProbe> {
        &self.probe
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// What is under the desired bucket's name (reads only).
    pub async fn observe(&self, desired: &DesiredBucket) -> Result<Observed, S3Error> {
        let b = desired.name.as_str();
        let region = match self.client.head_bucket().bucket(b).send().await {
            Ok(out) => out.bucket_region().unwrap_or(&desired.region).to_string(),
            Err(e) => match status(&e) {
                Some(404) => return Ok(Observed::Absent),
                Some(403) => {
                    return Ok(Observed::Foreign {
                        why: "the name is taken by a bucket this account cannot read (another account's)".into(),
                    });
                }
                Some(301) => {
                    return Ok(Observed::Foreign {
                        why: "the name is taken by a bucket in another region".into(),
                    });
                }
                _ => return Err(classify("HeadBucket", b, e)),
            },
        };
        let tags = self.tags(b).await?;
        if !desired.owns(&tags) {
            return Ok(Observed::Foreign {
                why: foreign_why(&tags),
            });
        }
        let settings = Settings {
            public_access_blocked: self.public_access_blocked(b).await?,
            owner_enforced: self.owner_enforced(b).await?,
            encryption: self.encryption(b).await?,
            versioning: self.versioning(b).await?,
            lifecycle: self.lifecycle(b).await?,
            policy: self.policy(b).await?,
            tags,
        };
        Ok(Observed::Owned { region, settings })
    }

    /// Runs the changes of a plan, in order.
    pub async fn apply(&self, desired: &DesiredBucket, changes: &[Change]) -> Result<(), S3Error> {
        for change in changes {
            self.apply_one(desired, change).await?;
        }
        Ok(())
    }

    async fn apply_one(&self, d: &DesiredBucket, change: &Change) -> Result<(), S3Error> {
        let b = d.name.as_str();
        let op = change.operation();
        let build = |e: aws_smithy_types::error::operation::BuildError| S3Error::Build {
            op,
            bucket: b.to_string(),
            message: e.to_string(),
        };
        match change {
            Change::Create => {
                let mut conf = CreateBucketConfiguration::builder();
                // us-east-1 is the one region S3 refuses as a location constraint.
                if d.region != "us-east-1" {
                    conf =
                        conf.location_constraint(BucketLocationConstraint::from(d.region.as_str()));
                }
                for t in to_tags(&d.settings.tags).map_err(build)? {
                    conf = conf.tags(t);
                }
                self.client
                    .create_bucket()
                    .bucket(b)
                    .create_bucket_configuration(conf.build())
                    .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("CreateBucket", b, e))
            }
            Change::Tags { to, .. } => {
                let tagging = Tagging::builder()
                    .set_tag_set(Some(to_tags(to).map_err(build)?))
                    .build()
                    .map_err(build)?;
                self.client
                    .put_bucket_tagging()
                    .bucket(b)
                    .tagging(tagging)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(op, b, e))
            }
            Change::PublicAccessBlock => self
                .client
                .put_public_access_block()
                .bucket(b)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .ignore_public_acls(true)
                        .block_public_policy(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(op, b, e)),
            Change::OwnershipControls => {
                let rule = OwnershipControlsRule::builder()
                    .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                    .build()
                    .map_err(build)?;
                let controls = OwnershipControls::builder()
                    .rules(rule)
                    .build()
                    .map_err(build)?;
                self.client
                    .put_bucket_ownership_controls()
                    .bucket(b)
                    .ownership_controls(controls)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(op, b, e))
            }
            Change::Policy { to, .. } => self
                .client
                .put_bucket_policy()
                .bucket(b)
                .policy(to.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(op, b, e)),
            Change::Encryption(sse) => {
                let (algorithm, key, bucket_key) = match sse {
                    Sse::Kms {
                        key_arn,
                        bucket_key,
                    } => (
                        ServerSideEncryption::AwsKms,
                        Some(key_arn.clone()),
                        *bucket_key,
                    ),
                    _ => (ServerSideEncryption::Aes256, None, false),
                };
                let default = ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(algorithm)
                    .set_kms_master_key_id(key)
                    .build()
                    .map_err(build)?;
                let rule = ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .bucket_key_enabled(bucket_key)
                    .build();
                let conf = ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .map_err(build)?;
                self.client
                    .put_bucket_encryption()
                    .bucket(b)
                    .server_side_encryption_configuration(conf)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(op, b, e))
            }
            Change::Versioning(v) => {
                let status = match v {
                    Versioning::Enabled => BucketVersioningStatus::Enabled,
                    _ => BucketVersioningStatus::Suspended,
                };
                self.client
                    .put_bucket_versioning()
                    .bucket(b)
                    .versioning_configuration(
                        VersioningConfiguration::builder().status(status).build(),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(op, b, e))
            }
            Change::Lifecycle(rules) => {
                let mut conf = BucketLifecycleConfiguration::builder();
                for r in rules {
                    let mut rule = LifecycleRule::builder()
                        .id(&r.id)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .status(ExpirationStatus::Enabled);
                    if let Some(days) = r.abort_multipart_days {
                        rule = rule.abort_incomplete_multipart_upload(
                            AbortIncompleteMultipartUpload::builder()
                                .days_after_initiation(days)
                                .build(),
                        );
                    }
                    if let Some(days) = r.noncurrent_expiration_days {
                        rule = rule.noncurrent_version_expiration(
                            NoncurrentVersionExpiration::builder()
                                .noncurrent_days(days)
                                .build(),
                        );
                    }
                    conf = conf.rules(rule.build().map_err(build)?);
                }
                self.client
                    .put_bucket_lifecycle_configuration()
                    .bucket(b)
                    .lifecycle_configuration(conf.build().map_err(build)?)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(op, b, e))
            }
            Change::DeleteLifecycle => self
                .client
                .delete_bucket_lifecycle()
                .bucket(b)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(op, b, e)),
        }
    }

    /// Deletes the claim's bucket when it is ours and empty.
    pub async fn delete(&self, desired: &DesiredBucket) -> Result<Deleted, DeleteError> {
        let b = desired.name.as_str();
        match self.client.head_bucket().bucket(b).send().await {
            Ok(_) => {}
            Err(e) if status(&e) == Some(404) => return Ok(Deleted::AlreadyGone),
            Err(e) if matches!(status(&e), Some(403 | 301)) => {
                return Err(DeleteError::NotOwned {
                    bucket: b.to_string(),
                    why: "the name belongs to a bucket this account cannot read".into(),
                });
            }
            Err(e) => return Err(classify("HeadBucket", b, e).into()),
        }
        let tags = self.tags(b).await?;
        if !desired.owns(&tags) {
            return Err(DeleteError::NotOwned {
                bucket: b.to_string(),
                why: foreign_why(&tags),
            });
        }
        // Versions and delete markers count too: S3 refuses to delete a
        // bucket that holds any.
        let listed = self
            .client
            .list_object_versions()
            .bucket(b)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| classify("ListObjectVersions", b, e))?;
        if !listed.versions().is_empty() || !listed.delete_markers().is_empty() {
            return Err(DeleteError::NotEmpty {
                bucket: b.to_string(),
            });
        }
        match self.client.delete_bucket().bucket(b).send().await {
            Ok(_) => Ok(Deleted::Removed),
            Err(e) if e.code() == Some("BucketNotEmpty") => Err(DeleteError::NotEmpty {
                bucket: b.to_string(),
            }),
            Err(e) if status(&e) == Some(404) => Ok(Deleted::AlreadyGone),
            Err(e) => Err(classify("DeleteBucket", b, e).into()),
        }
    }

    async fn tags(&self, b: &str) -> Result<BTreeMap<String, String>, S3Error> {
        match self.client.get_bucket_tagging().bucket(b).send().await {
            Ok(out) => Ok(out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()),
            Err(e) if e.code() == Some("NoSuchTagSet") => Ok(BTreeMap::new()),
            Err(e) => Err(classify("GetBucketTagging", b, e)),
        }
    }

    async fn public_access_blocked(&self, b: &str) -> Result<bool, S3Error> {
        match self.client.get_public_access_block().bucket(b).send().await {
            Ok(out) => Ok(out.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            })),
            Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => Ok(false),
            Err(e) => Err(classify("GetPublicAccessBlock", b, e)),
        }
    }

    async fn owner_enforced(&self, b: &str) -> Result<bool, S3Error> {
        match self
            .client
            .get_bucket_ownership_controls()
            .bucket(b)
            .send()
            .await
        {
            Ok(out) => Ok(out.ownership_controls().is_some_and(|c| {
                !c.rules().is_empty()
                    && c.rules()
                        .iter()
                        .all(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced)
            })),
            Err(e) if e.code() == Some("OwnershipControlsNotFoundError") => Ok(false),
            Err(e) => Err(classify("GetBucketOwnershipControls", b, e)),
        }
    }

    async fn encryption(&self, b: &str) -> Result<Sse, S3Error> {
        let out = match self.client.get_bucket_encryption().bucket(b).send().await {
            Ok(out) => out,
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
                return Ok(Sse::None);
            }
            Err(e) => return Err(classify("GetBucketEncryption", b, e)),
        };
        let rules = out
            .server_side_encryption_configuration()
            .map(|c| c.rules())
            .unwrap_or_default();
        let [rule] = rules else {
            return Ok(if rules.is_empty() {
                Sse::None
            } else {
                Sse::Other("several rules".into())
            });
        };
        let Some(default) = rule.apply_server_side_encryption_by_default() else {
            return Ok(Sse::None);
        };
        Ok(match default.sse_algorithm() {
            ServerSideEncryption::Aes256 => Sse::Aes256,
            ServerSideEncryption::AwsKms => Sse::Kms {
                key_arn: default.kms_master_key_id().unwrap_or_default().to_string(),
                bucket_key: rule.bucket_key_enabled() == Some(true),
            },
            other => Sse::Other(other.as_str().to_string()),
        })
    }

    async fn versioning(&self, b: &str) -> Result<Versioning, S3Error> {
        let status = match self.client.get_bucket_versioning().bucket(b).send().await {
            Ok(out) => out.status().map(|s| s.as_str().to_string()),
            // S3-compatible servers (moto among them) wrap the answer in a
            // <GetBucketVersioningResponse> root, which the SDK refuses; the
            // <Status> element inside is the same, so it is read from the
            // raw 200 body.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 200 => {
                let body = e.raw().body().bytes().unwrap_or_default();
                let text = String::from_utf8_lossy(body);
                text.split_once("<Status>")
                    .and_then(|(_, rest)| rest.split_once("</Status>"))
                    .map(|(status, _)| status.to_string())
            }
            Err(e) => return Err(classify("GetBucketVersioning", b, e)),
        };
        Ok(match status.as_deref() {
            Some("Enabled") => Versioning::Enabled,
            Some("Suspended") => Versioning::Suspended,
            _ => Versioning::Off,
        })
    }

    async fn lifecycle(&self, b: &str) -> Result<Vec<Rule>, S3Error> {
        let out = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(b)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => return Ok(Vec::new()),
            Err(e) => return Err(classify("GetBucketLifecycleConfiguration", b, e)),
        };
        let mut rules: Vec<Rule> = out
            .rules()
            .iter()
            .map(|r| {
                // The legacy top-level prefix still limits a rule on old buckets.
                #[allow(deprecated)]
                let legacy_prefix = r.prefix().unwrap_or_default().is_empty();
                let whole_bucket = r.filter().is_none_or(|f| {
                    f.prefix().unwrap_or_default().is_empty()
                        && f.tag().is_none()
                        && f.and().is_none()
                        && f.object_size_greater_than().is_none()
                        && f.object_size_less_than().is_none()
                }) && legacy_prefix;
                Rule {
                    id: r.id().unwrap_or_default().to_string(),
                    abort_multipart_days: r
                        .abort_incomplete_multipart_upload()
                        .and_then(|a| a.days_after_initiation()),
                    noncurrent_expiration_days: r
                        .noncurrent_version_expiration()
                        .and_then(|n| n.noncurrent_days()),
                    other: !whole_bucket
                        || r.status() != &ExpirationStatus::Enabled
                        || r.expiration().is_some()
                        || !r.transitions().is_empty()
                        || !r.noncurrent_version_transitions().is_empty(),
                }
            })
            .collect();
        rules.sort();
        Ok(rules)
    }

    async fn policy(&self, b: &str) -> Result<Option<serde_json::Value>, S3Error> {
        match self.client.get_bucket_policy().bucket(b).send().await {
            // A policy that does not parse is drift like any other.
            Ok(out) => Ok(Some(
                serde_json::from_str(out.policy().unwrap_or_default())
                    .unwrap_or(serde_json::Value::Null),
            )),
            Err(e) if e.code() == Some("NoSuchBucketPolicy") => Ok(None),
            Err(e) => Err(classify("GetBucketPolicy", b, e)),
        }
    }
}

fn to_tags(
    tags: &BTreeMap<String, String>,
) -> Result<Vec<Tag>, aws_smithy_types::error::operation::BuildError> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Says whose a bucket is, from its tags.
fn foreign_why(tags: &BTreeMap<String, String>) -> String {
    use crate::desired::{MANAGED_BY, TAG_CLAIM, TAG_CLUSTER, TAG_MANAGED_BY, TAG_NAMESPACE};
    if tags.get(TAG_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
        return "it exists without storage-valet's ownership tags".into();
    }
    let get = |k| tags.get(k).map(String::as_str).unwrap_or("?");
    format!(
        "it belongs to BucketClaim {}/{} of cluster {}",
        get(TAG_NAMESPACE),
        get(TAG_CLAIM),
        get(TAG_CLUSTER)
    )
}

fn status<E, R: HttpStatus>(e: &SdkError<E, R>) -> Option<u16> {
    match e {
        SdkError::ServiceError(s) => Some(s.raw().status_code()),
        SdkError::ResponseError(r) => Some(r.raw().status_code()),
        _ => None,
    }
}

/// The HTTP status of a raw response (the SDK's response type).
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    bucket: &str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> S3Error {
    let bucket = bucket.to_string();
    let text = valet_aws::AwsErrorText::of(&err);
    match text.code.as_str() {
        "Unreachable" | "Timeout" => S3Error::Unreachable {
            op,
            bucket,
            message: text.message,
        },
        c if valet_aws::is_throttle_code(c) => S3Error::Throttled {
            op,
            bucket,
            message: text.to_string(),
        },
        "AccessDenied" | "AccessDeniedException" => S3Error::AccessDenied {
            op,
            bucket,
            message: text.to_string(),
        },
        _ => S3Error::Service {
            op,
            bucket,
            code: text.code,
            message: text.message,
        },
    }
}
