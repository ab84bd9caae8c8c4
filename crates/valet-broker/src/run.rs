//! The broker's entry points for the command line: the controller behind
//! its Lease, and `valet broker apply`. They take the resolved
//! [`BrokerConfig`] and plain options; `valet-cli` parses flags into them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use valet_trust::OidcHttp;
use valet_trust::aws::AwsClients;

use crate::accounts::Accounts;
use crate::config::BrokerConfig;
use crate::controller::{BrokerParts, run_with_lease};
use crate::iam::IamProbe;
use crate::lease::LeaseLock;
use crate::trust_gate::TrustGate;

/// Extra CA certificates for reaching the issuer: the PEM and where it came from.
pub type CaPem = Option<(Vec<u8>, String)>;

/// How the controller runs (besides the broker config).
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub kubeconfig: Option<PathBuf>,
    pub lease_name: String,
    /// Namespace of the Lease (the broker's own).
    pub lease_namespace: String,
    /// This replica's identity in the Lease; default: $HOSTNAME.
    pub identity: Option<String>,
    pub lease_seconds: u64,
    /// /healthz fails once one reconcile has run this long.
    pub reconcile_stall_seconds: u64,
    /// Plain-HTTP admin port: /healthz, /readyz, /metrics.
    pub metrics_port: u16,
    pub oidc_ca: CaPem,
}

/// One `valet broker apply`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// YAML files (several documents each; `-` reads stdin).
    pub files: Vec<PathBuf>,
    /// Print the plan and stop: no write to AWS.
    pub dry_run: bool,
    /// Write the annotated ServiceAccount manifests here (for GitOps).
    pub write_service_accounts: Option<PathBuf>,
    pub oidc_ca: CaPem,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("broker config: {0} (pass it in --config or as a flag)")]
    Missing(&'static str),
    #[error(transparent)]
    Kube(#[from] valet_kube::Error),
    #[error(transparent)]
    Start(#[from] crate::controller::StartError),
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    #[error("admin port: {0}")]
    Admin(String),
    #[error("cannot write the plan to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error(
        "cannot write the ServiceAccount manifests into {dir} (check --write-service-accounts): {source}"
    )]
    WriteServiceAccounts { dir: String, source: std::io::Error },
}

/// The plan and its outcome on stdout; a reader that left (`| head`) ends
/// the output, not the apply.
fn say(text: &str) -> Result<(), RunError> {
    valet_core::out::print(text).map_err(RunError::Stdout)
}

/// `valet broker`: runs until SIGTERM or Ctrl-C.
pub async fn run_controller(
    cfg: BrokerConfig,
    run: ControllerOptions,
) -> Result<ExitCode, RunError> {
    let client = valet_kube::client(run.kubeconfig.as_deref()).await?;
    let ca = run
        .oidc_ca
        .as_ref()
        .map(|(p, o)| (p.as_slice(), o.as_str()));
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
    parts
        .metrics
        .health
        .set_stall_after(Duration::from_secs(run.reconcile_stall_seconds));
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
        .map_err(|e| RunError::Admin(format!("cannot listen on {addr}: {e}")))?;
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
        Ok(Err(e)) => Err(RunError::Admin(e.to_string())),
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

/// `valet broker apply`: plan, print, then apply unless `dry_run`.
pub async fn run_apply(cfg: BrokerConfig, args: ApplyOptions) -> Result<ExitCode, RunError> {
    let issuer = cfg.oidc_issuer.clone().ok_or(RunError::Missing(
        "oidcIssuer (apply has no cluster to discover it from)",
    ))?;
    let sources = crate::apply::read_sources(&args.files)?;
    let http = match &args.oidc_ca {
        Some((pem, origin)) => OidcHttp::with_ca_pem(pem, origin),
        None => OidcHttp::new(Vec::new()),
    }
    .map_err(|e| crate::controller::StartError::Http(e.to_string()))?;
    let aws = AwsClients::load(&cfg.aws_config()).await;
    let cfg = Arc::new(cfg);
    let accounts = Accounts::new(aws, cfg.clone(), Arc::new(IamProbe::default()));
    let ttl = Duration::from_secs(3600);
    // Planning never writes: the provider is created (when allowed) only after the plan is shown.
    let gate = TrustGate::new(http.clone(), &issuer, &cfg.audience, false, ttl);
    let mut plans = crate::apply::plan_all(&sources, &accounts, &gate).await;
    say(&crate::apply::render_plan(&plans))?;
    if args.dry_run {
        say("Dry run: nothing applied.\n")?;
        let code = plans.exit_code(false);
        if code == 0 {
            write_service_accounts(&plans, args.write_service_accounts.as_deref())?;
        }
        return Ok(ExitCode::from(code));
    }
    // All or nothing: one refused or unplannable object stops the apply
    // before the first write, so a pipeline never half-applies a change.
    if plans.has_errors() {
        say("Nothing applied: fix the objects marked `! error` above and run again.\n")?;
        return Ok(ExitCode::from(plans.exit_code(false)));
    }
    if !plans.providers.is_empty() {
        let creator = TrustGate::new(http, &issuer, &cfg.audience, true, ttl);
        for line in crate::apply::make_providers(&mut plans, &accounts, &creator).await {
            say(&format!("{line}\n"))?;
        }
    }
    let mut execute_failed = false;
    for line in crate::apply::execute_all(&plans, &accounts).await {
        match line {
            Ok(l) => say(&format!("applied {l}\n"))?,
            Err(e) => {
                execute_failed = true;
                say(&format!("failed {e}\n"))?;
            }
        }
    }
    let code = plans.exit_code(execute_failed);
    if code == 0 {
        write_service_accounts(&plans, args.write_service_accounts.as_deref())?;
    }
    Ok(ExitCode::from(code))
}

/// `--write-service-accounts DIR`: only for a run that succeeded (or a dry
/// run that would), so GitOps never receives an annotation for a role that
/// was refused.
fn write_service_accounts(
    plans: &crate::apply::Plans,
    dir: Option<&std::path::Path>,
) -> Result<(), RunError> {
    let Some(dir) = dir else { return Ok(()) };
    let written = crate::apply::write_service_accounts(plans, dir).map_err(|source| {
        RunError::WriteServiceAccounts {
            dir: dir.display().to_string(),
            source,
        }
    })?;
    for path in written {
        say(&format!("wrote {}\n", path.display()))?;
    }
    Ok(())
}
