//! ServiceAccount annotations -> the identity the webhook injects.
//!
//! Parsed once per ServiceAccount change (the webhook caches the result, not
//! the object), so the admission path never re-parses annotations.

use std::collections::BTreeMap;

use crate::arn::RoleArn;
use crate::bucket::{self, BucketRef};
use crate::consts::{ANN_BUCKET, ANN_BUCKET_REGION, ANN_BUCKETS};
use crate::settings::{AnnotationKeys, clamp_expiration, parse_go_bool};

/// What was wrong with one annotation, worded for the kubectl user who sees it
/// as an admission warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationProblem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for AnnotationProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "annotation {}: {}", self.key, self.message)
    }
}

/// The parsed, validated annotations of one ServiceAccount. Fields hold only
/// what the annotations set; `None` means "the webhook flag's default", which
/// keeps the cached entry small.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaConfig {
    /// A valid role ARN; `None` when absent or invalid (see `problems`).
    pub role_arn: Option<Box<str>>,
    pub audience: Option<Box<str>>,
    pub regional_sts: Option<bool>,
    /// Clamped to [600, 86400].
    pub token_expiration: Option<i64>,
    /// Bucket env vars (`S3_BUCKET`, ...) in a stable order.
    pub bucket_env: Box<[(Box<str>, Box<str>)]>,
    /// A valid `storage-valet.dev/bucket-region`: the containers' AWS_REGION
    /// and AWS_DEFAULT_REGION when --aws-default-region is not set (SDKs
    /// read no S3_REGION, and STS needs a region).
    pub bucket_region: Option<Box<str>>,
    /// `bucket_env` as the JSON object recorded on mutated pods (sorted
    /// keys), built once here instead of for every pod.
    pub bucket_env_json: Box<str>,
    pub problems: Box<[AnnotationProblem]>,
}

impl SaConfig {
    /// Parses the annotations that matter; every other annotation is ignored.
    pub fn from_annotations(
        annotations: &BTreeMap<String, String>,
        keys: &AnnotationKeys,
    ) -> SaConfig {
        let mut cfg = SaConfig::default();
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(AnnotationProblem {
                key: key.to_string(),
                message,
            })
        };

        if let Some(v) = annotations.get(&keys.role_arn) {
            match RoleArn::parse(v.trim()) {
                Ok(arn) => cfg.role_arn = Some(arn.as_str().into()),
                Err(e) => problem(
                    &keys.role_arn,
                    format!("{e}; the pod gets no AWS credentials"),
                ),
            }
        }
        if let Some(v) = annotations.get(&keys.audience) {
            if v.trim().is_empty() {
                problem(
                    &keys.audience,
                    "is empty; using the default audience".into(),
                );
            } else {
                cfg.audience = Some(v.trim().into());
            }
        }
        if let Some(v) = annotations.get(&keys.sts_regional_endpoints) {
            match parse_go_bool(v.trim()) {
                Ok(b) => cfg.regional_sts = Some(b),
                Err(e) => problem(
                    &keys.sts_regional_endpoints,
                    format!("{e}; using the --sts-regional-endpoint default"),
                ),
            }
        }
        if let Some(v) = annotations.get(&keys.token_expiration) {
            match parse_expiration(v) {
                Ok(s) => cfg.token_expiration = Some(s),
                Err(e) => problem(
                    &keys.token_expiration,
                    format!("{e}; using the --token-expiration default"),
                ),
            }
        }

