//! The broker's configuration: a YAML file (`--config`), with flags and env
//! vars overriding single fields (see `cli`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use valet_core::arn::RoleArn;
use valet_core::bucket::validate_region;
use valet_core::consts::{DEFAULT_ANNOTATION_PREFIX, DEFAULT_TOKEN_AUDIENCE};

use crate::naming::{DEFAULT_NAME_PATTERN, DEFAULT_PATH_PATTERN, role_path, validate_cluster};

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerConfig {
    /// Appears in role names, paths and tags; one broker per cluster name.
    pub cluster_name: String,
    /// The cluster's service account issuer; discovered from the API server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer: Option<String>,
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The webhook's `--annotation-prefix`: where the role ARN annotation goes.
    #[serde(default = "default_prefix")]
    pub annotation_prefix: String,
    /// Region of the buckets (`storage-valet.dev/bucket-region`) and of the STS/IAM clients.
    pub region: String,
    /// Used when a BucketAccess has no `spec.bucketAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_bucket_account: Option<String>,
    /// How to reach each bucket account.
    #[serde(default)]
    pub bucket_accounts: BTreeMap<String, BucketAccountConfig>,
    #[serde(default = "default_path")]
    pub role_path: String,
    #[serde(default = "default_name")]
    pub role_name_pattern: String,
    /// Create the IAM OIDC provider in a bucket account when it is missing.
    #[serde(default)]
    pub create_oidc_provider: bool,
    #[serde(default)]
    pub endpoints: Endpoints,
    #[serde(default)]
    pub retry: RetrySettings,
    /// BucketAccess objects reconciled at once (bounds IAM request rate).
    #[serde(default = "default_concurrency")]
    pub concurrency: u16,
    /// Every object is re-read against IAM this often to repair drift.
    #[serde(default = "default_resync")]
    pub resync_seconds: u64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketAccountConfig {
    /// Role in the bucket account the broker assumes to provision roles;
    /// absent means the broker's own credentials already act in that account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Managed policy set as the permissions boundary of every role the
    /// broker creates in this account (and put back when removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary_arn: Option<String>,
    /// Bucket region for this account, when it differs from `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts: Option<String>,
    /// S3 endpoint for claimed buckets (path-style addressing when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<String>,
}

/// The SDK's standard retry strategy (exponential backoff with full jitter).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 20_000,
        }
    }
}

fn default_audience() -> String {
    DEFAULT_TOKEN_AUDIENCE.into()
}
fn default_prefix() -> String {
    DEFAULT_ANNOTATION_PREFIX.into()
}
fn default_path() -> String {
    DEFAULT_PATH_PATTERN.into()
}
fn default_name() -> String {
    DEFAULT_NAME_PATTERN.into()
}
fn default_concurrency() -> u16 {
    4
}
fn default_resync() -> u64 {
    300
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read broker config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("broker config {path} is not valid YAML for the broker: {source}")]
    Yaml {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("broker config: {0}")]
    Invalid(String),
}

impl BrokerConfig {
    /// The SDK settings of the broker's own credentials (default chain,
    /// the configured region and endpoints), used by controller, apply and audit.
    pub fn aws_config(&self) -> valet_trust::aws::AwsConfig {
        valet_trust::aws::AwsConfig {
            region: Some(self.region.clone()),
            iam_endpoint: self.endpoints.iam.clone(),
            sts_endpoint: self.endpoints.sts.clone(),
            credentials: None,
        }
    }

    /// A config with defaults for everything but the three required fields.
    pub fn new(cluster_name: &str, region: &str) -> BrokerConfig {
        BrokerConfig {
            cluster_name: cluster_name.into(),
            oidc_issuer: None,
            audience: default_audience(),
            annotation_prefix: default_prefix(),
            region: region.into(),
            default_bucket_account: None,
            bucket_accounts: BTreeMap::new(),
            role_path: default_path(),
            role_name_pattern: default_name(),
            create_oidc_provider: false,
            endpoints: Endpoints::default(),
            retry: RetrySettings::default(),
            concurrency: default_concurrency(),
            resync_seconds: default_resync(),
        }
    }

    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Yaml {
            path: shown,
            source,
        })
    }

    /// Checks every field; call after flags have been applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        validate_cluster(&self.cluster_name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        role_path(&self.role_path, &self.cluster_name)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if validate_region(&self.region).is_err() {
            return bad(format!(
                "region {:?} is not an AWS region (e.g. eu-west-1)",
                self.region
            ));
        }
        if let Some(issuer) = &self.oidc_issuer
            && !issuer.starts_with("https://")
        {
            return bad(format!(
                "oidcIssuer {issuer:?} must be an https:// URL (IAM only trusts HTTPS issuers)"
            ));
        }
        if self.audience.is_empty() {
            return bad("audience is empty".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        let accounts = self
            .default_bucket_account
            .iter()
            .chain(self.bucket_accounts.keys());
        for acct in accounts {
            if acct.len() != 12 || !acct.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!(
                    "bucket account {acct:?} is not a 12-digit AWS account id"
                ));
            }
        }
        for (acct, a) in &self.bucket_accounts {
            if let Some(arn) = &a.provisioning_role_arn {
                let parsed = RoleArn::parse(arn)
                    .map_err(|e| ConfigError::Invalid(format!("bucketAccounts.{acct}: {e}")))?;
                if parsed.account_id() != acct {
                    return bad(format!(
                        "bucketAccounts.{acct}.provisioningRoleArn {arn} is in account {}; it must be a role in {acct}",
                        parsed.account_id()
                    ));
                }
            }
            if let Some(b) = &a.permissions_boundary_arn
                && !is_policy_arn_in(b, acct)
            {
                return bad(format!(
                    "bucketAccounts.{acct}.permissionsBoundaryArn {b:?} is not a managed policy ARN in account {acct} (arn:aws:iam::{acct}:policy/NAME)"
                ));
            }
            if let Some(r) = &a.region
                && validate_region(r).is_err()
            {
                return bad(format!(
                    "bucketAccounts.{acct}.region {r:?} is not an AWS region"
                ));
            }
        }
        Ok(())
    }

    pub fn account(&self, account: &str) -> Option<&BucketAccountConfig> {
        self.bucket_accounts.get(account)
    }

    /// Region of the buckets in `account`.
    pub fn bucket_region(&self, account: &str) -> &str {
        self.account(account)
            .and_then(|a| a.region.as_deref())
            .unwrap_or(&self.region)
    }
}

/// `arn:PARTITION:iam::ACCOUNT:policy/[PATH/]NAME` in `account`.
fn is_policy_arn_in(arn: &str, account: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", acct, rest]
        if partition.starts_with("aws") && *acct == account
            && rest.strip_prefix("policy/").is_some_and(|n| !n.is_empty() && !n.ends_with('/')))
}
