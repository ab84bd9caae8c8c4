//! `valet broker`, `valet broker apply` and `valet crd`: clap arguments and
//! the functions `main` calls.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tracing::{info, warn};

use crate::accounts::Accounts;
use crate::aws::{AwsClients, AwsConfig};
use crate::config::{BrokerConfig, ConfigError};
use crate::controller::{BrokerParts, run_with_lease};
use crate::iam::IamProbe;
use crate::lease::LeaseLock;
use crate::trust::OidcHttp;
use crate::trust_gate::TrustGate;

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
    /// Reconcile BucketAccess files against AWS without a cluster, printing the plan first.
    Apply(ApplyArgs),
}

/// The broker config file and per-field overrides.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Broker config YAML (cluster name, issuer, bucket accounts, ...).
    #[arg(long, env = "VALET_BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "VALET_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// The cluster's service account issuer (discovered from the API server when absent).
    #[arg(long, env = "VALET_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Extra CA certificates (PEM) for reaching the issuer.
    #[arg(long, env = "VALET_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    #[arg(long, env = "VALET_BROKER_REGION")]
    pub region: Option<String>,
    #[arg(long, env = "VALET_DEFAULT_BUCKET_ACCOUNT")]
    pub default_bucket_account: Option<String>,
    #[arg(long, env = "VALET_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    #[arg(long, env = "VALET_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
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
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, env = "VALET_LEASE_NAME", default_value = "storage-valet-broker")]
    pub lease_name: String,
    /// Namespace of the Lease (the broker's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "storage-valet")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    #[arg(long, env = "VALET_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    #[arg(long, env = "VALET_BROKER_CONCURRENCY")]
    pub concurrency: Option<u16>,
    #[arg(long, env = "VALET_RESYNC_SECONDS")]
    pub resync_seconds: Option<u64>,
    /// Plain-HTTP admin port: /healthz, /readyz, /metrics.
    #[arg(long, env = "VALET_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// BucketAccess YAML files (several documents each; `-` reads stdin).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Print the plan and stop: no write to AWS.
    #[arg(long)]
    pub dry_run: bool,
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
    #[error("Kubernetes client: {0}")]
    Kube(String),
    #[error(transparent)]
    Start(#[from] crate::controller::StartError),
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    #[error("admin port: {0}")]
    Admin(String),
    #[error("CRD YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
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
        cfg.create_oidc_provider |= self.create_oidc_provider;
        cfg.validate()?;
        Ok(cfg)
    }

    fn ca(&self) -> Result<Option<(Vec<u8>, String)>, CliError> {
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
    print!("{}", crate::crd::crd_yaml()?);
    Ok(ExitCode::SUCCESS)
}

/// `valet broker` and `valet broker apply`.
pub async fn run_broker(args: BrokerArgs) -> Result<ExitCode, CliError> {
    match args.command {
        Some(BrokerCommand::Apply(apply)) => run_apply(apply).await,
        None => run_controller(args.config, args.run).await,
    }
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, CliError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| CliError::Kube(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| CliError::Kube(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| CliError::Kube(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| CliError::Kube(e.to_string()))
}

async fn run_controller(config: ConfigArgs, run: RunArgs) -> Result<ExitCode, CliError> {
    let mut cfg = config.resolve()?;
    if let Some(c) = run.concurrency {
        cfg.concurrency = c.max(1);
    }
    if let Some(r) = run.resync_seconds {
        cfg.resync_seconds = r;
    }
    let client = kube_client(run.kubeconfig.as_ref()).await?;
    let ca = config.ca()?;
    let ca = ca.as_ref().map(|(p, o)| (p.as_slice(), o.as_str()));
    // The API server may be briefly unreachable at start: wait for it
    // instead of exiting into a crash loop.
    let mut backoff = Duration::from_secs(1);
    let parts = loop {
        match BrokerParts::build(&client, cfg.clone(), ca).await {
            Ok(parts) => break parts,
            Err(error @ crate::controller::StartError::Issuer(_)) => {
                warn!(%error, retry_in = ?backoff, "cannot start yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let identity = run.identity.clone().unwrap_or_else(default_identity);
    info!(issuer = %parts.issuer, cluster = %parts.cfg.cluster_name, %identity, "broker starting");
    let ctx = parts.context(client.clone(), Some(identity.clone()));
    let lock = LeaseLock::new(
        client,
        &run.lease_namespace,
        &run.lease_name,
        &identity,
        Duration::from_secs(run.lease_seconds.max(3)),
    );
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], run.metrics_port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Admin(format!("cannot listen on {addr}: {e}")))?;
    let admin = tokio::spawn(crate::metrics::serve_admin(
        listener,
        parts.metrics.clone(),
        async {
            let _ = admin_stopped.await;
        },
    ));
    run_with_lease(ctx, lock, shutdown_signal()).await;
    let _ = stop_admin.send(());
    match admin.await {
        Ok(Err(e)) => Err(CliError::Admin(e.to_string())),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn default_identity() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("broker-{}", std::process::id()))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run_apply(args: ApplyArgs) -> Result<ExitCode, CliError> {
    let cfg = args.config.resolve()?;
    let issuer = cfg.oidc_issuer.clone().ok_or(CliError::Missing(
        "oidcIssuer (apply has no cluster to discover it from)",
    ))?;
    let sources = crate::apply::read_sources(&args.files)?;
    let ca = args.config.ca()?;
    let http = match &ca {
        Some((pem, origin)) => OidcHttp::with_ca_pem(pem, origin),
        None => OidcHttp::new(Vec::new()),
    }
    .map_err(|e| crate::controller::StartError::Http(e.to_string()))?;
    let aws = AwsClients::load(&AwsConfig {
        region: Some(cfg.region.clone()),
        iam_endpoint: cfg.endpoints.iam.clone(),
        sts_endpoint: cfg.endpoints.sts.clone(),
        credentials: None,
    })
    .await;
    let cfg = Arc::new(cfg);
    let accounts = Accounts::new(aws, cfg.clone(), Arc::new(IamProbe::default()));
    let ttl = Duration::from_secs(3600);
    // Planning never writes: the provider is created (when allowed) only after the plan is shown.
    let gate = TrustGate::new(http.clone(), &issuer, &cfg.audience, false, ttl);
    let items = crate::apply::plan_all(sources, &accounts, &gate).await;
    print!("{}", crate::apply::render_plan(&items));
    let mut failed = items.iter().any(|i| i.outcome.is_err());
    if args.dry_run {
        println!("Dry run: nothing applied.");
        return Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    if cfg.create_oidc_provider {
        let creator = TrustGate::new(http, &issuer, &cfg.audience, true, ttl);
        for item in items
            .iter()
            .filter_map(|i| i.outcome.as_ref().ok())
            .filter(|p| !p.trust.ok)
        {
            if let Ok(clients) = accounts.get(&item.plan.role.account).await {
                let v = creator.check(&clients, &item.plan.role).await;
                println!(
                    "trust {}: {}",
                    if v.ok { "repaired" } else { "still FAIL" },
                    v.message
                );
            }
        }
    }
    for line in crate::apply::execute_all(&items, &accounts).await {
        match line {
            Ok(l) => println!("applied {l}"),
            Err(e) => {
                failed = true;
                println!("failed {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
