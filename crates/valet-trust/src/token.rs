//! Link 3: a real token for the ServiceAccount, verified as STS verifies it.
//!
//! The token itself is a credential: it is held in [`SecretToken`], whose
//! `Debug` is redacted, and never appears in a reason, a fix or a log line.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde::Deserialize;

use super::jwks::Jwks;
use super::{Link, LinkResult, TrustError};

/// The lifetime asked of TokenRequest: the API server's minimum, since the
/// token only lives for this check.
const TOKEN_TTL_SECONDS: i64 = 600;

/// A bearer token. Never printed.
#[derive(Clone)]
pub struct SecretToken(String);

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl SecretToken {
    pub fn new(token: impl Into<String>) -> SecretToken {
        SecretToken(token.into().trim().to_string())
    }

    /// Reads a token file (a projected token volume's `token`, say).
    pub async fn from_file(path: &Path) -> Result<SecretToken, TrustError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| TrustError::TokenFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(SecretToken::new(text))
    }

    /// The raw token, for the one call that must send it (STS).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Asks the API server for a token of `ns/sa` with `audience`
/// (`POST serviceaccounts/SA/token`), as the kubelet does for a pod.
pub async fn request_token(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    audience: &str,
) -> Result<SecretToken, LinkResult> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(TOKEN_TTL_SECONDS),
            ..Default::default()
        }),
        ..Default::default()
    };
    match api
        .create_token_request(sa, &PostParams::default(), &req)
        .await
    {
        Ok(tr) => match tr.status.and_then(|s| s.token) {
            Some(token) if !token.is_empty() => Ok(SecretToken::new(token)),
            _ => Err(LinkResult::fail(
                Link::Token,
                format!("TokenRequest for {ns}/{sa} returned no token"),
                "check the API server's --service-account-signing-key-file and --service-account-issuer flags",
            )),
        },
        Err(kube::Error::Api(s)) if s.code == 404 => Err(LinkResult::fail(
            Link::Token,
            format!("ServiceAccount {ns}/{sa} does not exist"),
            format!(
                "kubectl -n {ns} create serviceaccount {sa} (or check --namespace/--service-account)"
            ),
        )),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(LinkResult::fail(
            Link::Token,
            format!("not allowed to request tokens for {ns}/{sa}: {}", s.message),
            format!(
                "grant create on serviceaccounts/token in namespace {ns} to the caller, or pass a token with --token-file"
            ),
        )),
        Err(e) => Err(LinkResult::fail(
            Link::Token,
            format!("TokenRequest for {ns}/{sa} failed: {e}"),
            "check --kubeconfig and that the API server is reachable, or pass a token with --token-file",
        )),
    }
}

/// The claims the report may quote (never the token).
#[derive(Deserialize, Debug, Default)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn list(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(a) => a.clone(),
        }
    }
}

/// What the token must say.
pub(crate) struct Expected<'a> {
    pub issuer: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub audience: &'a str,
    pub now: i64,
}

