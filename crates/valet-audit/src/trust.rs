//! `--with-trust`: the broker's trust check for each ServiceAccount with a
//! role; FAIL links become error findings, WARN links warnings.

use std::path::PathBuf;

use valet_trust::diagnose::{TrustCheck, check};
use valet_trust::{OutputFormat, Status, TrustReport};

use crate::facts::Facts;
use crate::judge::{Finding, Kind, Severity};

/// The trust check's own options (issuer, AWS access to the bucket account):
/// the same flags as `valet trust check`.
pub use valet_trust::diagnose::TrustTarget as TrustOptions;

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
        let args = TrustCheck {
            namespace: sa.namespace.clone(),
            service_account: sa.name.clone(),
            role_arn: None,
            audience: None,
            token_file: None,
            assume: false,
            fix: false,
            output: OutputFormat::Table,
            kubeconfig: kubeconfig.clone(),
            annotation_prefix: annotation_prefix.to_string(),
            target: opts.clone(),
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
