//! [`TrustChecker`]: each link as a method (what the broker's controller
//! calls) and [`TrustChecker::check_chain`], the whole ladder in order (what
//! `valet trust check` prints).

use reqwest::Url;
use tracing::debug;
use valet_core::arn::RoleArn;

use super::assume::check_assume;
use super::discovery::{self, Discovery, parse_issuer};
use super::http::OidcHttp;
use super::jwks::{self, Jwks};
use super::provider::{self, ProviderRef, get_provider, judge_provider};
use super::role;
use super::token::{Expected, SecretToken, request_token, verify_token};
use super::{Link, LinkResult, Status, TrustError, TrustReport};
use crate::aws::AwsClients;

/// Where link 3's token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// TokenRequest through the API server, as the kubelet asks for one.
    Request(kube::Client),
    /// A token read elsewhere (`--token-file`).
    Provided(SecretToken),
    /// No token: link 3 (and 6) are skipped.
    None,
    /// Getting a token already failed (link 3 shows the verdict).
    Failed(LinkResult),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Request(_) => f.write_str("TokenSource::Request"),
            TokenSource::Provided(t) => write!(f, "TokenSource::Provided({t:?})"),
            TokenSource::None => f.write_str("TokenSource::None"),
            TokenSource::Failed(r) => write!(f, "TokenSource::Failed({r:?})"),
        }
    }
}

/// One ServiceAccount's chain.
#[derive(Clone, Debug)]
pub struct ChainInput {
    pub issuer: String,
    pub namespace: String,
    pub service_account: String,
    /// The role, or the verdict on why there is none (link 5 shows it).
    pub role_arn: Result<RoleArn, LinkResult>,
    pub audience: String,
    pub token: TokenSource,
    /// Run link 6 (`AssumeRoleWithWebIdentity`).
    pub assume: bool,
    /// Create or repair the IAM OIDC provider (link 4) and nothing else.
    pub fix: bool,
}

/// Checks links against one issuer-facing HTTP client and one set of AWS
/// clients acting in the bucket account.
#[derive(Clone, Debug)]
pub struct TrustChecker {
    http: OidcHttp,
    /// Clients in the bucket account, or why there are none (links 4-6
    /// fail with it).
    aws: Result<AwsClients, String>,
    /// How the caller repairs the IAM OIDC provider itself, appended to
    /// link 4's fix (each command has its own switch for it).
    repair: &'static str,
}

/// `valet trust check`'s switch that repairs the provider.
pub const REPAIR_BY_TRUST_CHECK: &str = "or rerun with --fix";

impl TrustChecker {
    pub fn new(http: OidcHttp, aws: Result<AwsClients, String>) -> TrustChecker {
        TrustChecker {
            http,
            aws,
            repair: REPAIR_BY_TRUST_CHECK,
        }
    }

    /// Names the caller's own way to repair the provider in link 4's fixes.
    pub fn with_repair_hint(mut self, repair: &'static str) -> TrustChecker {
        self.repair = repair;
        self
    }

    /// Link 1.
    pub async fn check_issuer(&self, issuer: &str) -> (LinkResult, Option<Discovery>) {
        discovery::check_issuer(&self.http, issuer).await
    }

    /// Link 2.
    pub async fn check_keys(&self, discovery: &Discovery) -> (LinkResult, Option<Jwks>) {
        jwks::check_keys(&self.http, discovery).await
    }

    /// Link 3, for a token in hand.
    pub fn check_token(
        &self,
        token: &SecretToken,
        jwks: &Jwks,
        issuer: &str,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) -> LinkResult {
        let want = Expected {
            issuer,
            namespace,
            service_account,
            audience,
            now: jsonwebtoken::get_current_timestamp() as i64,
        };
        verify_token(token, jwks, &want)
    }

    /// SHA-1 of the top certificate served by the JWKS host (the issuer's
    /// host when discovery is unknown).
    pub async fn thumbprint(
        &self,
        issuer: &str,
        discovery: Option<&Discovery>,
    ) -> Result<String, String> {
        let url = discovery
            .and_then(Discovery::jwks_url)
            .filter(|u| u.scheme() == "https")
            .or_else(|| Url::parse(issuer).ok())
            .ok_or_else(|| format!("no https URL to connect to (issuer {issuer:?})"))?;
        self.http
            .top_certificate_thumbprint(&url)
            .await
            .map_err(|e| e.to_string())
    }

