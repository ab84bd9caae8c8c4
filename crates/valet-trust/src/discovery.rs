//! Link 1: the issuer's discovery document, fetched from the issuer URL
//! itself, as STS fetches it.

use reqwest::Url;
use serde::Deserialize;

use super::http::{FetchError, OidcHttp};
use super::{Findings, Link, LinkResult};

/// Signing algorithms STS accepts for web identity tokens.
pub(crate) const STS_ALGORITHMS: [&str; 6] = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];

/// The fields of `/.well-known/openid-configuration` the chain depends on.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

impl Discovery {
    pub fn jwks_url(&self) -> Option<Url> {
        Url::parse(&self.jwks_uri).ok()
    }
}

/// `ISSUER/.well-known/openid-configuration`, per OIDC Discovery 1.0 §4.
pub(crate) fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = format!(
        "{}/.well-known/openid-configuration",
        issuer.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url
}

/// Parses the issuer URL the way IAM accepts it: https, a host, no query or
/// fragment.
pub(crate) fn parse_issuer(issuer: &str) -> Result<Url, LinkResult> {
    let fail = |reason: String, fix: String| Err(LinkResult::fail(Link::Issuer, reason, fix));
    let url = match Url::parse(issuer) {
        Ok(u) => u,
        Err(e) => {
            return fail(
                format!("issuer {issuer:?} is not a URL: {e}"),
                "pass the cluster's issuer as --oidc-issuer https://HOST[/PATH] (kubectl get --raw /.well-known/openid-configuration shows it)".to_string(),
            );
        }
    };
    if url.scheme() != "https" {
        return fail(
            format!(
                "issuer {issuer} uses {}: IAM OIDC providers and STS accept only https issuers",
                url.scheme()
            ),
            format!(
                "serve discovery and JWKS over HTTPS and set the API server's --service-account-issuer=https://{}{}",
                url.host_str().unwrap_or("HOST"),
                url.path().trim_end_matches('/')
            ),
        );
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some()
    {
        return fail(
            format!("issuer {issuer} must be https://HOST[/PATH] without query or fragment"),
            "set the API server's --service-account-issuer to https://HOST[/PATH]".to_string(),
        );
    }
    Ok(url)
}

/// Link 1. The discovery document is returned whenever it could be read,
/// even if a check failed, so later links still run and report.
pub async fn check_issuer(http: &OidcHttp, issuer: &str) -> (LinkResult, Option<Discovery>) {
    let url = match parse_issuer(issuer) {
        Ok(u) => u,
        Err(result) => return (result, None),
    };
    let doc_url = discovery_url(&url);
    let body = match http.get(&doc_url).await {
        Ok(b) => b,
        Err(e) => return (fetch_failure(Link::Issuer, &e), None),
    };
    let doc: Discovery = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return (
                LinkResult::fail(
                    Link::Issuer,
                    format!(
                        "{doc_url} is not an OIDC discovery document (need issuer, jwks_uri): {e}"
                    ),
                    format!(
                        "publish the API server's /.well-known/openid-configuration unchanged at {doc_url}"
                    ),
                ),
                None,
            );
        }
    };

    let mut f = Findings::new(Link::Issuer);
    if doc.issuer != issuer {
        f.fail(
            format!(
                "{doc_url} says issuer {:?}, not {issuer:?}: STS requires the discovery issuer, the URL it is served from and the tokens' iss to be equal character for character",
                doc.issuer
            ),
            format!(
                "set the API server's --service-account-issuer={issuer} (and republish discovery), or if {:?} is the real issuer, check with --oidc-issuer {:?}",
                doc.issuer, doc.issuer
            ),
        );
    }
    match Url::parse(&doc.jwks_uri) {
        Ok(j) if j.scheme() == "https" => {}
        _ => f.fail(
            format!("jwks_uri {:?} is not an https URL; STS only fetches keys over HTTPS", doc.jwks_uri),
            format!(
                "set the API server's --service-account-jwks-uri to an https URL serving the JWKS (e.g. {}/keys)",
                issuer.trim_end_matches('/')
            ),
        ),
    }
    let algs = &doc.id_token_signing_alg_values_supported;
    if !algs.iter().any(|a| STS_ALGORITHMS.contains(&a.as_str())) {
        f.fail(
            format!(
                "id_token_signing_alg_values_supported is {algs:?}: none of {STS_ALGORITHMS:?}, which STS accepts"
            ),
            "sign ServiceAccount tokens with an RSA key (RS256) and list RS256 in the discovery document".to_string(),
        );
    }
    let pass = format!(
        "{doc_url}: issuer matches, jwks_uri {}, algorithms {}",
        doc.jwks_uri,
        algs.join(",")
    );
    (f.finish(pass), Some(doc))
}

/// A failed fetch as a FAIL on `link`, with the fix the failure points to.
pub(crate) fn fetch_failure(link: Link, e: &FetchError) -> LinkResult {
    let fix = match e {
        FetchError::Tls { .. } => {
            "make the issuer serve a certificate from a public CA (STS fetches it from the internet); for a private CA, pass it with --oidc-ca-file and pin its thumbprint on the IAM OIDC provider"
        }
        FetchError::Unreachable { .. } => {
            "make the URL reachable over the internet (STS fetches it), e.g. publish discovery and JWKS in a public S3 bucket or behind a load balancer"
        }
        FetchError::Status { .. } => {
            "publish the API server's /.well-known/openid-configuration and /openid/v1/jwks unchanged at that URL (unauthenticated: STS sends no credentials)"
        }
        FetchError::TooLarge { .. } | FetchError::Other { .. } => {
            "serve the document as small JSON over HTTPS at that URL"
        }
    };
    LinkResult::fail(link, e.to_string(), fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_joins_paths() {
        let u = Url::parse("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC").unwrap();
        assert_eq!(
            discovery_url(&u).as_str(),
            "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC/.well-known/openid-configuration"
        );
        let u = Url::parse("https://example.com/").unwrap();
        assert_eq!(
            discovery_url(&u).as_str(),
            "https://example.com/.well-known/openid-configuration"
        );
    }

    #[test]
    fn only_https_issuers_without_query() {
        assert!(parse_issuer("https://example.com/id/x").is_ok());
        for bad in [
            "http://example.com",
            "example.com",
            "https://example.com/?a=b",
            "https://e.com/#x",
        ] {
            let r = parse_issuer(bad).unwrap_err();
            assert_eq!(r.status, super::super::Status::Fail, "{bad}");
            assert!(r.fix.is_some());
        }
    }
}
