//! What `valet certs` should do with the certificates it finds: keep them,
//! re-issue the serving certificate, or rotate the CA too.
//!
//! Pure apart from key generation: the clock comes in as `now`, so renewal
//! decisions are tested without waiting for anything to expire.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PublicKeyData};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{
    CaBundle, ServingPair, TlsError, certified_key_from_pem, generate_ca, generate_serving,
    inspect_certificate_pem,
};

/// Certificates found from an earlier run (any of them may be missing).
#[derive(Clone, Default)]
pub struct Material {
    /// The trust bundle: the current CA first, possibly an older CA after it.
    pub ca_cert_pem: Option<String>,
    pub ca_key_pem: Option<String>,
    pub tls_cert_pem: Option<String>,
    pub tls_key_pem: Option<String>,
}

/// What the certificates must satisfy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub dns_names: Vec<String>,
    pub ca_common_name: String,
    pub serving_validity: Duration,
    pub ca_validity: Duration,
    /// Re-issue when the serving certificate expires within this window.
    pub renew_before: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kept,
    Created,
    /// Replaced an existing one; the reason is in `Plan::reasons`.
    Renewed,
}

/// The certificates to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    pub ca: CaBundle,
    /// What clients must trust (the caBundle): the current CA, plus the
    /// previous CA while it is still valid so that pods still serving a
    /// certificate it signed keep working during a rollout.
    pub trust_bundle_pem: String,
    pub serving: ServingPair,
    pub ca_action: Action,
    pub serving_action: Action,
    /// Why anything was (re)generated, for the user.
    pub reasons: Vec<String>,
}

impl Plan {
    pub fn changed(&self) -> bool {
        self.ca_action != Action::Kept || self.serving_action != Action::Kept
    }
}

/// Decides, from what exists, which certificates to keep and which to issue.
pub fn plan(existing: &Material, policy: &Policy, now: SystemTime) -> Result<Plan, TlsError> {
    let mut reasons = Vec::new();
    let usable_ca = match (&existing.ca_cert_pem, &existing.ca_key_pem) {
        (Some(cert), Some(key)) => match ca_reusable(cert, key, policy, now) {
            Ok(ca) => Some(ca),
            Err(why) => {
                reasons.push(format!("CA replaced: {why}"));
                None
            }
        },
        (Some(_), None) => {
            reasons.push("CA replaced: its private key is missing".into());
            None
        }
        _ => None,
    };

    if let Some(ca) = usable_ca {
        let bundle = existing.ca_cert_pem.clone().unwrap_or_default();
        let serving = match (&existing.tls_cert_pem, &existing.tls_key_pem) {
            (Some(cert), Some(key)) => match serving_reusable(cert, key, &ca, policy, now) {
                Ok(()) => {
                    return Ok(Plan {
                        serving: ServingPair {
                            cert_pem: cert.clone(),
                            key_pem: key.clone(),
                        },
                        ca,
                        trust_bundle_pem: bundle,
                        ca_action: Action::Kept,
                        serving_action: Action::Kept,
                        reasons,
                    });
                }
                Err(why) => {
                    reasons.push(format!("serving certificate renewed: {why}"));
                    Action::Renewed
                }
            },
            _ => Action::Created,
        };
        let pair = generate_serving(&ca, &policy.dns_names, policy.serving_validity)?;
        return Ok(Plan {
            ca,
            trust_bundle_pem: bundle,
            serving: pair,
            ca_action: Action::Kept,
            serving_action: serving,
            reasons,
        });
    }

    let ca = generate_ca(&policy.ca_common_name, policy.ca_validity)?;
    let mut trust_bundle_pem = ca.cert_pem.clone();
    let had_ca = existing.ca_cert_pem.is_some();
    if let Some(old) = existing
        .ca_cert_pem
        .as_deref()
        .and_then(|pem| first_valid_cert(pem, now))
    {
        trust_bundle_pem.push_str(&old);
    }
    let serving = generate_serving(&ca, &policy.dns_names, policy.serving_validity)?;
    let serving_action = if existing.tls_cert_pem.is_some() {
        Action::Renewed
    } else {
        Action::Created
    };
    Ok(Plan {
        ca,
        trust_bundle_pem,
        serving,
        ca_action: if had_ca {
            Action::Renewed
        } else {
            Action::Created
        },
        serving_action,
        reasons,
    })
}

/// The CA is kept only when it outlives any serving certificate it would
/// sign now, and its key is the one in its certificate.
fn ca_reusable(
    bundle_pem: &str,
    key_pem: &str,
    policy: &Policy,
    now: SystemTime,
) -> Result<CaBundle, String> {
    let info = inspect_certificate_pem(bundle_pem.as_bytes(), Path::new("ca.crt"))
        .map_err(|e| e.to_string())?;
    if !info.is_ca {
        return Err("ca.crt is not a CA certificate".into());
    }
    if info.not_after < now + policy.serving_validity {
        return Err(format!(
            "it expires at {}, before a new serving certificate would",
            crate::fmt_time(info.not_after)
        ));
    }
    let first = CertificateDer::from_pem_slice(bundle_pem.as_bytes()).map_err(|e| e.to_string())?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&first).map_err(|e| e.to_string())?;
    let key = KeyPair::from_pem(key_pem).map_err(|e| format!("ca.key: {e}"))?;
    if key.subject_public_key_info() != parsed.tbs_certificate.subject_pki.raw {
        return Err("ca.key does not belong to ca.crt".into());
    }
    let cert_pem = pem_of(&first);
    Ok(CaBundle {
        cert_pem,
        key_pem: key_pem.to_string(),
    })
}

fn serving_reusable(
    cert_pem: &str,
    key_pem: &str,
    ca: &CaBundle,
    policy: &Policy,
    now: SystemTime,
) -> Result<(), String> {
    let (certified, info) = certified_key_from_pem(
        cert_pem.as_bytes(),
        key_pem.as_bytes(),
        Path::new("tls.crt"),
        Path::new("tls.key"),
        now,
    )
    .map_err(|e| e.to_string())?;
    if info.not_after < now + policy.renew_before {
        return Err(format!(
            "it expires at {}, within the renewal window",
            crate::fmt_time(info.not_after)
        ));
    }
    let verifier = verifier_for(&ca.cert_pem).map_err(|e| e.to_string())?;
    let unix_now = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in &policy.dns_names {
        let server_name = ServerName::try_from(name.clone()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(
                &certified.cert[0],
                &certified.cert[1..],
                &server_name,
                &[],
                unix_now,
            )
            .map_err(|e| format!("it does not verify for {name} with the current CA: {e}"))?;
    }
    Ok(())
}

fn verifier_for(ca_pem: &str) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::BadPem {
            path: "ca.crt".into(),
            reason: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::BadCertificate {
            path: "ca.crt".into(),
            reason: e.to_string(),
        })
}

/// The first certificate of `bundle_pem` as PEM, when it has not expired.
fn first_valid_cert(bundle_pem: &str, now: SystemTime) -> Option<String> {
    let info = inspect_certificate_pem(bundle_pem.as_bytes(), Path::new("ca.crt")).ok()?;
    if info.not_after <= now {
        return None;
    }
    CertificateDer::from_pem_slice(bundle_pem.as_bytes())
        .ok()
        .map(|der| pem_of(&der))
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
