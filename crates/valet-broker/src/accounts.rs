//! AWS clients per bucket account, created on first use and kept.
//!
//! A BucketAccess may only name an account the broker is configured for:
//! provisioning in whatever account the broker's own credentials happen to
//! reach would put roles in the wrong place, so every account is proved
//! (`GetCallerIdentity`) before its first IAM call.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use valet_buckets::probe::CallProbe;
use valet_buckets::s3::S3;
use valet_trust::aws::AwsClients;

use crate::config::BrokerConfig;
use crate::iam::{Iam, IamProbe};
use valet_buckets::status::Failure;

/// Session name the broker uses when it assumes provisioning roles (shows in CloudTrail).
pub const SESSION_NAME: &str = "storage-valet-broker";

/// Clients acting in one bucket account.
#[derive(Clone, Debug)]
pub struct AccountClients {
    pub account: String,
    pub aws: AwsClients,
    pub iam: Iam,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AccountError {
    #[error(
        "bucket account {0} is not in the broker config: add bucketAccounts.\"{0}\" (with its provisioningRoleArn) or make it defaultBucketAccount"
    )]
    Unknown(String),
    #[error("cannot act in bucket account {account}: {message}")]
    Assume { account: String, message: String },
    #[error(
        "the broker's credentials act in account {actual}, not bucket account {account}: set bucketAccounts.\"{account}\".provisioningRoleArn"
    )]
    WrongAccount { account: String, actual: String },
}

impl AccountError {
    pub fn reason(&self) -> &'static str {
        match self {
            AccountError::Unknown(_) => "UnknownBucketAccount",
            AccountError::Assume { .. } => "AssumeRoleFailed",
            AccountError::WrongAccount { .. } => "WrongAccount",
        }
    }

    /// Assuming may fail for a while (a trust policy being fixed, STS
    /// unreachable); the other two need the broker's config changed.
    pub fn failure(&self) -> Failure {
        match self {
            AccountError::Assume { .. } => Failure::Transient,
            AccountError::Unknown(_) | AccountError::WrongAccount { .. } => Failure::Refused,
        }
    }
}

/// Account id -> clients; failures are not cached, so a fixed trust policy
/// or external ID is picked up on the next reconcile.
pub struct Accounts {
    base: AwsClients,
    cfg: Arc<BrokerConfig>,
    probe: Arc<IamProbe>,
    cache: Mutex<HashMap<String, Arc<AccountClients>>>,
    s3_probe: Arc<CallProbe>,
    /// (account, region) -> S3 client: S3 signs per region.
    s3_cache: Mutex<HashMap<(String, String), S3>>,
}

impl Accounts {
    /// `base`: the broker's own clients (default chain, endpoint overrides).
    pub fn new(base: AwsClients, cfg: Arc<BrokerConfig>, probe: Arc<IamProbe>) -> Accounts {
        Accounts {
            base,
            cfg,
            probe,
            cache: Mutex::new(HashMap::new()),
            s3_probe: Arc::new(CallProbe::default()),
            s3_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Counts every S3 operation made through [`Accounts::s3`].
    pub fn s3_probe(&self) -> &Arc<CallProbe> {
        &self.s3_probe
    }

    /// S3 acting in `account` (proved like IAM) for buckets in `region`.
    pub async fn s3(&self, account: &str, region: &str) -> Result<S3, AccountError> {
        let key = (account.to_string(), region.to_string());
        if let Some(s3) = self.s3_cache.lock().await.get(&key) {
            return Ok(s3.clone());
        }
        let clients = self.get(account).await?;
        let builder = aws_sdk_s3::config::Builder::from(clients.aws.sdk_config())
            .region(aws_sdk_s3::config::Region::new(region.to_string()))
            .retry_config(crate::iam::retry_config(&self.cfg.retry));
        let s3 = S3::new(
            builder,
            self.cfg.endpoints.s3.as_deref(),
            self.s3_probe.clone(),
        );
        self.s3_cache.lock().await.insert(key, s3.clone());
        Ok(s3)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// Counts every IAM operation made through these clients.
    pub fn probe(&self) -> &Arc<IamProbe> {
        &self.probe
    }

    pub async fn get(&self, account: &str) -> Result<Arc<AccountClients>, AccountError> {
        if let Some(c) = self.cache.lock().await.get(account) {
            return Ok(c.clone());
        }
        let known = self.cfg.default_bucket_account.as_deref() == Some(account)
            || self.cfg.bucket_accounts.contains_key(account);
        if !known {
            return Err(AccountError::Unknown(account.to_string()));
        }
        let settings = self.cfg.account(account);
        let aws = match settings.and_then(|a| a.provisioning_role_arn.as_deref()) {
            Some(role) => {
                let external_id = settings.and_then(|a| a.external_id.as_deref());
                self.base
                    .assume_checked(role, external_id, SESSION_NAME)
                    .await
                    .map_err(|e| AccountError::Assume {
                        account: account.to_string(),
                        message: e.to_string(),
                    })?
            }
            None => self.base.clone(),
        };
        let actual = aws
            .caller_identity()
            .await
            .map_err(|e| AccountError::Assume {
                account: account.to_string(),
                message: e.to_string(),
            })?;
        if actual.account != account {
            return Err(AccountError::WrongAccount {
                account: account.to_string(),
                actual: actual.account,
            });
        }
        let iam = Iam::new(aws.iam_config(), &self.cfg.retry, self.probe.clone());
        let clients = Arc::new(AccountClients {
            account: account.to_string(),
            aws,
            iam,
        });
        // Two reconciles may race here; both results are equivalent.
        self.cache
            .lock()
            .await
            .insert(account.to_string(), clients.clone());
        Ok(clients)
    }
}