    /// Link 4.
    pub async fn check_provider(
        &self,
        provider: &ProviderRef,
        audience: &str,
        thumbprint: &Result<String, String>,
    ) -> LinkResult {
        let aws = match &self.aws {
            Ok(a) => a,
            Err(why) => return aws_unavailable(Link::Provider, why),
        };
        match get_provider(aws.iam(), provider).await {
            Ok(state) => {
                judge_provider(provider, state.as_ref(), audience, thumbprint, self.repair)
            }
            Err(message) => LinkResult::fail(
                Link::Provider,
                format!("cannot read {}: {message}", provider.arn()),
                "allow iam:GetOpenIDConnectProvider to the credentials valet uses (--bucket-account-role-arn for another account)",
            ),
        }
    }

    /// Creates or repairs the provider (client ID, thumbprint). Returns the
    /// changes made.
    pub async fn ensure_provider(
        &self,
        provider: &ProviderRef,
        audience: &str,
        thumbprint: Option<&str>,
    ) -> Result<Vec<String>, TrustError> {
        let aws = self.aws.as_ref().map_err(|why| TrustError::Iam {
            op: "CreateOpenIDConnectProvider",
            arn: provider.arn(),
            message: why.clone(),
        })?;
        provider::ensure_provider(aws.iam(), provider, audience, thumbprint).await
    }

    /// Link 5.
    pub async fn check_role_trust(
        &self,
        role: &RoleArn,
        provider: &ProviderRef,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) -> LinkResult {
        match &self.aws {
            Ok(aws) => {
                role::check_role_trust(
                    aws.iam(),
                    role,
                    provider,
                    namespace,
                    service_account,
                    audience,
                )
                .await
            }
            Err(why) => aws_unavailable(Link::RoleTrust, why),
        }
    }

    /// Link 6.
    pub async fn check_assume(&self, role: &RoleArn, token: &SecretToken) -> LinkResult {
        match &self.aws {
            Ok(aws) => check_assume(aws, role, token).await,
            Err(why) => aws_unavailable(Link::Assume, why),
        }
    }

    /// The bucket account (and partition) IAM calls act in, checked against
    /// the role's account when there is a role.
    async fn bucket_account(
        &self,
        role: Option<&RoleArn>,
    ) -> Result<(String, String), (String, String)> {
        let aws = self
            .aws
            .as_ref()
            .map_err(|why| (why.clone(), aws_fix().to_string()))?;
        let caller = aws
            .caller_identity()
            .await
            .map_err(|e| (e.to_string(), aws_fix().to_string()))?;
        let partition = caller.arn.split(':').nth(1).unwrap_or("aws").to_string();
        match role {
            Some(r) if r.account_id() != caller.account => Err((
                format!(
                    "AWS credentials act in account {} ({}), but role {r} is in account {}",
                    caller.account,
                    caller.arn,
                    r.account_id()
                ),
                format!(
                    "pass --bucket-account-role-arn arn:{}:iam::{}:role/PROVISIONING-ROLE (and --external-id if it requires one)",
                    r.partition(),
                    r.account_id()
                ),
            )),
            Some(r) => Ok((r.partition().to_string(), r.account_id().to_string())),
            None => Ok((partition, caller.account)),
        }
    }

