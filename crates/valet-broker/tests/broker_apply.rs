//! `valet broker apply`: files in, plan printed before any write, then applied.

mod common;

use std::time::Duration;

use clap::Parser;
use common::env::*;
use valet_broker::apply::{execute_all, plan_all, read_sources, render_plan};
use valet_broker::cli::{BrokerArgs, BrokerCommand};
use valet_broker::trust::OidcHttp;
use valet_broker::trust_gate::TrustGate;

const FILE: &str = r#"
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: { name: media-reader, namespace: team-a }
spec:
  serviceAccountName: media-app
  buckets:
    - { name: acme-media, alias: media, prefix: team-a/, access: read }
    - { name: acme-uploads, alias: uploads, access: write }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: unrelated }
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: { name: broken, namespace: team-b }
spec:
  serviceAccountName: app
  buckets:
    - { name: Not_A_Bucket, access: read }
"#;

#[tokio::test]
async fn plans_first_then_applies_then_has_nothing_to_do() {
    let env = Env::new("apply").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.yaml");
    std::fs::write(&path, FILE).unwrap();

    let sources = read_sources(std::slice::from_ref(&path)).unwrap();
    assert_eq!(sources.len(), 2, "the ConfigMap is skipped");
    let http = OidcHttp::with_ca_pem(env.oidc.ca_pem().as_bytes(), "test CA").unwrap();
    let gate = TrustGate::new(
        http,
        &env.oidc.url(),
        "sts.amazonaws.com",
        false,
        Duration::from_secs(60),
    );
    let accounts = &env.parts.accounts;

    let before = env.counts();
    let items = plan_all(sources.clone(), accounts, &gate).await;
    let plan = render_plan(&items);
    assert_eq!(
        env.counts().since(&before).writes(),
        0,
        "planning wrote to IAM"
    );
    for needle in [
        "BucketAccess team-a/media-reader",
        "+ create role (trust policy, tags)",
        "+ put inline access policy",
        "storage-valet.dev/buckets: media=acme-media/team-a/,uploads=acme-uploads",
        "eks.amazonaws.com/role-arn: arn:aws:iam::",
        "BucketAccess team-b/broken",
        "! error: spec.buckets[0]",
        "trust FAIL",
        "Plan: 2 change(s) to 2 object(s), 1 error(s).",
    ] {
        assert!(plan.contains(needle), "{needle:?} missing from:\n{plan}");
    }

    let results = execute_all(&items, accounts).await;
    assert_eq!(results.len(), 1);
    assert!(results[0].is_ok(), "{results:?}");

    let before = env.counts();
    let again = render_plan(&plan_all(sources, accounts, &gate).await);
    assert!(again.contains("= no changes"), "{again}");
    assert!(again.contains("Plan: 0 change(s)"), "{again}");
    assert_eq!(env.counts().since(&before).writes(), 0);
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    broker: BrokerArgs,
}

#[test]
fn cli_shapes_and_config_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broker.yaml");
    std::fs::write(
        &cfg,
        "clusterName: prod\nregion: eu-west-1\ndefaultBucketAccount: \"222222222222\"\n\
         oidcIssuer: https://oidc.example.com/id/1\nbucketAccounts:\n  \"222222222222\":\n    \
         provisioningRoleArn: arn:aws:iam::222222222222:role/valet-provisioner\n    externalId: abc\n",
    )
    .unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    let cli = Cli::try_parse_from([
        "broker",
        "apply",
        "-f",
        "a.yaml",
        "b.yaml",
        "--dry-run",
        "--config",
        cfg_arg,
        "--region",
        "us-east-1",
    ])
    .unwrap();
    let Some(BrokerCommand::Apply(apply)) = cli.broker.command else {
        panic!("apply expected")
    };
    assert!(apply.dry_run);
    assert_eq!(apply.files.len(), 2);
    let resolved = apply.config.resolve().unwrap();
    assert_eq!(resolved.cluster_name, "prod");
    assert_eq!(resolved.region, "us-east-1", "flags override the file");
    assert_eq!(
        resolved
            .account("222222222222")
            .unwrap()
            .external_id
            .as_deref(),
        Some("abc")
    );

    let cli = Cli::try_parse_from([
        "broker",
        "--cluster-name",
        "dev",
        "--region",
        "eu-west-1",
        "--lease-seconds",
        "30",
    ])
    .unwrap();
    assert!(cli.broker.command.is_none());
    assert_eq!(cli.broker.run.lease_seconds, 30);
    assert_eq!(cli.broker.config.resolve().unwrap().cluster_name, "dev");

    let err = Cli::try_parse_from(["broker", "--region", "eu-west-1"])
        .unwrap()
        .broker
        .config
        .resolve()
        .unwrap_err();
    assert!(err.to_string().contains("clusterName"), "{err}");
    let err = Cli::try_parse_from(["broker", "--cluster-name", "a b", "--region", "eu-west-1"])
        .unwrap()
        .broker
        .config
        .resolve()
        .unwrap_err();
    assert!(err.to_string().contains("cluster name"), "{err}");
    std::fs::write(&cfg, "clusterName: prod\nregion: eu-west-1\nbogus: 1\n").unwrap();
    let err = Cli::try_parse_from(["broker", "--config", cfg_arg])
        .unwrap()
        .broker
        .config
        .resolve()
        .unwrap_err();
    assert!(
        err.to_string().contains("bogus"),
        "unknown fields are refused: {err}"
    );
}
