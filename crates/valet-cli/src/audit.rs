//! `valet audit`: clap arguments, turned into [`valet_audit::cli::AuditOptions`].

use std::path::PathBuf;

use valet_audit::cli::{AuditOptions, Output};
use valet_audit::judge::Severity;
use valet_core::consts::DEFAULT_ANNOTATION_PREFIX;

use crate::trust::TrustTargetArgs;

/// `valet audit [--namespace NS | --all-namespaces] [-o table|json|dot] ...`
#[derive(clap::Args, Clone, Debug)]
pub struct AuditArgs {
    /// Audit this namespace only.
    #[arg(
        long,
        short = 'n',
        env = "VALET_AUDIT_NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Audit every namespace (the default when --namespace is not given).
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Report format: a table for people, JSON (audit-schema.json) for tools, or a DOT graph.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value_t,
        env = "VALET_AUDIT_OUTPUT"
    )]
    pub output: Output,
    /// Exit 1 when a finding of this severity or worse exists.
    #[arg(
        long,
        value_enum,
        default_value = "warning",
        env = "VALET_AUDIT_FAIL_ON"
    )]
    pub fail_on: Severity,
    /// Also check each role's OIDC trust chain (as `valet trust check` does).
    #[arg(long, env = "VALET_AUDIT_WITH_TRUST")]
    pub with_trust: bool,
    /// Include Succeeded and Failed pods.
    #[arg(long, env = "VALET_AUDIT_INCLUDE_COMPLETED")]
    pub include_completed: bool,
    #[arg(long, env = valet_kube::ENV, help = valet_kube::HELP)]
    pub kubeconfig: Option<PathBuf>,
    /// The webhook's --annotation-prefix.
    #[arg(long, env = "VALET_ANNOTATION_PREFIX", default_value = DEFAULT_ANNOTATION_PREFIX)]
    pub annotation_prefix: String,
    /// Objects per list request.
    #[arg(long, env = "VALET_AUDIT_PAGE_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    #[command(flatten)]
    pub trust: TrustTargetArgs,
    /// The broker's config file: also list the broker's IAM roles in its bucket
    /// accounts (iam:ListRoles, iam:ListRoleTags through the provisioning roles)
    /// and report those no BucketAccess explains.
    #[arg(long, env = "VALET_BROKER_CONFIG")]
    pub broker_config: Option<PathBuf>,
}

impl From<AuditArgs> for AuditOptions {
    fn from(a: AuditArgs) -> AuditOptions {
        AuditOptions {
            namespace: a.namespace,
            output: a.output,
            fail_on: a.fail_on,
            with_trust: a.with_trust,
            include_completed: a.include_completed,
            kubeconfig: a.kubeconfig,
            annotation_prefix: a.annotation_prefix,
            page_size: a.page_size,
            trust: a.trust.into(),
            broker_config: a.broker_config,
        }
    }
}
