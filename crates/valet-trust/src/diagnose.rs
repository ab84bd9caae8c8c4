//! `valet trust check` as a library call: the OIDC trust chain of one
//! ServiceAccount, link by link, with the fix for each broken link. The
//! command line (`valet-cli`) fills [`TrustCheck`]; `valet audit
//! --with-trust` fills the same struct for every ServiceAccount.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use valet_core::arn::RoleArn;
use valet_core::consts::{ANN_AUDIENCE, ANN_ROLE_ARN, DEFAULT_TOKEN_AUDIENCE};

use crate::aws::{AwsClients, AwsConfig};
use crate::{
    ChainInput, Link, LinkResult, OidcHttp, OutputFormat, SecretToken, TokenSource, TrustChecker,
    TrustError, TrustReport, render,
};

/// One `valet trust check`: whose chain, and how to reach each link.
#[derive(Clone, Debug)]
pub struct TrustCheck {
    pub namespace: String,
    pub service_account: String,
    /// Role in the bucket account; default: the ServiceAccount's role-arn annotation.
    pub role_arn: Option<String>,
    /// Token audience; default: the ServiceAccount's audience annotation, else sts.amazonaws.com.
    pub audience: Option<String>,
    /// Verify this token instead of requesting one (TokenRequest).
    pub token_file: Option<PathBuf>,
    /// Also call sts:AssumeRoleWithWebIdentity with the token.
    pub assume: bool,
    /// Create or repair the IAM OIDC provider; changes nothing else.
    pub fix: bool,
    pub output: OutputFormat,
    pub kubeconfig: Option<PathBuf>,
    pub annotation_prefix: String,
    pub target: TrustTarget,
}

