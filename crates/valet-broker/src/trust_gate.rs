//! The broker's `TrustValid` condition: the trust library's links 1, 2, 4
//! and 5 for each BucketAccess, with the costly ones cached.
//!
//! Issuer and keys (links 1-2) are the same for every object and the OIDC
//! provider (link 4) is the same for every object of a bucket account, so
//! they are checked once per `ttl`, not once per object: the steady state
//! stays cheap. Link 5 runs on the trust policy the broker writes, which is
//! pure. Link 3 (a real token) and 6 (a live assume) belong to
//! `valet trust check`; they would cost a TokenRequest and an STS call per
//! object per resync.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::info;
use valet_trust::policy_check::{WebIdentity, analyse};
use valet_trust::{LinkResult, OidcHttp, ProviderRef, Status, TrustChecker};

use crate::accounts::AccountClients;
use crate::provision::DesiredRole;

/// The verdict, shaped for a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustVerdict {
    pub ok: bool,
    pub reason: String,
    /// What is wrong and, when known, the fix (`... Fix: ...`).
    pub message: String,
    /// What is wrong, without the fix (a plan that makes the fix itself
    /// shows only this); empty when the chain holds.
    pub problem: String,
}

impl TrustVerdict {
    fn pass(message: String) -> TrustVerdict {
        TrustVerdict {
            ok: true,
            reason: "TrustChainValid".into(),
            message,
            problem: String::new(),
        }
    }
    fn from_link(r: &LinkResult, reason: &str) -> TrustVerdict {
        let fix = r
            .fix
            .as_deref()
            .map(|f| format!(" Fix: {f}"))
            .unwrap_or_default();
        TrustVerdict {
            ok: false,
            reason: reason.into(),
            message: format!("{}{fix}", r.reason),
            problem: r.reason.clone(),
        }
    }
}

/// Links 1-2 passed with the provider thumbprint (or why it is unknown),
/// or the failing verdict.
type IssuerLinks = Result<Result<String, String>, TrustVerdict>;

/// The verdict's reason when link 4 (the IAM OIDC provider) fails.
pub const PROVIDER_INVALID: &str = "OidcProviderInvalid";

/// A failure is re-checked sooner than a success: a fixed issuer or
/// provider should not wait a whole resync period.
const FAILURE_TTL: Duration = Duration::from_secs(15);

/// The broker's own switch that creates or repairs the IAM OIDC provider
/// (`broker apply` has no `--fix`).
const REPAIR_BY_BROKER: &str =
    "or let the broker do it: --create-oidc-provider, or createOidcProvider: true in --config";

pub struct TrustGate {
    http: OidcHttp,
    issuer: String,
    audience: String,
    create_provider: bool,
    ttl: Duration,
    /// Links 1-2 and the thumbprint for link 4.
    issuer_cache: Mutex<Option<(Instant, IssuerLinks)>>,
    provider_cache: Mutex<HashMap<String, (Instant, Option<TrustVerdict>)>>,
}

impl TrustGate {
    pub fn new(
        http: OidcHttp,
        issuer: &str,
        audience: &str,
        create_provider: bool,
        ttl: Duration,
    ) -> TrustGate {
        TrustGate {
            http,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            create_provider,
            ttl,
            issuer_cache: Mutex::new(None),
            provider_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Drops cached verdicts: the next check asks the issuer and IAM again
    /// (after a fix that should not wait for the cache to expire).
    pub async fn forget(&self) {
        *self.issuer_cache.lock().await = None;
        self.provider_cache.lock().await.clear();
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The IAM OIDC provider `role`'s trust policy names.
    pub fn provider_arn(&self, role: &DesiredRole) -> String {
        ProviderRef::new(partition_of(&role.arn), &role.account, &self.issuer).arn()
    }

    /// Links 1, 2 (cached), 4 (cached per account) and 5 for `role`.
    pub async fn check(&self, clients: &AccountClients, role: &DesiredRole) -> TrustVerdict {
        let checker = TrustChecker::new(self.http.clone(), Ok(clients.aws.clone()))
            .with_repair_hint(REPAIR_BY_BROKER);
        let thumbprint = match self.issuer_links(&checker).await {
            Ok(tp) => tp,
            Err(v) => return v,
        };
        if let Some(v) = self
            .provider_link(&checker, clients, role, &thumbprint)
            .await
        {
            return v;
        }
        let provider = ProviderRef::new(partition_of(&role.arn), &role.account, &self.issuer);
        let want = WebIdentity {
            provider_arn: provider.arn(),
            provider_url: provider.url.clone(),
            sub: valet_policy::service_account_subject(&role.namespace, &role.service_account),
            aud: self.audience.clone(),
            role_name: role.name.clone(),
        };
        let link = analyse(&role.trust, &want);
        if link.status == Status::Fail {
            return TrustVerdict::from_link(&link, "RoleTrustInvalid");
        }
        TrustVerdict::pass(format!(
            "issuer {} and its keys are reachable, provider {} trusts audience {}, the role trusts only {}",
            self.issuer, want.provider_arn, self.audience, want.sub
        ))
    }

    async fn issuer_links(
        &self,
        checker: &TrustChecker,
    ) -> Result<Result<String, String>, TrustVerdict> {
        let mut cache = self.issuer_cache.lock().await;
        if let Some((at, v)) = cache.as_ref()
            && at.elapsed() < if v.is_ok() { self.ttl } else { FAILURE_TTL }
        {
            return v.clone();
        }
        let (link1, disc) = checker.check_issuer(&self.issuer).await;
        let result = match disc {
            Some(d) if link1.status != Status::Fail => {
                let (link2, jwks) = checker.check_keys(&d).await;
                if link2.status == Status::Fail || jwks.is_none() {
                    Err(TrustVerdict::from_link(&link2, "OidcKeysInvalid"))
                } else {
                    Ok(checker.thumbprint(&self.issuer, Some(&d)).await)
                }
            }
            _ => Err(TrustVerdict::from_link(&link1, "OidcIssuerInvalid")),
        };
        *cache = Some((Instant::now(), result.clone()));
        result
    }

    /// `None` when link 4 passes (or only warns).
    async fn provider_link(
        &self,
        checker: &TrustChecker,
        clients: &AccountClients,
        role: &DesiredRole,
        thumbprint: &Result<String, String>,
    ) -> Option<TrustVerdict> {
        let mut cache = self.provider_cache.lock().await;
        if let Some((at, v)) = cache.get(&clients.account)
            && at.elapsed() < if v.is_none() { self.ttl } else { FAILURE_TTL }
        {
            return v.clone();
        }
        let provider = ProviderRef::new(partition_of(&role.arn), &clients.account, &self.issuer);
        let mut link = checker
            .check_provider(&provider, &self.audience, thumbprint)
            .await;
        if link.status == Status::Fail && self.create_provider {
            match checker
                .ensure_provider(&provider, &self.audience, thumbprint.as_deref().ok())
                .await
            {
                Ok(done) => {
                    info!(account = %clients.account, provider = %provider.arn(), changes = ?done, "OIDC provider repaired");
                    link = checker
                        .check_provider(&provider, &self.audience, thumbprint)
                        .await;
                }
                Err(e) => link.reason.push_str(&format!("; creating it failed: {e}")),
            }
        }
        let verdict =
            (link.status == Status::Fail).then(|| TrustVerdict::from_link(&link, PROVIDER_INVALID));
        cache.insert(clients.account.clone(), (Instant::now(), verdict.clone()));
        verdict
    }
}

fn partition_of(arn: &str) -> &str {
    arn.split(':').nth(1).unwrap_or("aws")
}