/// Link 3: signature against the JWKS, then `iss`, `aud`, `exp`/`nbf`, `sub`.
pub(crate) fn verify_token(token: &SecretToken, jwks: &Jwks, want: &Expected<'_>) -> LinkResult {
    let sub = format!(
        "system:serviceaccount:{}:{}",
        want.namespace, want.service_account
    );
    let fail = |reason: String, fix: String| LinkResult::fail(Link::Token, reason, fix);
    let header = match decode_header(token.expose()) {
        Ok(h) => h,
        Err(e) => {
            return fail(
                format!("the token is not a JWT: {e}"),
                "pass a ServiceAccount token (a projected token file), or let valet request one via TokenRequest".into(),
            );
        }
    };
    // Read unverified claims only to quote them in messages.
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode(token.expose())
        .map(|d| d.claims)
        .unwrap_or_default();
    let Some(key) = jwks.find(header.kid.as_deref()) else {
        let kid = header.kid.as_deref().unwrap_or("(none)");
        return fail(
            format!(
                "the token is signed with kid {kid}, which {} does not publish (it has {:?}): the signing key was rotated or the token comes from another cluster",
                jwks.url,
                jwks.kids()
            ),
            "request a new token (pods get one when their projected token refreshes or on restart), and keep the old public key in the API server's --service-account-key-file until tokens signed with it expire".into(),
        );
    };
    if header.alg != key.alg {
        return fail(
            format!(
                "the token header says {:?} but key {} is {:?}",
                header.alg,
                key.kid.as_deref().unwrap_or("-"),
                key.alg
            ),
            "request a new token from the cluster's issuer".into(),
        );
    }
    let mut v = Validation::new(key.alg);
    v.set_issuer(&[want.issuer]);
    v.set_audience(&[want.audience]);
    v.sub = Some(sub.clone());
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let got_aud = claims.aud.as_ref().map(Audience::list).unwrap_or_default();
    match decode::<serde_json::Value>(token.expose(), &key.key, &v) {
        Ok(_) => LinkResult::pass(
            Link::Token,
            format!(
                "signature ({} {:?}), iss, aud {}, sub {sub} verified; expires in {}s",
                key.kid.as_deref().unwrap_or("-"),
                key.alg,
                want.audience,
                claims.exp.map(|e| e - want.now).unwrap_or_default()
            ),
        ),
        Err(e) => match e.kind() {
            ErrorKind::InvalidSignature => fail(
                format!(
                    "the signature does not verify with key {} from {}: the token was not signed by this issuer's key",
                    key.kid.as_deref().unwrap_or("-"),
                    jwks.url
                ),
                "make the JWKS publish the public half of the API server's --service-account-signing-key-file".into(),
            ),
            ErrorKind::ExpiredSignature => fail(
                format!(
                    "the token expired {}s ago (exp {})",
                    claims.exp.map(|x| want.now - x).unwrap_or_default(),
                    claims.exp.unwrap_or_default()
                ),
                "use a fresh token: the kubelet rewrites projected tokens at 80% of their lifetime, so an expired token file means a stale copy or a stopped kubelet refresh".into(),
            ),
            ErrorKind::ImmatureSignature => fail(
                format!("the token is not valid before {} (now {}): clocks disagree", claims.nbf.unwrap_or_default(), want.now),
                "synchronise the clocks of the API server and this machine (NTP)".into(),
            ),
            ErrorKind::InvalidIssuer => fail(
                format!("the token's iss is {:?}, not the issuer {:?}", claims.iss.unwrap_or_default(), want.issuer),
                format!(
                    "set the API server's --service-account-issuer={} so tokens carry it, or check with --oidc-issuer set to the cluster's real issuer",
                    want.issuer
                ),
            ),
            ErrorKind::InvalidAudience => fail(
                format!("the token's aud is {got_aud:?}, not {:?}", want.audience),
                format!(
                    "annotate the ServiceAccount {}/{} with eks.amazonaws.com/audience: {} (or set the webhook's --token-audience), or check with --audience matching the token",
                    want.namespace, want.service_account, want.audience
                ),
            ),
            ErrorKind::InvalidSubject => {
                let got = claims.sub.unwrap_or_default();
                fail(
                    format!("the token is for {got:?}, not {sub:?}"),
                    match got.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
                        Some((ns, sa)) => format!(
                            "use a token of {}/{} (or check --namespace {ns} --service-account {sa} if that is the pod's account)",
                            want.namespace, want.service_account
                        ),
                        None => format!("use a token of {}/{}", want.namespace, want.service_account),
                    },
                )
            }
            ErrorKind::MissingRequiredClaim(c) => fail(
                format!("the token has no {c} claim"),
                "use a ServiceAccount token from the API server (TokenRequest or a projected volume)".into(),
            ),
            _ => fail(
                format!("the token does not verify: {e}"),
                "use a ServiceAccount token from the API server (TokenRequest or a projected volume)".into(),
            ),
        },
    }
}
