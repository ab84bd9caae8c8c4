//! bench/broker: reconcile N BucketAccess objects from nothing against moto,
//! then once more in steady state. Prints wall time, IAM calls per object
//! (reads and writes; writes must be 0 in steady state), Kubernetes writes,
//! and peak RSS. The baseline, measured in the same run against the same
//! moto, is the bare SDK doing only the IAM calls a pass cannot avoid
//! (CreateRole + PutRolePolicy from nothing; GetRole + GetRolePolicy in
//! steady state), sequentially on one connection pool, with the broker's
//! concurrency.
//!
//! Usage: cargo run --release -p valet-broker --example bench_broker -- [N] [CONCURRENCY]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use futures::StreamExt;
use kube::api::Api;
use valet_broker::access_policy::{BucketAccessPolicy, BucketAccessPolicySpec};
use valet_broker::claims::reconcile_claim;
use valet_broker::config::{BrokerConfig, BucketAccountConfig, RetrySettings};
use valet_broker::controller::BrokerParts;
use valet_broker::crd::{Access, BucketAccess, BucketAccessSpec, BucketGrant};
use valet_broker::reconcile::{Ctx, reconcile};
use valet_buckets::crd::{BucketClaim, BucketClaimSpec, BucketClass, BucketClassSpec};
use valet_testkit::apiserver::{ApiServer, ResourceDef};
use valet_testkit::moto::Moto;
use valet_testkit::oidc::OidcIssuer;
use valet_trust::OidcHttp;
use valet_trust::aws::{AwsClients, AwsConfig};

