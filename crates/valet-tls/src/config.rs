//! The rustls server configuration every storage-valet HTTPS endpoint uses.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;

use crate::TlsError;
use crate::policy::TlsPolicy;

/// ALPN in preference order: kube-apiserver speaks HTTP/2 to webhooks, curl
/// and probes may use HTTP/1.1.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.2 and 1.3 only, on aws-lc-rs, no client certificates, ALPN h2 and
/// http/1.1, certificates from `resolver` (e.g. a [`crate::ReloadingResolver`]).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    server_config_with(resolver, &TlsPolicy::default())
}

/// [`server_config`] restricted by `policy` (`--tls-min-version`,
/// `--tls-cipher-suites`).
pub fn server_config_with(
    resolver: Arc<dyn ResolvesServerCert>,
    policy: &TlsPolicy,
) -> Result<ServerConfig, TlsError> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = policy.suites(&provider.cipher_suites);
    let versions: &[&rustls::SupportedProtocolVersion] = if policy.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
