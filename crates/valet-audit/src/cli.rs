//! `valet audit`: collect, judge, render, and an exit code for CI.
//!
//! Exit codes: 0 no finding at or above `--fail-on`; 1 such findings exist;
//! 2 the audit could not run (unreachable API server, bad kubeconfig).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use valet_core::settings::AnnotationKeys;

use crate::collect::{CollectError, Scope, collect};
use crate::judge::{Severity, judge};
use crate::trust::{TrustOptions, check_all};
use crate::{dot, report, table};

/// Exit code when findings at or above `--fail-on` exist.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code when the audit could not run (`main` maps `Err` to it).
pub const EXIT_ERROR: u8 = 2;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
    Dot,
}

/// One audit: what to collect and how to judge it (`valet-cli` fills it from flags).
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// This namespace only; every namespace when absent.
    pub namespace: Option<String>,
    pub output: Output,
    /// Exit 1 when a finding of this severity or worse exists.
    pub fail_on: Severity,
    /// Also check each role's OIDC trust chain (as `valet trust check` does).
    pub with_trust: bool,
    /// Include Succeeded and Failed pods.
    pub include_completed: bool,
    pub kubeconfig: Option<PathBuf>,
    /// The webhook's --annotation-prefix.
    pub annotation_prefix: String,
    /// Objects per list request.
    pub page_size: u32,
    pub trust: TrustOptions,
    /// The broker's config: list its roles in the bucket accounts it names
    /// (through their provisioning roles) and report those no BucketAccess explains.
    pub broker_config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] valet_kube::Error),
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("cannot write the report to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("--broker-config: {0}")]
    BrokerConfig(#[from] valet_broker::config::ConfigError),
}

pub async fn client(path: Option<&Path>) -> Result<kube::Client, Error> {
    Ok(valet_kube::client(path).await?)
}

/// Collects and judges; the report is what every output renders.
pub async fn audit(client: &kube::Client, args: &AuditOptions) -> Result<report::Report, Error> {
    let scope = Scope {
        namespace: args.namespace.clone(),
        include_completed: args.include_completed,
        page_size: args.page_size,
        keys: AnnotationKeys::new(&args.annotation_prefix),
    };
    let mut facts = collect(client, &scope).await?;
    if let Some(path) = &args.broker_config {
        let cfg = valet_broker::config::BrokerConfig::load(path)?;
        if facts.bucket_accesses_listed {
            crate::roles::collect_roles(cfg, args.namespace.as_deref(), &mut facts).await;
        } else {
            facts
                .notes
                .push("BucketAccesses not listed: the broker's roles not checked".into());
        }
    }
    if args.with_trust {
        facts.extra = check_all(
            &facts,
            &args.trust,
            args.kubeconfig.clone(),
            &args.annotation_prefix,
        )
        .await;
    }
    let findings = judge(&facts);
    Ok(report::build(args.namespace.clone(), facts, findings))
}

pub fn render(r: &report::Report, output: Output) -> Result<String, Error> {
    Ok(match output {
        Output::Table => table::render(r),
        Output::Json => serde_json::to_string_pretty(r)? + "\n",
        Output::Dot => dot::render(r),
    })
}

/// The exit code for a report under `--fail-on`.
pub fn exit_code(r: &report::Report, fail_on: Severity) -> ExitCode {
    if r.findings.iter().any(|f| f.severity >= fail_on) {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the report on stdout. `Err` means the audit could not run: exit 2.
pub async fn run(args: AuditOptions) -> Result<ExitCode, Error> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let r = audit(&client, &args).await?;
    valet_core::out::print(&render(&r, args.output)?).map_err(Error::Stdout)?;
    Ok(exit_code(&r, args.fail_on))
}