const ACCOUNT: &str = "222222222222";
const BASE_ACCOUNT: &str = "111111111111";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let concurrency: u16 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let claims: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200)
        .max(1);
    valet_kube::install_crypto_provider();

    let moto = Moto::start()?;
    let api = ApiServer::start().await;
    api.register(
        ResourceDef::namespaced(
            "storage-valet.dev",
            "v1alpha1",
            "BucketAccess",
            "bucketaccesses",
        )
        .with_status(),
    );
    api.register(ResourceDef::cluster(
        "storage-valet.dev",
        "v1alpha1",
        "BucketAccessPolicy",
        "bucketaccesspolicies",
    ));
    api.register(ResourceDef::cluster(
        "storage-valet.dev",
        "v1alpha1",
        "BucketClass",
        "bucketclasses",
    ));
    api.register(
        ResourceDef::namespaced(
            "storage-valet.dev",
            "v1alpha1",
            "BucketClaim",
            "bucketclaims",
        )
        .with_status(),
    );
    // Every team may read its own prefix and upload: the guardrails are judged on each reconcile.
    let policy: BucketAccessPolicySpec = serde_json::from_value(serde_json::json!({
        "namespaces": ["team-*"],
        "buckets": [
            {"name": "acme-media", "prefixes": ["{namespace}/"], "maxAccess": "read"},
            {"name": "acme-uploads", "maxAccess": "write"},
            {"bucketClass": "bench", "maxAccess": "readwrite"}
        ]
    }))?;
    Api::<BucketAccessPolicy>::all(api.client())
        .create(
            &kube::api::PostParams::default(),
            &BucketAccessPolicy::new("teams", policy),
        )
        .await?;
    let oidc = OidcIssuer::start().await?;
    oidc.attach(&api);

    let mut cfg = BrokerConfig::new("bench", "eu-west-1");
    cfg.oidc_issuer = Some(oidc.url());
    cfg.default_bucket_account = Some(ACCOUNT.into());
    cfg.create_oidc_provider = true;
    cfg.concurrency = concurrency;
    cfg.retry = RetrySettings::default();
    cfg.endpoints.iam = Some(moto.endpoint());
    cfg.endpoints.sts = Some(moto.endpoint());
    cfg.endpoints.s3 = Some(moto.endpoint());
    cfg.bucket_accounts.insert(
        ACCOUNT.into(),
        BucketAccountConfig {
            provisioning_role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/valet-provisioner")),
            external_id: Some("bench".into()),
            permissions_boundary_arn: None,
            region: None,
        },
    );
    let aws_cfg = AwsConfig {
        region: Some("eu-west-1".into()),
        iam_endpoint: Some(moto.endpoint()),
        sts_endpoint: Some(moto.endpoint()),
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDBENCH",
            "s",
            None,
            None,
            "bench",
        ))),
    };
    let aws = AwsClients::load(&aws_cfg).await;
    let http = OidcHttp::with_ca_pem(oidc.ca_pem().as_bytes(), "bench CA")?;
    let parts = BrokerParts::new(cfg, oidc.url(), aws.clone(), http);
    let ctx = parts.context(api.client(), Some("bench".into()));

    let class: BucketClassSpec = serde_json::from_value(serde_json::json!({
        "namespaces": ["team-*"], "versioning": true,
        "lifecycle": {"abortIncompleteMultipartDays": 7}, "tags": {"cost-center": "bench"}
    }))?;
    api.insert(BucketClass::new("bench", class))
        .map_err(|e| anyhow::anyhow!("insert: {e:?}"))?;
    for j in 0..claims {
        let mut claim = BucketClaim::new(
            &format!("claim-{j}"),
            BucketClaimSpec {
                bucket_class_name: "bench".into(),
            },
        );
        claim.metadata.namespace = Some(format!("team-{}", j % 50));
        api.insert(&claim)
            .map_err(|e| anyhow::anyhow!("insert: {e:?}"))?;
    }
    for i in 0..n {
        // In the namespace of the claim it is granted.
        let ns = format!("team-{}", (i % claims) % 50);
        let mut ba = BucketAccess::new(
            &format!("access-{i}"),
            BucketAccessSpec {
                service_account_name: format!("app-{i}"),
                bucket_account: None,
                suspended: false,
                buckets: vec![
                    grant(
                        "acme-media",
                        "media",
                        Some(format!("{ns}/app-{i}/")),
                        Access::Read,
                    ),
                    grant("acme-uploads", "uploads", None, Access::Write),
                    BucketGrant {
                        name: None,
                        bucket_claim_name: Some(format!("claim-{}", i % claims)),
                        alias: Some("claimed".into()),
                        prefix: None,
                        access: Access::Readwrite,
                    },
                ],
            },
        );
        ba.metadata.namespace = Some(ns);
        api.insert(&ba)
            .map_err(|e| anyhow::anyhow!("insert: {e:?}"))?;
    }
    println!(
        "bench/broker: {claims} BucketClaims, {n} BucketAccess objects (each also granted a claim's bucket), concurrency {concurrency}, moto at {}",
        moto.endpoint()
    );

    let start = Instant::now();
    let claims_first = claim_pass(&api, &ctx, claims, concurrency, "claims from nothing").await?;
    let first = pass(&api, &ctx, n, concurrency, "from nothing").await?;
    println!(
        "from nothing, claims + grants: {:.2}s wall",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let claims_steady = claim_pass(&api, &ctx, claims, concurrency, "claims steady state").await?;
    let steady = pass(&api, &ctx, n, concurrency, "steady state").await?;
    println!(
        "steady state, claims + grants: {:.2}s wall",
        start.elapsed().as_secs_f64()
    );
    if steady.1 != 0 {
        bail!("steady state made {} IAM writes (must be 0)", steady.1);
    }
    if claims_steady.1 != 0 || claims_steady.2 != 0 {
        bail!(
            "claims in steady state made {} S3 and {} Kubernetes writes (must be 0)",
            claims_steady.1,
            claims_steady.2
        );
    }
    let _ = claims_first;

    // Baseline in the same run: the bare SDK making only the unavoidable calls.
    let baseline_iam = aws_sdk_iam::Client::from_conf(
        aws.assume_checked(
            &format!("arn:aws:iam::{BASE_ACCOUNT}:role/p"),
            None,
            "bench",
        )
        .await?
        .iam_config()
        .build(),
    );
    let create = baseline(&baseline_iam, n, concurrency, true).await?;
    let read = baseline(&baseline_iam, n, concurrency, false).await?;
    println!(
        "from nothing: broker {:.2}s vs bare SDK CreateRole+PutRolePolicy {:.2}s: ratio {:.2}",
        first.0.as_secs_f64(),
        create.as_secs_f64(),
        first.0.as_secs_f64() / create.as_secs_f64()
    );
    println!(
        "steady state: broker {:.2}s vs bare SDK GetRole+GetRolePolicy {:.2}s: ratio {:.2}",
        steady.0.as_secs_f64(),
        read.as_secs_f64(),
        steady.0.as_secs_f64() / read.as_secs_f64()
    );
    println!(
        "peak RSS of the broker process: {} MiB",
        peak_rss_kib()? / 1024
    );
    Ok(())
}

