//! Reading a certificate + key pair from PEM files into what rustls serves.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use crate::TlsError;

/// What the rest of the system needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
    pub is_ca: bool,
}

/// A validated pair plus the bytes it came from, so that the reloader can
/// tell "files rewritten with the same content" from a real rotation.
pub(crate) struct LoadedPair {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
    pub source: Vec<u8>,
}

/// Reads and validates a PEM certificate chain and its private key.
///
/// Refuses a missing file, a file without a certificate or key, a key that
/// does not belong to the first certificate, and an expired certificate.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    load_pair(cert_path, key_path, SystemTime::now()).map(|pair| pair.key)
}

pub(crate) fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<LoadedPair, TlsError> {
    let cert_pem = read(cert_path, "certificate")?;
    let key_pem = read(key_path, "private key")?;
    let (key, info) = certified_key_from_pem(&cert_pem, &key_pem, cert_path, key_path, now)?;
    let mut source = cert_pem;
    source.extend_from_slice(&key_pem);
    Ok(LoadedPair { key, info, source })
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Builds a rustls `CertifiedKey` from PEM bytes; the paths only label errors.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    now: SystemTime,
) -> Result<(Arc<CertifiedKey>, CertInfo), TlsError> {
    let chain = parse_chain(cert_pem, cert_path)?;
    let info = inspect_der(&chain[0], cert_path)?;
    if info.not_after < now {
        return Err(TlsError::Expired {
            path: cert_path.to_path_buf(),
            not_after: info.not_after,
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key_path.to_path_buf(),
        },
        other => TlsError::BadPem {
            path: key_path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        },
        other => TlsError::BadKey {
            key_path: key_path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    Ok((Arc::new(certified), info))
}

fn parse_chain(cert_pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// Validity and names of the first certificate in a PEM file's contents.
pub fn inspect_certificate_pem(cert_pem: &[u8], path: &Path) -> Result<CertInfo, TlsError> {
    let chain = parse_chain(cert_pem, path)?;
    inspect_der(&chain[0], path)
}

fn inspect_der(der: &CertificateDer<'_>, path: &Path) -> Result<CertInfo, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let validity = cert.validity();
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(bad(format!("subjectAltName: {e}"))),
    };
    Ok(CertInfo {
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
        dns_names,
        is_ca: cert.is_ca(),
    })
}

fn to_system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}
