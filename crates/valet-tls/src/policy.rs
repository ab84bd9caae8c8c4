//! `--tls-min-version` and `--tls-cipher-suites` with Go's names (the
//! `crypto/tls` constants Kubernetes components take), mapped to rustls.
//!
//! rustls implements TLS 1.2 and 1.3 with AEAD suites only, so Go names for
//! TLS 1.0/1.1, CBC, RC4, 3DES and RSA key exchange are refused at start with
//! the list of what is supported: a deployment never silently gets a weaker
//! or different set than it asked for.

use rustls::{CipherSuite, SupportedCipherSuite};

/// The Go version names accepted by `--tls-min-version`.
pub const MIN_VERSIONS: [&str; 2] = ["VersionTLS12", "VersionTLS13"];

/// Go's suite names (and the aliases `crypto/tls` accepts) for the suites of
/// our provider (aws-lc-rs), with their IANA code.
const SUITES: [(&str, CipherSuite); 9] = [
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Go's short aliases of the ChaCha20 suites (`crypto/tls` accepts both).
const ALIASES: [(&str, &str); 2] = [
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "--tls-min-version={0:?} is not supported: valet serves TLS 1.2 and 1.3 only; use one of {versions}",
        versions = MIN_VERSIONS.join(", ")
    )]
    MinVersion(String),
    #[error(
        "--tls-cipher-suites: {0:?} is not a supported cipher suite (Go names; supported: {suites})",
        suites = supported_suite_names().join(", ")
    )]
    Suite(String),
    #[error(
        "--tls-cipher-suites names no TLS 1.2 suite while TLS 1.2 is allowed: add one of the TLS_ECDHE_* suites, or set --tls-min-version=VersionTLS13"
    )]
    NoTls12Suite,
}

/// The Go names `--tls-cipher-suites` accepts.
pub fn supported_suite_names() -> Vec<&'static str> {
    SUITES.iter().map(|(name, _)| *name).collect()
}

/// What the serving TLS configuration allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    /// false: TLS 1.3 only.
    pub allow_tls12: bool,
    /// TLS 1.2 suites allowed; empty: the provider's defaults.
    pub tls12_suites: Vec<CipherSuite>,
}

impl Default for TlsPolicy {
    fn default() -> TlsPolicy {
        TlsPolicy {
            allow_tls12: true,
            tls12_suites: Vec::new(),
        }
    }
}

impl TlsPolicy {
    /// From the flags' values: `min_version` empty means TLS 1.2;
    /// `suites` empty means the provider's defaults.
    ///
    /// As in Go, the suite list restricts TLS 1.2 only: TLS 1.3 suites are
    /// not configurable there, so their names are accepted and all TLS 1.3
    /// suites stay on.
    pub fn from_go_names(min_version: &str, suites: &[String]) -> Result<TlsPolicy, PolicyError> {
        let allow_tls12 = match min_version {
            "" | "VersionTLS12" => true,
            "VersionTLS13" => false,
            other => return Err(PolicyError::MinVersion(other.to_string())),
        };
        let mut tls12_suites = Vec::new();
        for name in suites.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let canonical = ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .map_or(name, |(_, full)| full);
            let Some((_, suite)) = SUITES.iter().find(|(n, _)| *n == canonical) else {
                return Err(PolicyError::Suite(name.to_string()));
            };
            if !canonical.starts_with("TLS_AES_")
                && !canonical.starts_with("TLS_CHACHA20_")
                && !tls12_suites.contains(suite)
            {
                tls12_suites.push(*suite);
            }
        }
        let only_tls13_named =
            !suites.iter().all(|s| s.trim().is_empty()) && tls12_suites.is_empty();
        if allow_tls12 && only_tls13_named {
            return Err(PolicyError::NoTls12Suite);
        }
        Ok(TlsPolicy {
            allow_tls12,
            tls12_suites,
        })
    }

    /// The provider's suites this policy keeps, in the provider's preference order.
    pub fn suites(&self, provider: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
        provider
            .iter()
            .filter(|s| match s {
                SupportedCipherSuite::Tls13(_) => true,
                SupportedCipherSuite::Tls12(_) => {
                    self.allow_tls12
                        && (self.tls12_suites.is_empty() || self.tls12_suites.contains(&s.suite()))
                }
            })
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_allow_tls12_with_every_suite() {
        let p = TlsPolicy::from_go_names("", &[]).unwrap();
        assert_eq!(p, TlsPolicy::default());
        let provider = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        assert_eq!(p.suites(&provider).len(), provider.len());
    }

    #[test]
    fn tls13_only_drops_every_tls12_suite() {
        let p = TlsPolicy::from_go_names("VersionTLS13", &[]).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        assert!(
            p.suites(&provider)
                .iter()
                .all(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        );
    }

    #[test]
    fn suite_list_restricts_tls12_and_keeps_tls13() {
        let p = TlsPolicy::from_go_names(
            "VersionTLS12",
            &names(&[
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                " TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            ]),
        )
        .unwrap();
        assert_eq!(
            p.tls12_suites,
            vec![
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        let provider = rustls::crypto::aws_lc_rs::default_provider().cipher_suites;
        let kept = p.suites(&provider);
        let tls12: Vec<_> = kept
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(|s| s.suite())
            .collect();
        assert_eq!(tls12.len(), 2);
        assert!(
            kept.iter()
                .any(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        );
    }

    #[test]
    fn unsupported_names_are_refused_listing_the_supported_ones() {
        for bad in ["VersionTLS10", "VersionTLS11", "1.2", "tls12"] {
            let e = TlsPolicy::from_go_names(bad, &[]).unwrap_err();
            assert!(e.to_string().contains("VersionTLS12, VersionTLS13"), "{e}");
        }
        for bad in [
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
            "tls_ecdhe_rsa_with_aes_128_gcm_sha256",
        ] {
            let e = TlsPolicy::from_go_names("", &names(&[bad])).unwrap_err();
            assert_eq!(e, PolicyError::Suite(bad.to_string()));
            assert!(
                e.to_string()
                    .contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
                "{e}"
            );
        }
    }

    #[test]
    fn tls13_names_alone_with_tls12_allowed_are_refused() {
        assert_eq!(
            TlsPolicy::from_go_names("", &names(&["TLS_AES_128_GCM_SHA256"])),
            Err(PolicyError::NoTls12Suite)
        );
        assert!(
            TlsPolicy::from_go_names("VersionTLS13", &names(&["TLS_AES_128_GCM_SHA256"])).is_ok()
        );
    }
}