        let single = annotations
            .get(ANN_BUCKET)
            .and_then(|v| match BucketRef::parse(v) {
                Ok(b) => Some(b),
                Err(e) => {
                    problem(ANN_BUCKET, format!("{e}; S3_BUCKET is not injected"));
                    None
                }
            });
        let list = annotations
            .get(ANN_BUCKETS)
            .and_then(|v| match bucket::parse_bucket_list(v) {
                Ok(l) => Some(l),
                Err(e) => {
                    problem(
                        ANN_BUCKETS,
                        format!("{e} (expected ALIAS=NAME[/PREFIX],...); no S3_BUCKET_<ALIAS> is injected"),
                    );
                    None
                }
            })
            .unwrap_or_default();
        let region = annotations.get(ANN_BUCKET_REGION).and_then(|v| {
            let v = v.trim();
            match bucket::validate_region(v) {
                Ok(()) => Some(v),
                Err(e) => {
                    problem(ANN_BUCKET_REGION, format!("{e}; S3_REGION is not injected"));
                    None
                }
            }
        });
        cfg.bucket_region = region.map(Into::into);
        cfg.bucket_env = bucket::bucket_env(single.as_ref(), &list, region)
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect();
        if !cfg.bucket_env.is_empty() {
            cfg.bucket_env_json = crate::mutate::bucket_env_json(&cfg.bucket_env).into();
        }
        cfg.problems = problems.into();
        cfg
    }

    /// True when nothing relevant was annotated: the cache can share one value.
    pub fn is_empty(&self) -> bool {
        *self == SaConfig::default()
    }
}

/// Parses a token lifetime in seconds and clamps it to [600, 86400].
pub fn parse_expiration(value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map(clamp_expiration)
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> SaConfig {
        let ann = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SaConfig::from_annotations(&ann, &AnnotationKeys::new("eks.amazonaws.com"))
    }

    #[test]
    fn full_annotation_set() {
        let c = cfg(&[
            (
                "eks.amazonaws.com/role-arn",
                "arn:aws:iam::111122223333:role/app",
            ),
            ("eks.amazonaws.com/audience", "my-aud"),
            ("eks.amazonaws.com/sts-regional-endpoints", "true"),
            ("eks.amazonaws.com/token-expiration", "100000"),
            ("storage-valet.dev/bucket", "acme/team-a/"),
            ("storage-valet.dev/buckets", "logs=acme-logs"),
            ("storage-valet.dev/bucket-region", "eu-west-1"),
            ("unrelated/annotation", "x"),
        ]);
        assert_eq!(
            c.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/app")
        );
        assert_eq!(c.audience.as_deref(), Some("my-aud"));
        assert_eq!(c.regional_sts, Some(true));
        assert_eq!(c.token_expiration, Some(86_400));
        let env: Vec<_> = c
            .bucket_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            env,
            [
                "S3_BUCKET=acme",
                "S3_PREFIX=team-a/",
                "S3_BUCKET_LOGS=acme-logs",
                "S3_REGION=eu-west-1"
            ]
        );
        assert!(c.problems.is_empty());
    }

    #[test]
    fn invalid_values_are_problems_not_silent_defaults() {
        let c = cfg(&[
            ("eks.amazonaws.com/role-arn", "my-role"),
            ("eks.amazonaws.com/sts-regional-endpoints", "yes"),
            ("eks.amazonaws.com/token-expiration", "1h"),
            ("storage-valet.dev/bucket", "Bad_Bucket"),
            ("storage-valet.dev/bucket-region", "mars"),
        ]);
        assert_eq!(c.role_arn, None);
        assert_eq!(c.regional_sts, None);
        assert_eq!(c.token_expiration, None);
        assert!(c.bucket_env.is_empty());
        let keys: Vec<_> = c.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "eks.amazonaws.com/role-arn",
                "eks.amazonaws.com/sts-regional-endpoints",
                "eks.amazonaws.com/token-expiration",
                "storage-valet.dev/bucket",
                "storage-valet.dev/bucket-region"
            ]
        );
        assert!(
            c.problems[0].to_string().contains("is not a role ARN"),
            "{}",
            c.problems[0]
        );
    }

    #[test]
    fn expiry_is_clamped() {
        assert_eq!(parse_expiration("1"), Ok(600));
        assert_eq!(parse_expiration("3600"), Ok(3600));
        assert_eq!(parse_expiration("999999"), Ok(86_400));
        assert!(parse_expiration("ten").is_err());
    }

    #[test]
    fn unannotated_is_empty() {
        assert!(cfg(&[("foo", "bar")]).is_empty());
        assert!(!cfg(&[("eks.amazonaws.com/audience", "x")]).is_empty());
    }
}
