//! `valet webhook` flags: amazon-eks-pod-identity-webhook's names and
//! defaults, so a deployment of the peer keeps its arguments.

use std::path::PathBuf;
use std::time::Duration;

use valet_core::admission::LookupFailure;

use crate::flags::MutationFlags;
use crate::limits::LimitFlags;
use crate::peer::PeerFlags;

#[derive(clap::Args, Clone, Debug)]
pub struct WebhookArgs {
    /// HTTPS port of the admission endpoint.
    #[arg(long, env = "VALET_PORT", default_value_t = 443)]
    pub port: u16,
    /// Plain-HTTP port of `/metrics`.
    #[arg(long, env = "VALET_METRICS_PORT", default_value_t = 9999)]
    pub metrics_port: u16,
    /// Address to bind both ports to.
    #[arg(long, env = "VALET_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// Serving certificate (PEM); reloaded when it changes.
    #[arg(
        long,
        env = "VALET_TLS_CERT",
        default_value = "/etc/webhook/certs/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); reloaded when it changes.
    #[arg(
        long,
        env = "VALET_TLS_KEY",
        default_value = "/etc/webhook/certs/tls.key"
    )]
    pub tls_key: PathBuf,
    #[arg(long, env = valet_kube::ENV, help = valet_kube::HELP)]
    pub kubeconfig: Option<PathBuf>,
    /// URL of the API server, overriding the kubeconfig's (or the
    /// in-cluster) address, as the peer's --kube-api does.
    #[arg(long, env = "VALET_KUBE_API")]
    pub kube_api: Option<String>,
    /// Lowest TLS version served (Go's names: VersionTLS12, VersionTLS13).
    #[arg(long, env = "VALET_TLS_MIN_VERSION", default_value = "VersionTLS12")]
    pub tls_min_version: String,
    /// TLS 1.2 cipher suites allowed, comma-separated Go names (e.g.
    /// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); empty: rustls's defaults.
    /// As in Go, TLS 1.3 suites are always on.
    #[arg(long, env = "VALET_TLS_CIPHER_SUITES", value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,
    /// How long a pod waits for its ServiceAccount to reach the cache before
    /// one direct GET (Go duration: 100ms, 1s, 0 to disable the wait).
    #[arg(long, env = "VALET_SERVICE_ACCOUNT_LOOKUP_GRACE_PERIOD", default_value = "100ms", value_parser = parse_go_duration)]
    pub service_account_lookup_grace_period: Duration,
    /// When the ServiceAccount cannot be read at all: admit the pod unmutated
    /// with a warning (allow, the peer's behaviour) or refuse it so that its
    /// controller retries (deny).
    #[arg(
        long,
        env = "VALET_ON_LOOKUP_FAILURE",
        value_enum,
        default_value = "allow"
    )]
    pub on_lookup_failure: OnLookupFailure,
    /// How long graceful shutdown waits for requests in flight.
    #[arg(long, env = "VALET_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_go_duration)]
    pub shutdown_timeout: Duration,
    #[command(flatten)]
    pub mutation: MutationFlags,
    #[command(flatten)]
    pub limits: LimitFlags,
    #[command(flatten)]
    pub peer: PeerFlags,
}

/// `--on-lookup-failure` values: the core's [`LookupFailure`], which knows
/// no CLI crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnLookupFailure {
    /// Admit the pod unmutated, with a warning (the peer's behaviour).
    Allow,
    /// Refuse the pod so that its controller retries.
    Deny,
}

impl From<OnLookupFailure> for LookupFailure {
    fn from(v: OnLookupFailure) -> Self {
        match v {
            OnLookupFailure::Allow => LookupFailure::Allow,
            OnLookupFailure::Deny => LookupFailure::Deny,
        }
    }
}

/// Go's `time.ParseDuration` for the forms deployments use: `100ms`, `1s`,
/// `1m30s`, `2h`, `1.5s`, `0`.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 100ms, 1s, 1m30s)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("fast").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
