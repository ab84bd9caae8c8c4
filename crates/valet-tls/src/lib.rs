//! Certificates for storage-valet: a private CA and serving certificates
//! (rcgen), loading PEM pairs for rustls, a resolver that follows rotations
//! on disk, the server TLS configuration, and the `valet certs` command.

pub mod cli;
mod config;
mod error;
mod generate;
mod load;
pub mod plan;
pub mod policy;
mod reload;
mod store;

pub use cli::{CertsArgs, CertsError, CertsOutcome};
pub use config::{ALPN, server_config, server_config_with};
pub use error::TlsError;
pub use generate::{CaBundle, ServingPair, generate_ca, generate_serving, service_dns_names};
pub use load::{CertInfo, certified_key_from_pem, inspect_certificate_pem, load_certified_key};
pub use policy::{PolicyError, TlsPolicy};
pub use reload::{DEFAULT_RECHECK_INTERVAL, ReloadOutcome, ReloadingResolver, WatcherHandle};

/// RFC 3339 for log lines and error messages.
pub(crate) fn fmt_time(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}
