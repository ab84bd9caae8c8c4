//! `bench/buckets`: N BucketClaims (default 200) reconciled from nothing
//! against a moto server it starts, then one steady-state pass. Prints wall
//! time, S3 calls per claim per pass (reads and writes; the run fails when
//! the steady state writes anything) and peak RSS.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use valet_buckets::class::ValidClass;
use valet_buckets::crd::BucketClassSpec;
use valet_buckets::desired::DesiredBucket;
use valet_buckets::probe::CallProbe;
use valet_buckets::reconcile::reconcile_bucket;
use valet_buckets::s3::S3;
use valet_buckets::status::Outcome;
use valet_testkit::moto::Moto;

const CLASS: &str = r#"
namespaces: ["team-*"]
encryption: { type: "aws:kms", kmsKeyArn: "arn:aws:kms:eu-west-1:123456789012:key/bench" }
versioning: true
lifecycle: { abortIncompleteMultipartDays: 7, noncurrentVersionExpirationDays: 30 }
tags: { cost-center: platform }
"#;

async fn pass(s3: &S3, claims: &[DesiredBucket], concurrency: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for d in claims {
        let (s3, gate, d) = (s3.clone(), gate.clone(), d.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            reconcile_bucket(&s3, &d).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Outcome::Failed { error, .. } = done? {
            bail!("{}: {error}", error.reason);
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(200), |a| a.parse()).context("N")?;
    let concurrency: usize = args
        .next()
        .map_or(Ok(8), |a| a.parse())
        .context("concurrency")?;
    let moto = Moto::start()?;
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDBENCH", "secret", None, None, "bench"));
    let s3 = S3::new(conf, Some(&moto.endpoint()), Arc::new(CallProbe::default()));
    let spec: BucketClassSpec = serde_yaml_ng::from_str(CLASS)?;
    let class = ValidClass::new("standard", &spec)?;
    let claims: Vec<DesiredBucket> = (0..n)
        .map(|i| {
            let ns = format!("team-{}", i % 20);
            let name = format!("claim-{i}");
            DesiredBucket::new(&class, "bench", &ns, &name, "123456789012", "eu-west-1")
        })
        .collect();

    let c0 = s3.probe().counts();
    let first = pass(&s3, &claims, concurrency).await?;
    let c1 = s3.probe().counts();
    let steady = pass(&s3, &claims, concurrency).await?;
    let c2 = s3.probe().counts();
    let (a, b) = (c1.since(&c0), c2.since(&c1));
    let per = |x: u64| x as f64 / n as f64;
    println!("claims: {n}, concurrency: {concurrency}");
    println!(
        "from nothing: {first:.2} s, S3 calls/claim {:.1} (reads {:.1}, writes {:.1})",
        per(a.total()),
        per(a.reads()),
        per(a.writes())
    );
    println!(
        "steady state: {steady:.2} s, S3 calls/claim {:.1} (reads {:.1}, writes {:.1})",
        per(b.total()),
        per(b.reads()),
        per(b.writes())
    );
    println!("steady state by operation: {:?}", b.ops);
    println!("peak RSS: {:.1} MiB", peak_rss_mib());
    if b.writes() > 0 {
        bail!("steady state wrote {} times to S3: {:?}", b.writes(), b.ops);
    }
    Ok(())
}
