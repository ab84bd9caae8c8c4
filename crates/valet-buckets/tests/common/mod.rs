//! Shared fixtures: one moto per test binary, S3 clients acting in a chosen
//! account (through moto's STS, as the broker's provisioning role does), and
//! classes written as YAML, the way a platform team writes them.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use valet_buckets::class::ValidClass;
use valet_buckets::crd::BucketClassSpec;
use valet_buckets::desired::DesiredBucket;
use valet_buckets::probe::CallProbe;
use valet_buckets::s3::S3;
use valet_testkit::moto::Moto;

pub const ACCOUNT: &str = "222222222222";
pub const REGION: &str = "eu-west-1";
pub const CLUSTER: &str = "prod";

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().expect("start moto_server (pip install 'moto[server]')"))
}

/// Credentials of a role in `account`, from moto's STS.
pub async fn credentials_in(account: &str) -> Credentials {
    let base = aws_sdk_sts::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(moto().endpoint())
        .build();
    let out = aws_sdk_sts::Client::from_conf(base)
        .assume_role()
        .role_arn(format!(
            "arn:aws:iam::{account}:role/storage-valet-provisioner"
        ))
        .role_session_name("valet-buckets-test")
        .send()
        .await
        .expect("moto AssumeRole");
    let c = out.credentials.expect("credentials");
    Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "moto-assumed",
    )
}

/// Our counted S3 wrapper acting in `account`.
pub async fn s3_in(account: &str) -> S3 {
    S3::new(
        sdk_builder(account).await,
        Some(&moto().endpoint()),
        Arc::new(CallProbe::default()),
    )
}

/// A plain SDK client in `account`, to read back and to cause drift the way
/// a person with console access would.
pub async fn raw_in(account: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        sdk_builder(account)
            .await
            .endpoint_url(moto().endpoint())
            .force_path_style(true)
            .build(),
    )
}

async fn sdk_builder(account: &str) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials_in(account).await)
}

pub fn class(name: &str, yaml: &str) -> ValidClass {
    let spec: BucketClassSpec = serde_yaml_ng::from_str(yaml).expect("class spec parses");
    ValidClass::new(name, &spec).expect("class is valid")
}

pub fn desired(class: &ValidClass, namespace: &str, claim: &str) -> DesiredBucket {
    DesiredBucket::new(class, CLUSTER, namespace, claim, ACCOUNT, REGION)
}

/// observe -> plan -> apply; returns the S3 operations the pass wrote.
pub async fn reconcile(s3: &S3, d: &DesiredBucket) -> Vec<&'static str> {
    let observed = s3.observe(d).await.expect("observe");
    let changes = valet_buckets::plan::plan(&observed, d).expect("plan");
    s3.apply(d, &changes).await.expect("apply");
    changes.iter().map(|c| c.operation()).collect()
}

/// moto evaluates a bucket policy's conditions against nothing and then
/// denies whenever a condition is unmet, whatever the statement's Effect
/// (moto/iam/access_control.py `_check_conditions`): our TLS-only Deny
/// refuses every object call there, even over TLS. Tests that put or get
/// objects remove the policy first, and say so.
pub async fn allow_object_calls_on_moto(raw: &aws_sdk_s3::Client, bucket: &str) {
    raw.delete_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .expect("remove the TLS-only policy for moto");
}

/// A bucket made by hand in `raw`'s account, without our tags.
pub async fn create_foreign_bucket(raw: &aws_sdk_s3::Client, name: &str) {
    raw.create_bucket()
        .bucket(name)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(REGION.into())
                .build(),
        )
        .send()
        .await
        .expect("a foreign bucket");
}
