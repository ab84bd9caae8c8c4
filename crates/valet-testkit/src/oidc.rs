//! In-process HTTPS OIDC issuer shaped like an EKS cluster's.
//!
//! Each issuer has its own CA (so tests trust exactly it), serves the chain
//! `[leaf, CA]` (so a thumbprint of the top certificate can be taken, as IAM
//! does), publishes discovery and a JWKS of per-issuer RSA-2048 keys, and
//! mints tokens with the claims the kube-apiserver puts in projected
//! ServiceAccount tokens. Knobs break one link at a time.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, RsaKeySize,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A running issuer. Both listeners stop when it is dropped.
pub struct OidcIssuer {
    inner: Arc<Inner>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    /// `/id/HEX`: a path like EKS's, so URL joining is exercised.
    path: String,
    https_base: String,
    http_base: String,
    state: Mutex<KeysAndKnobs>,
}

struct KeysAndKnobs {
    /// Published in the JWKS, newest last; the last one signs.
    keys: Vec<SigningKey>,
    discovery_issuer: Option<String>,
    jwks_uri: Option<String>,
    algs: Vec<String>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl OidcIssuer {
    /// Starts the issuer on 127.0.0.1 (HTTPS, plus a plain-HTTP twin for the
    /// "http issuer" case) with one fresh signing key.
    pub async fn start() -> anyhow::Result<OidcIssuer> {
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "valet test issuer CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
        let ca_issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().context("leaf key")?;
        let leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .context("leaf params")?;
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &ca_issuer)
            .context("leaf certificate")?;

        let ca_der = ca_cert.der().clone();
        let chain = vec![leaf_cert.der().clone(), ca_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let https = TcpListener::bind(("127.0.0.1", 0)).await?;
        let http = TcpListener::bind(("127.0.0.1", 0)).await?;
        let path = format!("/id/{:016X}", random_u64());
        let inner = Arc::new(Inner {
            https_base: format!("https://{}", https.local_addr()?),
            http_base: format!("http://{}", http.local_addr()?),
            path,
            state: Mutex::new(KeysAndKnobs {
                keys: vec![SigningKey::generate()?],
                discovery_issuer: None,
                jwks_uri: None,
                algs: vec!["RS256".to_string()],
            }),
        });
        let https_router = router(inner.clone(), Scheme::Https);
        let http_router = router(inner.clone(), Scheme::Http);
        let tasks = vec![
            tokio::spawn(serve(https, https_router, Some(acceptor))),
            tokio::spawn(serve(http, http_router, None)),
        ];
        Ok(OidcIssuer {
            inner,
            ca_pem: ca_cert.pem(),
            ca_der,
            tasks,
        })
    }

    /// The issuer URL: `https://127.0.0.1:PORT/id/HEX` (no trailing slash).
    pub fn url(&self) -> String {
        self.inner.issuer(Scheme::Https)
    }

    /// The same issuer over plain HTTP, which AWS refuses.
    pub fn http_url(&self) -> String {
        self.inner.issuer(Scheme::Http)
    }

    /// What IAM calls the provider URL: the issuer without `https://`.
    pub fn provider_url(&self) -> String {
        self.url().trim_start_matches("https://").to_string()
    }

    /// The CA that signed the serving certificate, PEM: what tests trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Lower-case hex SHA-1 of the CA certificate, the top of the served
    /// chain: the thumbprint IAM expects.
    pub fn ca_thumbprint(&self) -> String {
        hex::encode(Sha1::digest(self.ca_der.as_ref()))
    }

    /// An https URL on a loopback port that nothing listens on.
    pub fn unreachable_url() -> anyhow::Result<String> {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let addr = l.local_addr()?;
        drop(l);
        Ok(format!("https://{addr}/keys"))
    }

    /// Makes discovery claim another `issuer` (the classic trailing-slash or
    /// wrong-host mistake).
    pub fn set_discovery_issuer(&self, issuer: &str) {
        self.inner.knobs().discovery_issuer = Some(issuer.to_string());
    }

    /// Overrides discovery's `jwks_uri`.
    pub fn set_jwks_uri(&self, uri: &str) {
        self.inner.knobs().jwks_uri = Some(uri.to_string());
    }

    /// Points `jwks_uri` at a port that refuses connections.
    pub fn break_jwks(&self) -> anyhow::Result<()> {
        self.set_jwks_uri(&OidcIssuer::unreachable_url()?);
        Ok(())
    }

    /// Overrides `id_token_signing_alg_values_supported`.
    pub fn set_signing_algs(&self, algs: &[&str]) {
        self.inner.knobs().algs = algs.iter().map(|s| s.to_string()).collect();
    }

    /// Replaces every published key with a new one: tokens minted before
    /// carry a `kid` the JWKS no longer has.
    pub fn rotate_keys(&self) -> anyhow::Result<()> {
        let key = SigningKey::generate()?;
        self.inner.knobs().keys = vec![key];
        Ok(())
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        let knobs = self.inner.knobs();
        knobs.keys.last().map(|k| k.kid.clone()).unwrap_or_default()
    }

    /// A token for `ns/sa` valid for `ttl`, as the kube-apiserver mints it.
    pub fn mint(&self, ns: &str, sa: &str, aud: &[&str], ttl: Duration) -> anyhow::Result<String> {
        self.mint_with(ns, sa, aud, ttl, |_| {})
    }

    /// A token that expired an hour ago.
    pub fn mint_expired(&self, ns: &str, sa: &str, aud: &[&str]) -> anyhow::Result<String> {
        self.mint_with(ns, sa, aud, Duration::from_secs(600), |c| {
            let now = jsonwebtoken::get_current_timestamp() as i64;
            c.insert("iat".into(), json!(now - 4200));
            c.insert("nbf".into(), json!(now - 4200));
            c.insert("exp".into(), json!(now - 3600));
        })
    }

    /// A token whose claims `edit` may change before signing.
    pub fn mint_with(
        &self,
        ns: &str,
        sa: &str,
        aud: &[&str],
        ttl: Duration,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> anyhow::Result<String> {
        let aud: Vec<String> = aud.iter().map(|s| s.to_string()).collect();
        self.inner.mint(ns, sa, &aud, ttl.as_secs() as i64, edit)
    }

    /// The TokenRequest hook for the in-process API server
    /// (`ApiServer::set_token_issuer`).
    pub fn token_minter(
        &self,
    ) -> impl Fn(&str, &str, &[String], i64) -> String + Send + Sync + 'static {
        let inner = self.inner.clone();
        move |ns, sa, aud, ttl| {
            // The API server hook cannot fail; a signing error is a broken
            // test fixture, and an unsigned string makes verification say so.
            inner
                .mint(ns, sa, aud, ttl, |_| {})
                .unwrap_or_else(|e| format!("mint-failed:{e}"))
        }
    }

    /// Makes `api` mint tokens from this issuer and advertise it at its own
    /// `/.well-known/openid-configuration`, as a cluster with
    /// `--service-account-issuer` set does.
    pub fn attach(&self, api: &crate::apiserver::ApiServer) {
        api.set_token_issuer(self.token_minter());
        api.set_oidc_discovery(self.inner.discovery(Scheme::Https));
        api.set_oidc_jwks(self.inner.jwks());
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone, Copy)]
enum Scheme {
    Https,
    Http,
}

impl Inner {
    fn knobs(&self) -> std::sync::MutexGuard<'_, KeysAndKnobs> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issuer(&self, scheme: Scheme) -> String {
        let base = match scheme {
            Scheme::Https => &self.https_base,
            Scheme::Http => &self.http_base,
        };
        format!("{base}{}", self.path)
    }

