//! Link 2: the JWKS named by discovery; every key must be usable.

use std::collections::BTreeSet;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::discovery::{Discovery, STS_ALGORITHMS, fetch_failure};
use super::http::OidcHttp;
use super::{Findings, Link, LinkResult};

/// The usable keys of an issuer's JWKS.
#[derive(Clone)]
pub struct Jwks {
    pub url: String,
    keys: Vec<UsableKey>,
}

#[derive(Clone)]
pub(crate) struct UsableKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("kids", &self.kids())
            .finish()
    }
}

impl Jwks {
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token header names; with no `kid`, the only key (as STS
    /// does for single-key sets).
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<&UsableKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Link 2. Returns the usable keys whenever the set could be read.
pub async fn check_keys(http: &OidcHttp, discovery: &Discovery) -> (LinkResult, Option<Jwks>) {
    let Some(url) = discovery.jwks_url() else {
        return (
            LinkResult::skip(
                Link::Keys,
                format!(
                    "jwks_uri {:?} is not a URL (see link 1)",
                    discovery.jwks_uri
                ),
            ),
            None,
        );
    };
    let body = match http.get(&url).await {
        Ok(b) => b,
        Err(e) => return (fetch_failure(Link::Keys, &e), None),
    };
    let raw: RawSet = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                LinkResult::fail(
                    Link::Keys,
                    format!("{url} is not a JWKS ({{\"keys\": [...]}}): {e}"),
                    format!("serve the API server's /openid/v1/jwks unchanged at {url}"),
                ),
                None,
            );
        }
    };
    let (result, jwks) = judge_keys(
        url.as_str(),
        &raw.keys,
        &discovery.id_token_signing_alg_values_supported,
    );
    (result, Some(jwks))
}

fn judge_keys(url: &str, raw: &[serde_json::Value], listed: &[String]) -> (LinkResult, Jwks) {
    let mut f = Findings::new(Link::Keys);
    let republish = format!("republish the JWKS at {url} from the API server's /openid/v1/jwks");
    if raw.is_empty() {
        f.fail(
            format!("{url} publishes no keys: no token can verify"),
            republish.clone(),
        );
    }
    let mut keys = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, value) in raw.iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(|k| format!("key {k:?}"))
            .unwrap_or_else(|| format!("key #{i}"));
        let jwk: Jwk = match serde_json::from_value(value.clone()) {
            Ok(j) => j,
            Err(e) => {
                f.fail(
                    format!("{label} is not a valid JWK: {e}"),
                    republish.clone(),
                );
                continue;
            }
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            f.fail(
                format!("{label} is marked use=enc, not for signatures"),
                republish.clone(),
            );
            continue;
        }
        let Some(alg) = key_algorithm(&jwk) else {
            f.fail(
                format!("{label} has no algorithm STS supports (kty/alg/crv)"),
                "sign ServiceAccount tokens with an RSA (RS256) or EC (ES256) key".to_string(),
            );
            continue;
        };
        let key = match DecodingKey::from_jwk(&jwk) {
            Ok(k) => k,
            Err(e) => {
                f.fail(
                    format!("{label} cannot be loaded as a {alg:?} key: {e}"),
                    republish.clone(),
                );
                continue;
            }
        };
        let alg_name = format!("{alg:?}");
        if !STS_ALGORITHMS.contains(&alg_name.as_str()) {
            f.fail(
                format!("{label} uses {alg_name}, which STS does not accept"),
                "sign ServiceAccount tokens with an RS256 key".to_string(),
            );
        } else if !listed.is_empty() && !listed.contains(&alg_name) {
            f.fail(
                format!("{label} uses {alg_name} but discovery lists only {listed:?}"),
                format!("list {alg_name} in id_token_signing_alg_values_supported of the discovery document"),
            );
        }
        match &jwk.common.key_id {
            None => f.warn(
                format!("{label} has no kid: with more than one key STS cannot pick it"),
                "publish keys with kid (the API server does this itself)".to_string(),
            ),
            Some(kid) if !seen.insert(kid.clone()) => f.warn(
                format!("kid {kid:?} appears twice: STS may verify with the wrong key"),
                republish.clone(),
            ),
            Some(_) => {}
        }
        keys.push(UsableKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    let jwks = Jwks {
        url: url.to_string(),
        keys,
    };
    let pass = format!(
        "{url}: {} usable key(s) ({})",
        jwks.len(),
        jwks.keys
            .iter()
            .map(|k| format!("{} {:?}", k.kid.as_deref().unwrap_or("-"), k.alg))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (f.finish(pass), jwks)
}

/// The key's algorithm: its `alg`, else the usual one for its type.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return Algorithm::from_str(&alg.to_string()).ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;
    use serde_json::json;

    #[test]
    fn empty_and_broken_sets_fail() {
        let (r, j) = judge_keys("https://x/keys", &[], &[]);
        assert_eq!(r.status, Status::Fail);
        assert!(j.is_empty());
        let (r, _) = judge_keys(
            "https://x/keys",
            &[json!({"kty": "RSA", "kid": "a", "n": "!!", "e": "AQAB"})],
            &[],
        );
        assert_eq!(r.status, Status::Fail, "{r:?}");
        let (r, _) = judge_keys(
            "https://x/keys",
            &[json!({"kty": "oct", "kid": "a", "k": "c2VjcmV0"})],
            &[],
        );
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(
            r.reason.contains("STS does not accept") || r.reason.contains("no algorithm"),
            "{r:?}"
        );
    }
}
