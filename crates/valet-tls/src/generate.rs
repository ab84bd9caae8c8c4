//! Certificate generation with rcgen: a private CA and serving certificates it signs.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::TlsError;

/// Certificates start this long in the past so that a node whose clock lags
/// a little behind does not reject a certificate minted a second ago.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A CA certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A serving (leaf) certificate and its private key, both PEM.
#[derive(Clone)]
pub struct ServingPair {
    pub cert_pem: String,
    pub key_pem: String,
}

// Private keys stay out of logs and panic messages.
impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ServingPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingPair")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// The names the API server may use to reach a Service: it dials
/// `SERVICE.NAMESPACE.svc`, the others cover clients inside the cluster.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn validity_window(validity: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - BACKDATE, now + validity)
}

/// A self-signed CA (ECDSA P-256) that may sign leaf certificates only.
pub fn generate_ca(common_name: &str, validity: Duration) -> Result<CaBundle, TlsError> {
    let key = KeyPair::generate().map_err(|source| TlsError::Generate {
        what: "CA key",
        source,
    })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "storage-valet");
    params.distinguished_name = dn;
    // Path length 0: this CA signs serving certificates, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.not_before, params.not_after) = validity_window(validity);
    let cert = params
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: "CA certificate",
            source,
        })?;
    Ok(CaBundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `dns_names` (the first is also the subject CN),
/// signed by `ca`, with a fresh ECDSA P-256 key.
pub fn generate_serving(
    ca: &CaBundle,
    dns_names: &[String],
    validity: Duration,
) -> Result<ServingPair, TlsError> {
    let first = dns_names.first().ok_or_else(|| TlsError::BadDnsName {
        name: String::new(),
        reason: "a serving certificate needs at least one DNS name".into(),
    })?;
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|source| TlsError::Generate {
        what: "serving certificate (the CA key PEM is unreadable)",
        source,
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|source| TlsError::Generate {
            what: "serving certificate (the CA certificate PEM is unreadable)",
            source,
        })?;

    let mut params = CertificateParams::default();
    params.subject_alt_names = dns_names
        .iter()
        .map(|name| {
            name.as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e: rcgen::Error| TlsError::BadDnsName {
                    name: name.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity_window(validity);

    let key = KeyPair::generate().map_err(|source| TlsError::Generate {
        what: "serving key",
        source,
    })?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| TlsError::Generate {
            what: "serving certificate",
            source,
        })?;
    Ok(ServingPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