    fn discovery(&self, scheme: Scheme) -> Value {
        let real = self.issuer(scheme);
        let knobs = self.knobs();
        let issuer = knobs
            .discovery_issuer
            .clone()
            .unwrap_or_else(|| real.clone());
        let jwks_uri = knobs
            .jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{real}/keys"));
        json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "iss"],
            "id_token_signing_alg_values_supported": knobs.algs,
        })
    }

    fn jwks(&self) -> Value {
        let set = JwkSet {
            keys: self.knobs().keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        serde_json::to_value(set).unwrap_or(Value::Null)
    }

    fn mint(
        &self,
        ns: &str,
        sa: &str,
        aud: &[String],
        ttl: i64,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = json!({
            "aud": aud,
            "exp": now + ttl,
            "iat": now,
            "nbf": now,
            "iss": self.issuer(Scheme::Https),
            "jti": format!("{:016x}{:016x}", random_u64(), random_u64()),
            "kubernetes.io": {
                "namespace": ns,
                "serviceaccount": { "name": sa, "uid": format!("{:016x}", random_u64()) },
            },
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
        });
        let Value::Object(mut claims) = claims else {
            return Err(anyhow!("claims are an object"));
        };
        edit(&mut claims);
        let knobs = self.knobs();
        let key = knobs
            .keys
            .last()
            .ok_or_else(|| anyhow!("issuer has no key"))?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &key.encoding)?)
    }
}

impl SigningKey {
    fn generate() -> anyhow::Result<SigningKey> {
        let pair = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            .context("RSA key generation")?;
        let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes())?;
        let kid = format!("{:016x}", random_u64());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Ok(SigningKey { kid, encoding, jwk })
    }
}

fn router(inner: Arc<Inner>, scheme: Scheme) -> Router {
    Router::new()
        .route("/id/{id}/.well-known/openid-configuration", get(discovery))
        .route("/id/{id}/keys", get(keys))
        .with_state((inner, SchemeState(scheme)))
}

#[derive(Clone, Copy)]
struct SchemeState(Scheme);

type AppState = (Arc<Inner>, SchemeState);

async fn discovery(State((inner, scheme)): State<AppState>, Path(id): Path<String>) -> Response {
    if !inner.path.ends_with(&format!("/{id}")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(inner.discovery(scheme.0)).into_response()
}

async fn keys(State((inner, _)): State<AppState>, Path(id): Path<String>) -> Response {
    if !inner.path.ends_with(&format!("/{id}")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(inner.jwks()).into_response()
}

async fn serve(listener: TcpListener, router: Router, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let svc = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    // A client that rejects our certificate aborts the
                    // handshake: nothing to serve then.
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

/// Unpredictable enough for test-local ids (std seeds `RandomState` randomly
/// per instance).
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}
