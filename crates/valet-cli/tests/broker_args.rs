//! `valet broker [apply]` flags: shapes, and the config file with flags on top.

use clap::Parser;
use valet_cli::broker::{BrokerArgs, BrokerCommand};

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