    /// Every link, in order. Links that need an earlier link's output are
    /// SKIP when it is missing; the others still run, so one report shows
    /// every broken link at once.
    pub async fn check_chain(&self, input: &ChainInput) -> TrustReport {
        let mut links = Vec::new();
        let mut fixed = Vec::new();
        let ns = input.namespace.as_str();
        let sa = input.service_account.as_str();
        let aud = input.audience.as_str();

        let (issuer_result, disc) = self.check_issuer(&input.issuer).await;
        let issuer_usable = parse_issuer(&input.issuer).is_ok();
        let issuer_failed = issuer_result.status == Status::Fail;
        links.push(issuer_result);

        let jwks = match &disc {
            Some(d) => {
                let (r, j) = self.check_keys(d).await;
                links.push(r);
                j
            }
            None => {
                links.push(LinkResult::skip(
                    Link::Keys,
                    "needs the discovery document (link 1)",
                ));
                None
            }
        };

        let token = match &input.token {
            TokenSource::Request(client) => request_token(client, ns, sa, aud).await,
            TokenSource::Provided(t) => Ok(t.clone()),
            TokenSource::Failed(verdict) => Err(verdict.clone()),
            TokenSource::None => Err(LinkResult::skip(
                Link::Token,
                "no token: pass --token-file, or a kubeconfig allowed to create serviceaccounts/token",
            )),
        };
        match (&token, &jwks) {
            (Err(verdict), _) => links.push(verdict.clone()),
            (Ok(_), None) => links.push(LinkResult::skip(Link::Token, "needs the JWKS (link 2)")),
            (Ok(t), Some(j)) => links.push(self.check_token(t, j, &input.issuer, ns, sa, aud)),
        }

        let role = input.role_arn.as_ref().ok();
        let account = if issuer_usable {
            Some(self.bucket_account(role).await)
        } else {
            None
        };
        let provider = match &account {
            None => {
                links.push(LinkResult::skip(
                    Link::Provider,
                    "needs an https issuer (link 1)",
                ));
                None
            }
            Some(Err((reason, fix))) => {
                links.push(LinkResult::fail(
                    Link::Provider,
                    reason.clone(),
                    fix.clone(),
                ));
                None
            }
            Some(Ok((partition, account))) => {
                let p = ProviderRef::new(partition, account, &input.issuer);
                let tp = self.thumbprint(&input.issuer, disc.as_ref()).await;
                let mut r = self.check_provider(&p, aud, &tp).await;
                if input.fix && r.status != Status::Pass {
                    if issuer_failed {
                        // A provider for an issuer STS cannot use would only
                        // hide the real problem.
                        r.reason
                            .push_str("; --fix left the provider alone because link 1 fails");
                    } else {
                        match self.ensure_provider(&p, aud, tp.as_deref().ok()).await {
                            Ok(done) => {
                                fixed.extend(done);
                                r = self.check_provider(&p, aud, &tp).await;
                            }
                            Err(e) => r.reason.push_str(&format!("; --fix failed: {e}")),
                        }
                    }
                }
                links.push(r);
                Some(p)
            }
        };

        match (&input.role_arn, &provider, &account) {
            (Err(verdict), _, _) => links.push(verdict.clone()),
            (Ok(_), _, Some(Err((reason, fix)))) => links.push(LinkResult::fail(
                Link::RoleTrust,
                reason.clone(),
                fix.clone(),
            )),
            (Ok(r), Some(p), _) => links.push(self.check_role_trust(r, p, ns, sa, aud).await),
            (Ok(_), None, _) => links.push(LinkResult::skip(
                Link::RoleTrust,
                "needs an https issuer (link 1)",
            )),
        }

        let assume = match (input.assume, role, &token) {
            (false, _, _) => LinkResult::skip(
                Link::Assume,
                "not requested: add --assume to call sts:AssumeRoleWithWebIdentity with the token",
            ),
            // Run even after a failed link 3: what STS itself answers is
            // the point of the live test.
            (true, Some(r), Ok(t)) => self.check_assume(r, t).await,
            (true, None, _) => LinkResult::skip(Link::Assume, "needs a role ARN (link 5)"),
            (true, _, Err(_)) => LinkResult::skip(Link::Assume, "needs a token (link 3)"),
        };
        links.push(assume);

        for l in &links {
            debug!(%ns, %sa, link = l.link.name(), status = l.status.as_str(), reason = %l.reason, "trust link checked");
        }
        TrustReport {
            namespace: input.namespace.clone(),
            service_account: input.service_account.clone(),
            role_arn: role.map(|r| r.to_string()),
            audience: input.audience.clone(),
            issuer: Some(input.issuer.clone()),
            fixed,
            links,
        }
    }
}

fn aws_fix() -> &'static str {
    "provide AWS credentials (default chain: env, profile, web identity, IMDS); for another account pass --bucket-account-role-arn and --external-id"
}

fn aws_unavailable(link: Link, why: &str) -> LinkResult {
    LinkResult::fail(link, format!("no AWS access: {why}"), aws_fix())
}
