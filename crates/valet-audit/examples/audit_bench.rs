//! Scale bench for `valet audit` (driven by bench/audit):
//!   audit_bench serve DIR PODS   in-process API server with PODS pods; writes
//!                                DIR/kubeconfig, then DIR/ready; runs until killed
//!   audit_bench audit KUBECONFIG PAGE_SIZE
//!                                one audit; prints pods, findings, seconds and
//!                                the process's peak RSS (VmHWM)
//! The audit runs in its own process so its RSS is not the server's.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use valet_audit::cli::{Output, audit, client, render};
use valet_testkit::apiserver::ApiServer;

const ROLE: &str = "arn:aws:iam::222222222222:role/storage-valet/bench";

async fn serve(dir: &str, pods: usize) -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    server.set_request_log(false);
    let namespaces = 20;
    for ns in 0..namespaces {
        for sa in 0..5 {
            server.insert(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"namespace": format!("ns-{ns}"), "name": format!("app-{sa}"),
                    "annotations": {"eks.amazonaws.com/role-arn": ROLE, "storage-valet.dev/bucket": "acme/data/"}}}))?;
        }
    }
    for i in 0..pods {
        // One pod in 50 is stale (old bucket), as after a BucketAccess change.
        let bucket = if i % 50 == 0 { "old" } else { "acme" };
        server.insert(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": format!("ns-{}", i % namespaces), "name": format!("app-{i}-x7k2p"),
                "labels": {"app": "app", "pod-template-hash": "7c9d5"},
                "annotations": {
                    "storage-valet.dev/injected-mode": "web-identity",
                    "storage-valet.dev/injected-role-arn": ROLE,
                    "storage-valet.dev/injected-bucket-env": json!({"S3_BUCKET": bucket, "S3_PREFIX": "data/"}).to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7c9d5", "uid": "u", "controller": true}]},
            "spec": {"serviceAccountName": format!("app-{}", i % 5), "containers": [{"name": "main", "image": "registry.example/app:1.2.3",
                "env": [{"name": "AWS_ROLE_ARN", "value": ROLE}, {"name": "S3_BUCKET", "value": bucket}, {"name": "S3_PREFIX", "value": "data/"},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}],
                "volumeMounts": [{"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                "volumes": [{"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "10.0.1.1"}}))?;
    }
    server.write_kubeconfig(dir)?;
    std::fs::write(format!("{dir}/ready"), b"")?;
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024.0)
}

async fn run_audit(kubeconfig: &str, page_size: &str) -> anyhow::Result<()> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        audit: valet_cli::audit::AuditArgs,
    }
    let args: valet_audit::AuditOptions = <Cli as clap::Parser>::parse_from([
        "audit",
        "--kubeconfig",
        kubeconfig,
        "--page-size",
        page_size,
        "-o",
        "json",
    ])
    .audit
    .into();
    let start = Instant::now();
    let c = client(args.kubeconfig.as_deref()).await?;
    let report = audit(&c, &args).await?;
    let out = render(&report, Output::Json)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "pods={} findings={} json_bytes={} seconds={secs:.3} peak_rss_mib={:.1}",
        report.summary.pods,
        report.findings.len(),
        out.len(),
        peak_rss_mib()?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    match argv
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_, "serve", dir, pods] => serve(dir, pods.parse()?).await,
        [_, "audit", kubeconfig, page] => run_audit(kubeconfig, page).await,
        _ => bail!("usage: audit_bench serve DIR PODS | audit KUBECONFIG PAGE_SIZE"),
    }
}
