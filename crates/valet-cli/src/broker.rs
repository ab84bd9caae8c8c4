//! `valet broker`, `valet broker apply` and `valet crd`: clap arguments,
//! resolved into the broker's config and options, and the functions `main` calls.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use valet_broker::config::{BrokerConfig, ConfigError};
use valet_broker::run::{ApplyOptions, ControllerOptions, RunError, run_apply, run_controller};
use valet_core::out;

/// `valet broker [apply]`.
#[derive(Args, Debug)]
pub struct BrokerArgs {
    #[command(subcommand)]
    pub command: Option<BrokerCommand>,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum BrokerCommand {
    /// Reconcile BucketClaim and BucketAccess files against AWS without a cluster, printing the plan first.
    Apply(ApplyArgs),
    /// Print the least-privilege IAM policy of the provisioning role in a bucket account.
    IamPolicy(IamPolicyArgs),
}

#[derive(Args, Debug)]
pub struct IamPolicyArgs {
    /// The bucket account (12 digits); default: defaultBucketAccount.
    #[arg(long, env = "VALET_BUCKET_ACCOUNT")]
    pub bucket_account: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// The broker config file and per-field overrides.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Broker config YAML (cluster name, issuer, bucket accounts, ...).
    #[arg(long, env = "VALET_BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Cluster name, used in role names and tags (the config's clusterName).
    #[arg(long, env = "VALET_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// The cluster's service account issuer (discovered from the API server when absent).
    #[arg(long, env = "VALET_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Extra CA certificates (PEM) for reaching the issuer.
    #[arg(long, env = "VALET_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    /// AWS region of the IAM, STS and S3 calls (the config's region).
    #[arg(long, env = "VALET_BROKER_REGION")]
    pub region: Option<String>,
    /// Bucket account of a BucketAccess that names none (12 digits).
    #[arg(long, env = "VALET_DEFAULT_BUCKET_ACCOUNT")]
    pub default_bucket_account: Option<String>,
    /// IAM endpoint URL instead of AWS's (tests point it at moto).
    #[arg(long, env = "VALET_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// STS endpoint URL instead of AWS's (tests point it at moto).
    #[arg(long, env = "VALET_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// S3 endpoint URL instead of AWS's, for BucketClaims (tests point it at moto).
    #[arg(long, env = "VALET_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Create the IAM OIDC provider in bucket accounts that lack it.
    #[arg(long, env = "VALET_CREATE_OIDC_PROVIDER")]
    pub create_oidc_provider: bool,
    /// The webhook's --annotation-prefix.
    #[arg(long, env = "VALET_ANNOTATION_PREFIX")]
    pub annotation_prefix: Option<String>,
    /// The webhook's --token-audience.
    #[arg(long, env = "VALET_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
}

/// Controller-only flags.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[arg(long, env = valet_kube::ENV, help = valet_kube::HELP)]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the Lease the replicas elect a leader with.
    #[arg(long, env = "VALET_LEASE_NAME", default_value = "storage-valet-broker")]
    pub lease_name: String,
    /// Namespace of the Lease (the broker's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "storage-valet")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Lease duration in seconds: a leader that stops renewing loses it after this long; one not renewed within two thirds of it stops reconciling first.
    #[arg(long, env = "VALET_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// /healthz fails (and the kubelet restarts the broker) once one reconcile has run this many seconds.
    #[arg(long, env = "VALET_RECONCILE_STALL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_stall_seconds: u64,
    /// BucketAccesses reconciled at once (the config's concurrency; lower it when IAM throttles).
    #[arg(long, env = "VALET_BROKER_CONCURRENCY")]
    pub concurrency: Option<u16>,
    /// Seconds between full re-checks of every BucketAccess (the config's resyncSeconds).
    #[arg(long, env = "VALET_RESYNC_SECONDS")]
    pub resync_seconds: Option<u64>,
    /// Plain-HTTP admin port: /healthz, /readyz, /metrics.
    #[arg(long, env = "VALET_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// YAML files with BucketAccess, BucketClaim, BucketClass, BucketAccessPolicy
    /// and Namespace documents (several documents each; `-` reads stdin).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Print the plan and stop: no write to AWS.
    #[arg(long)]
    pub dry_run: bool,
    /// Write each BucketAccess's annotated ServiceAccount manifest into DIR
    /// (NAMESPACE.NAME.yaml), for clusters whose ServiceAccounts come from Git;
    /// only when the run succeeds (or, with --dry-run, would).
    #[arg(long, value_name = "DIR")]
    pub write_service_accounts: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `valet crd`.
#[derive(Args, Debug)]
pub struct CrdArgs {}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("broker config: {0} (pass it in --config or as a flag)")]
    Missing(&'static str),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    IamPolicy(#[from] valet_broker::iam_policy::IamPolicyError),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("CRD YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

impl CliError {
    /// `broker apply`'s contract: 1 for input the broker refuses (a typo,
    /// a document that does not parse, a policy that is invalid), 2 for
    /// everything that kept it from running (a file it cannot read, the
    /// config, the issuer's CA, AWS).
    pub fn exit_code(&self) -> u8 {
        use valet_broker::apply::{ApplyError, EXIT_ERROR, EXIT_REFUSED};
        match self {
            CliError::Run(RunError::Apply(ApplyError::Read { .. })) => EXIT_ERROR,
            CliError::Run(RunError::Apply(_)) => EXIT_REFUSED,
            _ => EXIT_ERROR,
        }
    }
}

impl ConfigArgs {
    /// The config file with flags applied on top, validated.
    pub fn resolve(&self) -> Result<BrokerConfig, CliError> {
        let mut cfg = match &self.config {
            Some(path) => BrokerConfig::load(path)?,
            None => {
                let cluster = self
                    .cluster_name
                    .as_deref()
                    .ok_or(CliError::Missing("clusterName"))?;
                let region = self.region.as_deref().ok_or(CliError::Missing("region"))?;
                BrokerConfig::new(cluster, region)
            }
        };
        let set = |field: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                field.clone_from(v);
            }
        };
        set(&mut cfg.cluster_name, &self.cluster_name);
        set(&mut cfg.region, &self.region);
        if let Some(a) = &self.annotation_prefix {
            cfg.annotation_prefix.clone_from(a);
        }
        set(&mut cfg.audience, &self.token_audience);
        cfg.oidc_issuer = self.oidc_issuer.clone().or(cfg.oidc_issuer);
        cfg.default_bucket_account = self
            .default_bucket_account
            .clone()
            .or(cfg.default_bucket_account);
        cfg.endpoints.iam = self.iam_endpoint.clone().or(cfg.endpoints.iam);
        cfg.endpoints.sts = self.sts_endpoint.clone().or(cfg.endpoints.sts);
        cfg.endpoints.s3 = self.s3_endpoint.clone().or(cfg.endpoints.s3);
        cfg.create_oidc_provider |= self.create_oidc_provider;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn ca(&self) -> Result<Option<(Vec<u8>, String)>, CliError> {
        let Some(path) = &self.oidc_ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Some((pem, path.display().to_string())))
    }
}

