//! `--with-trust`: the broker's trust check for each ServiceAccount with a
//! role; FAIL links become error findings, WARN links warnings.

use std::path::PathBuf;

use valet_broker::cli_trust::{TrustCheckArgs, check};
use valet_broker::trust::{OutputFormat, Status, TrustReport};

use crate::facts::Facts;
use crate::judge::{Finding, Kind, Severity};

/// The trust check's own options (issuer, AWS access to the bucket account).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TrustOptions {
    /// With --with-trust: the cluster's issuer URL; default: discovered from the API server.
    #[arg(long, env = "VALET_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// With --with-trust: extra CA certificates (PEM) for the issuer's documents.
    #[arg(long, env = "VALET_ISSUER_CA_FILE")]
    pub issuer_ca_file: Option<PathBuf>,
    /// With --with-trust: provisioning role in the bucket account to assume for IAM reads.
    #[arg(long, env = "VALET_BUCKET_ACCOUNT_ROLE_ARN")]
    pub bucket_account_role_arn: Option<String>,
    /// With --with-trust: external ID the provisioning role requires.
    #[arg(long, env = "VALET_EXTERNAL_ID")]
    pub external_id: Option<String>,
    /// With --with-trust: IAM endpoint override (e.g. a moto server).
    #[arg(long, env = "VALET_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// With --with-trust: STS endpoint override.
    #[arg(long, env = "VALET_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// With --with-trust: AWS region for STS.
    #[arg(long, env = "VALET_AWS_REGION")]
    pub region: Option<String>,
}

/// Converts one trust report into findings on its ServiceAccount.
pub fn findings_of(report: &TrustReport) -> Vec<Finding> {
    report
        .links
        .iter()
        .filter_map(|l| {
            let severity = match l.status {
                Status::Fail => Severity::Error,
                Status::Warn => Severity::Warning,
                Status::Pass | Status::Skip => return None,
            };
            Some(Finding {
                severity,
                kind: Kind::Trust,
                namespace: report.namespace.clone(),
                object: format!("serviceaccount/{}", report.service_account),
                reason: format!(
                    "trust link {} {}: {}",
                    l.link.number(),
                    l.link.name(),
                    l.reason
                ),
                fix: l.fix.clone().unwrap_or_else(|| {
                    format!(
                        "valet trust check -n {} --service-account {}",
                        report.namespace, report.service_account
                    )
                }),
            })
        })
        .collect()
}

/// Runs the chain for every ServiceAccount with a role; a check that cannot
/// run at all is one error finding on that ServiceAccount.
pub async fn check_all(
    facts: &Facts,
    opts: &TrustOptions,
    kubeconfig: Option<PathBuf>,
    annotation_prefix: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for sa in facts
        .service_accounts
        .iter()
        .filter(|s| s.config.role_arn.is_some())
    {
        let args = TrustCheckArgs {
            namespace: sa.namespace.clone(),
            service_account: sa.name.clone(),
            role_arn: None,
            audience: None,
            token_file: None,
            assume: false,
            fix: false,
            output: OutputFormat::Table,
            issuer: opts.issuer.clone(),
            issuer_ca_file: opts.issuer_ca_file.clone(),
            kubeconfig: kubeconfig.clone(),
            annotation_prefix: annotation_prefix.to_string(),
            bucket_account_role_arn: opts.bucket_account_role_arn.clone(),
            external_id: opts.external_id.clone(),
            iam_endpoint: opts.iam_endpoint.clone(),
            sts_endpoint: opts.sts_endpoint.clone(),
            region: opts.region.clone(),
        };
        match check(&args).await {
            Ok(report) => out.extend(findings_of(&report)),
            Err(e) => out.push(Finding {
                severity: Severity::Error,
                kind: Kind::Trust,
                namespace: sa.namespace.clone(),
                object: format!("serviceaccount/{}", sa.name),
                reason: format!("trust check could not run: {e}"),
                fix: format!(
                    "run valet trust check -n {} --service-account {} for details",
                    sa.namespace, sa.name
                ),
            }),
        }
    }
    out
}