/// One reconcile of every claim, `concurrency` at a time. Returns wall time and S3 writes.
async fn claim_pass(
    api: &ApiServer,
    ctx: &Arc<Ctx>,
    n: usize,
    concurrency: u16,
    label: &str,
) -> anyhow::Result<(Duration, u64, u64)> {
    let claims: Api<BucketClaim> = Api::all(ctx.client.clone());
    let objects = claims.list(&Default::default()).await?.items;
    let probe = ctx.accounts.s3_probe().clone();
    let before = probe.counts();
    let kube_before = api.write_count();
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|c| reconcile_claim(Arc::new(c), ctx.clone()))
        .buffer_unordered(usize::from(concurrency))
        .collect()
        .await;
    let wall = start.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let delta = probe.counts().since(&before);
    let ready = claims
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|c| valet_buckets::status::is_ready(c.status.as_ref()).is_some())
        .count();
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "{label}: {:.2}s wall, {:.1} claims/s; S3 calls/claim {:.2} (reads {:.2}, writes {:.2}); \
         Kubernetes writes/claim {:.2}; Ready {ready}/{n}; errors {failed}",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        per(delta.total()),
        per(delta.reads()),
        per(delta.writes()),
        per(api.write_count() - kube_before),
    );
    println!("  S3 operations: {:?}", delta.ops);
    if ready != n {
        bail!("{label}: only {ready} of {n} claims are Ready");
    }
    Ok((wall, delta.writes(), api.write_count() - kube_before))
}

fn grant(name: &str, alias: &str, prefix: Option<String>, access: Access) -> BucketGrant {
    BucketGrant {
        name: Some(name.into()),
        bucket_claim_name: None,
        alias: Some(alias.into()),
        prefix,
        access,
    }
}

/// One reconcile of every object, `concurrency` at a time (the controller's bound).
/// Returns wall time and IAM writes.
async fn pass(
    api: &ApiServer,
    ctx: &Arc<Ctx>,
    n: usize,
    concurrency: u16,
    label: &str,
) -> anyhow::Result<(Duration, u64)> {
    let bas: Api<BucketAccess> = Api::all(ctx.client.clone());
    let objects = bas.list(&Default::default()).await?.items;
    let probe = ctx.accounts.probe().clone();
    let before = probe.counts();
    let kube_before = api.write_count();
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|ba| reconcile(Arc::new(ba), ctx.clone()))
        .buffer_unordered(usize::from(concurrency))
        .collect()
        .await;
    let wall = start.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let delta = probe.counts().since(&before);
    let ready = bas
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count();
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "{label}: {:.2}s wall, {:.1} objects/s; IAM calls/object {:.2} (reads {:.2}, writes {:.2}), HTTP attempts/object {:.2}; \
         Kubernetes writes/object {:.2}; Ready {ready}/{n}; errors {failed}",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        per(delta.total()),
        per(delta.reads()),
        per(delta.writes()),
        per(delta.attempts),
        per(api.write_count() - kube_before),
    );
    println!("  IAM operations: {:?}", delta.ops);
    if ready != n {
        bail!("{label}: only {ready} of {n} objects are Ready");
    }
    Ok((wall, delta.writes()))
}

async fn baseline(
    iam: &aws_sdk_iam::Client,
    n: usize,
    concurrency: u16,
    create: bool,
) -> anyhow::Result<Duration> {
    let trust = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111111111111:oidc-provider/x"},"Action":"sts:AssumeRoleWithWebIdentity"}}"#;
    let policy = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let name = format!("baseline-{i}");
            if create {
                iam.create_role()
                    .role_name(&name)
                    .path("/b/")
                    .assume_role_policy_document(trust)
                    .send()
                    .await?;
                iam.put_role_policy()
                    .role_name(&name)
                    .policy_name("p")
                    .policy_document(policy)
                    .send()
                    .await?;
            } else {
                iam.get_role().role_name(&name).send().await?;
                iam.get_role_policy()
                    .role_name(&name)
                    .policy_name("p")
                    .send()
                    .await?;
            }
            Ok(())
        })
        .buffer_unordered(usize::from(concurrency))
        .collect()
        .await;
    for r in results {
        r.context("baseline IAM call")?;
    }
    Ok(start.elapsed())
}

fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?)
}
