use std::path::PathBuf;
use std::time::SystemTime;

/// Everything that can go wrong while making, reading or serving certificates.
///
/// Messages name the file and say what to do, because they end up in the
/// webhook's log when a rotated Secret is broken.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read {what} file {path}: {source} (check --tls-cert/--tls-key and the mounted Secret)"
    )]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no certificate found in {path} (expected a PEM block `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },

    #[error("{path} is not valid PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },

    #[error(
        "no private key found in {path} (expected a PEM block `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
    )]
    NoPrivateKey { path: PathBuf },

    #[error("private key {key_path} is not usable: {reason}")]
    BadKey { key_path: PathBuf, reason: String },

    #[error(
        "private key {key_path} does not match the certificate {cert_path} (were they written by different rotations?)"
    )]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    #[error("certificate {path} cannot be parsed: {reason}")]
    BadCertificate { path: PathBuf, reason: String },

    #[error("certificate {path} expired at {not_after} (renew it, e.g. `valet certs`)", not_after = crate::fmt_time(*not_after))]
    Expired {
        path: PathBuf,
        not_after: SystemTime,
    },

    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    #[error("invalid DNS name {name:?} for a certificate: {reason}")]
    BadDnsName { name: String, reason: String },

    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),

    #[error("cannot watch {path} for certificate changes: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}
