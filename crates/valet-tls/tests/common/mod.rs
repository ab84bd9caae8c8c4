//! Shared by the valet-tls integration tests: a real TLS handshake in memory.
#![allow(dead_code)]

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Handshake {
    pub peer_cert: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
    pub version: rustls::ProtocolVersion,
}

pub fn client_config(
    ca_pem: &str,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Full handshake between `server` and a client trusting `ca_pem`, over an
/// in-memory pipe, then one byte each way so both sides finished.
pub async fn handshake(
    server: Arc<ServerConfig>,
    client: ClientConfig,
    server_name: &str,
) -> anyhow::Result<Handshake> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        tls.write_all(&byte).await?;
        tls.flush().await?;
        anyhow::Ok(())
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(server_name.to_string())?;
    let mut tls = connector.connect(name, client_io).await?;
    tls.write_all(b"x").await?;
    tls.flush().await?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await?;
    server_task.await??;
    let (_, conn) = tls.get_ref();
    let peer_cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| anyhow::anyhow!("server sent no certificate"))?
        .clone()
        .into_owned();
    Ok(Handshake {
        peer_cert,
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn
            .protocol_version()
            .ok_or_else(|| anyhow::anyhow!("no protocol version after handshake"))?,
    })
}

pub fn write_pair(dir: &std::path::Path, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("tls.crt"), cert_pem)?;
    std::fs::write(dir.join("tls.key"), key_pem)?;
    Ok(())
}

/// Verifies `leaf_pem` for every name in `names` against the CAs in `bundle_pem`.
pub fn verify_for_names(bundle_pem: &str, leaf_pem: &str, names: &[String]) -> anyhow::Result<()> {
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes())?;
    for name in names {
        let server_name = ServerName::try_from(name.clone())?;
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &server_name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    Ok(())
}
