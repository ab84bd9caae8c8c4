//! HTTPS for the issuer's public documents, and the certificate chain its
//! JWKS host serves (for IAM's thumbprint).
//!
//! One rustls config serves both, so the roots that make a fetch succeed are
//! the roots the thumbprint handshake trusts: the platform's plus any extra
//! CA (a private issuer, or a test's).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::TrustError;

/// Discovery documents and JWKS are small; anything bigger is not one.
const MAX_BODY: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches issuer documents over HTTPS with a fixed set of trusted roots.
#[derive(Clone, Debug)]
pub struct OidcHttp {
    client: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
}

/// Why a fetch failed, phrased for the report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("TLS with {url} failed: {message}")]
    Tls { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url} did not complete: {message}")]
    Other { url: String, message: String },
}

impl FetchError {
    /// The fix for a TLS failure is usually trusting the issuer's CA.
    pub fn is_tls(&self) -> bool {
        matches!(self, FetchError::Tls { .. })
    }
}

impl OidcHttp {
    /// Trusts the platform's roots plus `extra_roots`.
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Result<OidcHttp, TrustError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
                .map_err(|e| TrustError::Tls(e.to_string()))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        // reqwest takes the config as is: offer only what it then speaks.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // The issuer's own URL must answer; a redirect elsewhere is not
            // what IAM or STS will follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TrustError::Tls(error_chain(&e)))?;
        Ok(OidcHttp {
            client,
            tls: Arc::new(tls),
        })
    }

    /// Trusts the platform's roots plus every certificate in PEM `bundle`.
    pub fn with_ca_pem(bundle: &[u8], origin: &str) -> Result<OidcHttp, TrustError> {
        let roots = CertificateDer::pem_slice_iter(bundle)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrustError::CaBundle {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
        if roots.is_empty() {
            return Err(TrustError::CaBundle {
                path: origin.to_string(),
                message: "no CERTIFICATE block found".to_string(),
            });
        }
        OidcHttp::new(roots)
    }

    /// GET `url`, expecting 200 and at most [`MAX_BODY`] bytes.
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let u = url.to_string();
        let mut resp = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| classify(&u, &e))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: u,
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&u, &e))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(FetchError::TooLarge { url: u });
            }
        }
        Ok(body)
    }

    /// Lower-case hex SHA-1 of the last certificate `url`'s host serves in
    /// its chain: what IAM stores as the provider's thumbprint.
    pub async fn top_certificate_thumbprint(&self, url: &Url) -> Result<String, FetchError> {
        let u = url.to_string();
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let name =
            ServerName::try_from(host.trim_matches(['[', ']']).to_string()).map_err(|e| {
                FetchError::Other {
                    url: u.clone(),
                    message: format!("host {host:?} is not a TLS server name: {e}"),
                }
            })?;
        let unreachable = |message: String| FetchError::Unreachable {
            url: u.clone(),
            message,
        };
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| unreachable("connect timed out".to_string()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let mut tls = (*self.tls).clone();
        tls.alpn_protocols.clear();
        let stream = tokio::time::timeout(
            TIMEOUT,
            TlsConnector::from(Arc::new(tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| unreachable("TLS handshake timed out".to_string()))?
        .map_err(|e| FetchError::Tls {
            url: u.clone(),
            message: e.to_string(),
        })?;
        let (_, conn) = stream.get_ref();
        let top = conn
            .peer_certificates()
            .and_then(|chain| chain.last())
            .ok_or_else(|| FetchError::Tls {
                url: u.clone(),
                message: "the server sent no certificate".to_string(),
            })?;
        Ok(hex::encode(Sha1::digest(top.as_ref())))
    }
}

fn classify(url: &str, e: &reqwest::Error) -> FetchError {
    let message = error_chain(e);
    let url = url.to_string();
    // rustls reports certificate problems deep in the source chain of a
    // connect error: look there before calling it a network problem.
    if message.contains("certificate") || message.contains("tls") || message.contains("TLS") {
        FetchError::Tls { url, message }
    } else if e.is_connect() || e.is_timeout() {
        FetchError::Unreachable { url, message }
    } else {
        FetchError::Other { url, message }
    }
}

/// `e` and its sources, joined: reqwest's own message alone rarely says why.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
