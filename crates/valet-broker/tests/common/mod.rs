//! Shared fixtures for the broker's integration tests.
#![allow(dead_code)]

pub mod env;

use std::sync::{Arc, OnceLock};

use aws_credential_types::Credentials;
use aws_sdk_iam::config::{BehaviorVersion, Region};
use valet_broker::config::{BrokerConfig, RetrySettings};
use valet_broker::crd::{Access, BucketAccessSpec, BucketGrant};
use valet_broker::iam::{Iam, IamProbe};
use valet_testkit::moto::Moto;

/// moto's default account: used as the bucket account when no AssumeRole is involved.
pub const MOTO_ACCOUNT: &str = "123456789012";
pub const ISSUER: &str = "https://oidc.example.test/cluster/prod";

/// One moto server per test binary; tests use distinct role names so they never collide.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().expect("start moto_server (pip install 'moto[server]')"))
}

pub fn fast_retry() -> RetrySettings {
    RetrySettings {
        max_attempts: 3,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
    }
}

/// An IAM wrapper on moto (or on `endpoint`), with its own probe.
pub fn iam_at(endpoint: &str) -> Iam {
    let builder = aws_sdk_iam::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(endpoint);
    Iam::new(builder, &fast_retry(), Arc::new(IamProbe::default()))
}

pub fn iam() -> Iam {
    iam_at(&moto().endpoint())
}

pub fn config(cluster: &str) -> BrokerConfig {
    let mut cfg = BrokerConfig::new(cluster, "eu-west-1");
    cfg.default_bucket_account = Some(MOTO_ACCOUNT.into());
    cfg.oidc_issuer = Some(ISSUER.into());
    cfg
}

pub fn grant(name: &str, alias: Option<&str>, prefix: Option<&str>, access: Access) -> BucketGrant {
    BucketGrant {
        name: Some(name.into()),
        bucket_claim_name: None,
        alias: alias.map(Into::into),
        prefix: prefix.map(Into::into),
        access,
    }
}

pub fn spec(sa: &str, buckets: Vec<BucketGrant>) -> BucketAccessSpec {
    BucketAccessSpec {
        service_account_name: sa.into(),
        bucket_account: None,
        buckets,
        suspended: false,
    }
}