/// Where the chain is checked: the issuer and AWS access to the bucket account.
#[derive(Clone, Debug, Default)]
pub struct TrustTarget {
    /// The cluster's issuer URL; default: discovered from the API server.
    pub issuer: Option<String>,
    /// Extra CA certificates (PEM) to trust when fetching the issuer's documents.
    pub issuer_ca_file: Option<PathBuf>,
    /// Provisioning role in the bucket account to assume for IAM reads (and fix).
    pub bucket_account_role_arn: Option<String>,
    pub external_id: Option<String>,
    pub iam_endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    /// AWS region for STS; default: the SDK's.
    pub region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("cannot write the report to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot read --oidc-ca-file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
}

/// Checks, prints the report on stdout; exit 0 when no link FAILs, else 1.
pub async fn run(args: TrustCheck) -> Result<ExitCode, Error> {
    let report = check(&args).await?;
    valet_core::out::print(&render(&report, args.output)).map_err(Error::Stdout)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report `run` prints.
pub async fn check(args: &TrustCheck) -> Result<TrustReport, Error> {
    let http = match &args.target.issuer_ca_file {
        Some(path) => {
            let pem = tokio::fs::read(path)
                .await
                .map_err(|source| Error::CaFile {
                    path: path.display().to_string(),
                    source,
                })?;
            OidcHttp::with_ca_pem(&pem, &path.display().to_string())?
        }
        None => OidcHttp::new(Vec::new())?,
    };
    let (ns, sa) = (args.namespace.as_str(), args.service_account.as_str());
    let needs_kube = args.target.issuer.is_none()
        || args.token_file.is_none()
        || args.role_arn.is_none()
        || args.audience.is_none();
    let kube = if needs_kube {
        Some(kube_client(args.kubeconfig.as_deref()).await)
    } else {
        None
    };

    // The ServiceAccount supplies the role and audience the pod would get.
    let sa_obj = match &kube {
        Some(Ok(c)) if args.role_arn.is_none() || args.audience.is_none() => Some(
            Api::<ServiceAccount>::namespaced(c.clone(), ns)
                .get_opt(sa)
                .await
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    let annotation = |suffix: &str| -> Option<String> {
        let key = format!("{}/{suffix}", args.annotation_prefix);
        match &sa_obj {
            Some(Ok(Some(obj))) => obj.metadata.annotations.as_ref()?.get(&key).cloned(),
            _ => None,
        }
    };
    let audience = args
        .audience
        .clone()
        .or_else(|| annotation(ANN_AUDIENCE))
        .unwrap_or_else(|| DEFAULT_TOKEN_AUDIENCE.to_string());
    let role_arn = resolve_role(args, &kube, &sa_obj, annotation(ANN_ROLE_ARN));

    let issuer = match &args.target.issuer {
        Some(i) => Ok(i.clone()),
        None => match &kube {
            Some(Ok(c)) => discover_issuer(c)
                .await
                .map_err(|e| format!("cannot discover the issuer from the API server: {e}")),
            Some(Err(e)) => Err(format!(
                "cannot reach the API server to discover the issuer: {e}"
            )),
            None => Err("no issuer".to_string()),
        },
    };
    let issuer = match issuer {
        Ok(i) => i,
        Err(reason) => return Ok(issuer_unknown(args, &audience, &role_arn, reason)),
    };

    let token = match (&args.token_file, &kube) {
        (Some(path), _) => match SecretToken::from_file(path).await {
            Ok(t) => TokenSource::Provided(t),
            Err(e) => TokenSource::Failed(LinkResult::fail(
                Link::Token,
                e.to_string(),
                "pass a readable token file (a projected token volume's token)",
            )),
        },
        (None, Some(Ok(c))) => TokenSource::Request(c.clone()),
        (None, Some(Err(e))) => TokenSource::Failed(LinkResult::fail(
            Link::Token,
            format!("cannot reach the API server for a TokenRequest: {e}"),
            "pass --kubeconfig, or a token with --token-file",
        )),
        (None, None) => TokenSource::None,
    };

    let aws_config = AwsConfig {
        region: args.target.region.clone(),
        iam_endpoint: args.target.iam_endpoint.clone(),
        sts_endpoint: args.target.sts_endpoint.clone(),
        credentials: None,
    };
    let base = AwsClients::load(&aws_config).await;
    let aws = match &args.target.bucket_account_role_arn {
        Some(role) => base
            .assume_checked(
                role,
                args.target.external_id.as_deref(),
                "valet-trust-check",
            )
            .await
            .map_err(|e| e.to_string()),
        None => Ok(base),
    };
    let checker = TrustChecker::new(http, aws);
    let input = ChainInput {
        issuer,
        namespace: ns.to_string(),
        service_account: sa.to_string(),
        role_arn,
        audience,
        token,
        assume: args.assume,
        fix: args.fix,
    };
    Ok(checker.check_chain(&input).await)
}

type SaLookup = Option<Result<Option<ServiceAccount>, String>>;

fn resolve_role(
    args: &TrustCheck,
    kube: &Option<Result<kube::Client, String>>,
    sa_obj: &SaLookup,
    annotated: Option<String>,
) -> Result<RoleArn, LinkResult> {
    let (ns, sa) = (&args.namespace, &args.service_account);
    let key = format!("{}/{ANN_ROLE_ARN}", args.annotation_prefix);
    let bad = |value: &str, e: valet_core::arn::ArnError, from: &str| {
        LinkResult::fail(
            Link::RoleTrust,
            format!("{from}: {e}"),
            format!(
                "kubectl -n {ns} annotate --overwrite serviceaccount {sa} {key}=arn:aws:iam::ACCOUNT:role/NAME (was {value:?})"
            ),
        )
    };
    if let Some(arn) = &args.role_arn {
        return RoleArn::parse(arn).map_err(|e| bad(arn, e, "--role-arn"));
    }
    if let Some(arn) = annotated {
        return RoleArn::parse(&arn).map_err(|e| bad(&arn, e, &format!("annotation {key}")));
    }
    let fix = format!(
        "kubectl -n {ns} annotate serviceaccount {sa} {key}=arn:aws:iam::ACCOUNT:role/NAME, or pass --role-arn"
    );
    let reason = match (kube, sa_obj) {
        (Some(Err(e)), _) => format!("no --role-arn, and the API server is unreachable: {e}"),
        (_, Some(Err(e))) => {
            format!("no --role-arn, and reading ServiceAccount {ns}/{sa} failed: {e}")
        }
        (_, Some(Ok(None))) => {
            format!("no --role-arn, and ServiceAccount {ns}/{sa} does not exist")
        }
        _ => format!("no --role-arn, and ServiceAccount {ns}/{sa} has no {key} annotation"),
    };
    Err(LinkResult::fail(Link::RoleTrust, reason, fix))
}

/// A report for a chain whose issuer is unknown: nothing else can run.
fn issuer_unknown(
    args: &TrustCheck,
    audience: &str,
    role: &Result<RoleArn, LinkResult>,
    reason: String,
) -> TrustReport {
    let mut links = vec![LinkResult::fail(
        Link::Issuer,
        reason,
        "pass --oidc-issuer https://... (the API server's --service-account-issuer), or a --kubeconfig that reaches the API server",
    )];
    links.extend(
        Link::ALL[1..]
            .iter()
            .map(|l| LinkResult::skip(*l, "needs the issuer (link 1)")),
    );
    TrustReport {
        namespace: args.namespace.clone(),
        service_account: args.service_account.clone(),
        role_arn: role.as_ref().ok().map(|r| r.to_string()),
        audience: audience.to_string(),
        issuer: None,
        fixed: Vec::new(),
        links,
    }
}

async fn kube_client(path: Option<&Path>) -> Result<kube::Client, String> {
    valet_kube::client(path).await.map_err(|e| e.to_string())
}

/// The issuer the API server advertises (what `--service-account-issuer` says).
async fn discover_issuer(client: &kube::Client) -> Result<String, String> {
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client.request_text(req).await.map_err(|e| {
        format!("GET /.well-known/openid-configuration on the API server failed: {e}")
    })?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the API server's discovery document is not JSON: {e}"))?;
    doc.get("issuer")
        .and_then(|i| i.as_str())
        .map(str::to_string)
        .ok_or_else(|| "the API server's discovery document has no issuer".to_string())
}
