//! Generated chains verify with rustls (webpki) and serve over real TLS.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{client_config, handshake, write_pair};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::version::{TLS12, TLS13};
use valet_tls::{
    ReloadingResolver, TlsError, certified_key_from_pem, generate_ca, generate_serving,
    inspect_certificate_pem, load_certified_key, server_config, service_dns_names,
};

const DAY: Duration = Duration::from_secs(86_400);

fn verifier(ca_pem: &str) -> anyhow::Result<Arc<WebPkiServerVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?)
}

fn leaf(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?)
}

#[test]
fn service_names_cover_every_form_the_api_server_may_dial() {
    assert_eq!(
        service_dns_names("valet-webhook", "storage-valet"),
        [
            "valet-webhook",
            "valet-webhook.storage-valet",
            "valet-webhook.storage-valet.svc",
            "valet-webhook.storage-valet.svc.cluster.local",
        ]
    );
}

#[test]
fn serving_chain_verifies_for_each_service_name_and_no_other() -> anyhow::Result<()> {
    let ca = generate_ca("storage-valet test CA", 365 * DAY)?;
    let names = service_dns_names("valet-webhook", "storage-valet");
    let serving = generate_serving(&ca, &names, 30 * DAY)?;
    let trusted = verifier(&ca.cert_pem)?;
    let end_entity = leaf(&serving.cert_pem)?;
    let now = UnixTime::now();
    for name in &names {
        let server_name = ServerName::try_from(name.clone())?;
        trusted
            .verify_server_cert(&end_entity, &[], &server_name, &[], now)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    for wrong in ["valet-webhook.other-ns.svc", "example.com"] {
        let server_name = ServerName::try_from(wrong)?;
        assert!(
            trusted
                .verify_server_cert(&end_entity, &[], &server_name, &[], now)
                .is_err(),
            "{wrong} must not verify"
        );
    }
    // Another CA's clients must not trust it.
    let other = generate_ca("someone else", DAY)?;
    let server_name = ServerName::try_from(names[2].clone())?;
    assert!(
        verifier(&other.cert_pem)?
            .verify_server_cert(&end_entity, &[], &server_name, &[], now)
            .is_err()
    );

    let info = inspect_certificate_pem(serving.cert_pem.as_bytes(), Path::new("tls.crt"))?;
    assert_eq!(info.dns_names, names);
    assert!(!info.is_ca);
    let left = info.not_after.duration_since(SystemTime::now())?;
    assert!(left > 29 * DAY && left <= 30 * DAY, "validity {left:?}");
    assert!(inspect_certificate_pem(ca.cert_pem.as_bytes(), Path::new("ca.crt"))?.is_ca);
    Ok(())
}

#[tokio::test]
async fn server_config_negotiates_h2_and_both_tls_versions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = generate_ca("test CA", DAY)?;
    let names = service_dns_names("svc", "ns");
    let pair = generate_serving(&ca, &names, DAY)?;
    write_pair(dir.path(), &pair.cert_pem, &pair.key_pem)?;
    let resolver =
        ReloadingResolver::from_files(dir.path().join("tls.crt"), dir.path().join("tls.key"))?;
    let server = Arc::new(server_config(resolver)?);

    let h2 = handshake(
        Arc::clone(&server),
        client_config(&ca.cert_pem, &[&TLS13], &[b"h2", b"http/1.1"])?,
        "svc.ns.svc",
    )
    .await?;
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(h2.peer_cert, leaf(&pair.cert_pem)?);

    let h1 = handshake(
        Arc::clone(&server),
        client_config(&ca.cert_pem, &[&TLS12], &[b"http/1.1"])?,
        "svc.ns.svc.cluster.local",
    )
    .await?;
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h1.version, rustls::ProtocolVersion::TLSv1_2);

    // A client asking only for a protocol we do not speak is refused.
    let refused = handshake(
        server,
        client_config(&ca.cert_pem, &[&TLS13], &[b"spdy/3"])?,
        "svc.ns.svc",
    )
    .await;
    assert!(refused.is_err(), "ALPN mismatch must fail the handshake");
    Ok(())
}

#[test]
fn load_errors_say_what_is_wrong() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = generate_ca("test CA", DAY)?;
    let a = generate_serving(&ca, &["a.example".to_string()], DAY)?;
    let b = generate_serving(&ca, &["b.example".to_string()], DAY)?;
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));

    match load_certified_key(&cert, &key) {
        Err(TlsError::Read { path, .. }) => assert_eq!(path, cert),
        other => panic!("missing file: {other:?}"),
    }

    std::fs::write(&cert, "not a pem at all\n")?;
    std::fs::write(&key, &a.key_pem)?;
    let err = load_certified_key(&cert, &key).expect_err("no certificate");
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("tls.crt"), "{err}");

    std::fs::write(&cert, &a.cert_pem)?;
    std::fs::write(&key, &a.cert_pem)?;
    let err = load_certified_key(&cert, &key).expect_err("no key");
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");

    std::fs::write(&key, &b.key_pem)?;
    let err = load_certified_key(&cert, &key).expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("does not match"), "{err}");

    std::fs::write(&key, &a.key_pem)?;
    let loaded = load_certified_key(&cert, &key)?;
    assert_eq!(loaded.cert[0], leaf(&a.cert_pem)?);

    let later = SystemTime::now() + 2 * DAY;
    let err = certified_key_from_pem(
        a.cert_pem.as_bytes(),
        a.key_pem.as_bytes(),
        &cert,
        &key,
        later,
    )
    .expect_err("expired");
    assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("expired"), "{err}");
    Ok(())
}

#[test]
fn serving_needs_a_valid_dns_name() -> anyhow::Result<()> {
    let ca = generate_ca("test CA", DAY)?;
    assert!(matches!(
        generate_serving(&ca, &[], DAY),
        Err(TlsError::BadDnsName { .. })
    ));
    Ok(())
}