/// `valet crd`: the CustomResourceDefinition as YAML on stdout.
pub fn run_crd(_: CrdArgs) -> Result<ExitCode, CliError> {
    out::print(&format!(
        "{}---\n{}",
        valet_broker::crd::crd_yaml()?,
        valet_broker::access_policy::crd_yaml()?
    ))
    .map_err(CliError::Stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// `valet broker` and `valet broker apply`.
pub async fn run_broker(args: BrokerArgs) -> Result<ExitCode, CliError> {
    match args.command {
        Some(BrokerCommand::IamPolicy(a)) => {
            let cfg = a.config.resolve()?;
            let (_, doc) =
                valet_broker::iam_policy::provisioning_policy(&cfg, a.bucket_account.as_deref())?;
            out::print(&valet_broker::iam_policy::render(&doc)).map_err(CliError::Stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(BrokerCommand::Apply(apply)) => {
            let cfg = apply.config.resolve()?;
            let opts = ApplyOptions {
                files: apply.files,
                dry_run: apply.dry_run,
                write_service_accounts: apply.write_service_accounts,
                oidc_ca: apply.config.ca()?,
            };
            Ok(run_apply(cfg, opts).await?)
        }
        None => {
            let mut cfg = args.config.resolve()?;
            if let Some(c) = args.run.concurrency {
                cfg.concurrency = c.max(1);
            }
            if let Some(r) = args.run.resync_seconds {
                cfg.resync_seconds = r;
            }
            let run = args.run;
            let opts = ControllerOptions {
                kubeconfig: run.kubeconfig,
                lease_name: run.lease_name,
                lease_namespace: run.lease_namespace,
                identity: run.identity,
                lease_seconds: run.lease_seconds,
                reconcile_stall_seconds: run.reconcile_stall_seconds,
                metrics_port: run.metrics_port,
                oidc_ca: args.config.ca()?,
            };
            Ok(run_controller(cfg, opts).await?)
        }
    }
}
