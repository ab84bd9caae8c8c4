//! `valet trust check`: clap arguments, turned into [`valet_trust::diagnose::TrustCheck`].

use std::path::PathBuf;
use std::process::ExitCode;

use valet_core::consts::DEFAULT_ANNOTATION_PREFIX;
use valet_trust::OutputFormat;
use valet_trust::diagnose::{self, TrustCheck, TrustTarget};

/// `valet trust check --namespace NS --service-account SA [...]`
#[derive(clap::Args, Clone, Debug)]
pub struct TrustCheckArgs {
    /// Namespace of the ServiceAccount.
    #[arg(long, short = 'n', env = "VALET_TRUST_NAMESPACE")]
    pub namespace: String,
    /// The ServiceAccount whose chain is checked.
    #[arg(long, env = "VALET_TRUST_SERVICE_ACCOUNT")]
    pub service_account: String,
    /// Role in the bucket account; default: the ServiceAccount's
    /// `<annotation-prefix>/role-arn` annotation.
    #[arg(long, env = "VALET_TRUST_ROLE_ARN")]
    pub role_arn: Option<String>,
    /// Token audience; default: the ServiceAccount's `<prefix>/audience`
    /// annotation, else sts.amazonaws.com.
    #[arg(long, env = "VALET_TRUST_AUDIENCE")]
    pub audience: Option<String>,
    /// Verify this token instead of requesting one (TokenRequest).
    #[arg(long, env = "VALET_TRUST_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Also call sts:AssumeRoleWithWebIdentity with the token.
    #[arg(long, env = "VALET_TRUST_ASSUME")]
    pub assume: bool,
    /// Create or repair the IAM OIDC provider (client ID, thumbprint); changes nothing else.
    #[arg(long, env = "VALET_TRUST_FIX")]
    pub fix: bool,
    /// Report format: PASS/WARN/FAIL lines for people, or JSON for tools.
    #[arg(
        long,
        short = 'o',
        value_enum,
        default_value_t,
        env = "VALET_TRUST_OUTPUT"
    )]
    pub output: OutputFormat,
    #[arg(long, env = valet_kube::ENV, help = valet_kube::HELP)]
    pub kubeconfig: Option<PathBuf>,
    /// The webhook's --annotation-prefix (where the role-arn annotation is read).
    #[arg(long, env = "VALET_ANNOTATION_PREFIX", default_value = DEFAULT_ANNOTATION_PREFIX)]
    pub annotation_prefix: String,
    #[command(flatten)]
    pub target: TrustTargetArgs,
}

/// Where the chain is checked: the issuer and AWS access to the bucket
/// account. Shared with `valet audit --with-trust`, so both take the same flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TrustTargetArgs {
    /// The cluster's issuer URL; default: discovered from the API server's
    /// /.well-known/openid-configuration.
    #[arg(long = "oidc-issuer", alias = "issuer", env = "VALET_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// Extra CA certificates (PEM) to trust when fetching the issuer's documents.
    #[arg(
        long = "oidc-ca-file",
        alias = "issuer-ca-file",
        env = "VALET_OIDC_CA_FILE"
    )]
    pub issuer_ca_file: Option<PathBuf>,
    /// Provisioning role in the bucket account to assume for IAM reads (and --fix).
    #[arg(long, env = "VALET_BUCKET_ACCOUNT_ROLE_ARN")]
    pub bucket_account_role_arn: Option<String>,
    /// External ID the provisioning role requires.
    #[arg(long, env = "VALET_EXTERNAL_ID")]
    pub external_id: Option<String>,
    /// IAM endpoint override (e.g. a moto server).
    #[arg(long, env = "VALET_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// STS endpoint override.
    #[arg(long, env = "VALET_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// AWS region for STS; default: the SDK's (AWS_REGION, profile).
    #[arg(long, env = "VALET_AWS_REGION")]
    pub region: Option<String>,
}

impl From<TrustTargetArgs> for TrustTarget {
    fn from(a: TrustTargetArgs) -> TrustTarget {
        TrustTarget {
            issuer: a.issuer,
            issuer_ca_file: a.issuer_ca_file,
            bucket_account_role_arn: a.bucket_account_role_arn,
            external_id: a.external_id,
            iam_endpoint: a.iam_endpoint,
            sts_endpoint: a.sts_endpoint,
            region: a.region,
        }
    }
}

impl From<TrustCheckArgs> for TrustCheck {
    fn from(a: TrustCheckArgs) -> TrustCheck {
        TrustCheck {
            namespace: a.namespace,
            service_account: a.service_account,
            role_arn: a.role_arn,
            audience: a.audience,
            token_file: a.token_file,
            assume: a.assume,
            fix: a.fix,
            output: a.output,
            kubeconfig: a.kubeconfig,
            annotation_prefix: a.annotation_prefix,
            target: a.target.into(),
        }
    }
}

/// Checks, prints the report on stdout; exit 0 when no link FAILs, else 1.
pub async fn run(args: TrustCheckArgs) -> Result<ExitCode, diagnose::Error> {
    diagnose::run(args.into()).await
}

/// The report `run` prints.
pub async fn check(args: &TrustCheckArgs) -> Result<valet_trust::TrustReport, diagnose::Error> {
    diagnose::check(&args.clone().into()).await
}
