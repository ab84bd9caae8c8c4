//! Flags of amazon-eks-pod-identity-webhook (its `main.go`, klog's included)
//! that valet accepts so that a deployment of the peer keeps its arguments
//! when it switches image. Each one either has no meaning here (accepted,
//! logged once at start-up, saying what valet does instead) or asks for
//! behaviour valet lacks (refused at start, saying what to use instead).

use std::time::Duration;

use valet_core::settings::parse_go_bool;

use crate::args::parse_go_duration;

/// klog's `-stderrthreshold`: a severity name or number.
fn parse_severity(s: &str) -> Result<String, String> {
    match s.to_ascii_uppercase().as_str() {
        "INFO" | "WARNING" | "ERROR" | "FATAL" | "0" | "1" | "2" | "3" => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?} is not a severity (INFO, WARNING, ERROR, FATAL or 0-3)"
        )),
    }
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct PeerFlags {
    /// Peer: certificates from the CSR API (its default: true). valet serves
    /// --tls-cert/--tls-key (create them with `valet certs`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub in_cluster: Option<bool>,
    /// Peer (in-cluster): the Service name in the CSR.
    #[arg(long, hide = true)]
    pub service_name: Option<String>,
    /// Peer (in-cluster): the namespace of the TLS Secret and ConfigMap.
    #[arg(long, hide = true)]
    pub namespace: Option<String>,
    /// Peer (in-cluster): the Secret storing the CSR-issued certificate.
    #[arg(long, hide = true)]
    pub tls_secret: Option<String>,
    /// Peer: informer resync period. valet's watch is event-driven and
    /// re-lists on any gap, so it has no periodic resync.
    #[arg(long, value_parser = parse_go_duration, hide = true)]
    pub resync_period: Option<Duration>,
    /// Peer: roles from the pod-identity-webhook ConfigMap (refused).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub watch_config_map: Option<bool>,
    /// Peer: role names completed into ARNs from EC2 instance metadata (refused).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub compose_role_arn: Option<bool>,
    /// Peer: /debug/alpha/cache on the metrics port (refused).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub enable_debugging_handlers: Option<bool>,
    /// Print the version and exit (the peer's --version).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub version: Option<bool>,
    #[command(flatten)]
    pub klog: KlogFlags,
}

/// klog's flags (`klog.InitFlags`), which the peer adds to its command line.
/// valet logs with `tracing` to stderr: level from --log-level (or
/// RUST_LOG), format from --log-format; none of these changes that.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KlogFlags {
    /// klog: verbosity (valet: --log-level).
    #[arg(long = "v", allow_negative_numbers = true, hide = true)]
    pub v: Option<i32>,
    #[arg(long, hide = true)]
    pub vmodule: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub logtostderr: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub alsologtostderr: Option<bool>,
    #[arg(long, value_parser = parse_severity, hide = true)]
    pub stderrthreshold: Option<String>,
    #[arg(long = "log_dir", hide = true)]
    pub log_dir: Option<String>,
    #[arg(long = "log_file", hide = true)]
    pub log_file: Option<String>,
    #[arg(long = "log_file_max_size", hide = true)]
    pub log_file_max_size: Option<u64>,
    #[arg(long = "log_backtrace_at", hide = true)]
    pub log_backtrace_at: Option<String>,
    #[arg(long = "add_dir_header", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub add_dir_header: Option<bool>,
    #[arg(long = "skip_headers", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub skip_headers: Option<bool>,
    #[arg(long = "skip_log_headers", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub skip_log_headers: Option<bool>,
    #[arg(long = "one_output", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub one_output: Option<bool>,
    #[arg(long = "legacy_stderr_threshold_behavior", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool, hide = true)]
    pub legacy_stderr_threshold_behavior: Option<bool>,
}

/// A peer flag asking for behaviour valet does not have.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerFlagError {
    #[error(
        "--watch-config-map is not supported: valet reads roles from ServiceAccount annotations only; annotate each ServiceAccount of the pod-identity-webhook ConfigMap with eks.amazonaws.com/role-arn (and audience, sts-regional-endpoints, token-expiration as there), or declare a BucketAccess, then drop --watch-config-map"
    )]
    WatchConfigMap,
    #[error(
        "--compose-role-arn is not supported: valet does not read EC2 instance metadata; write full ARNs (arn:aws:iam::ACCOUNT:role/PATH/NAME) in the role-arn annotations, then drop --compose-role-arn"
    )]
    ComposeRoleArn,
    #[error(
        "--enable-debugging-handlers is not supported: valet has no /debug/alpha/cache; `valet audit` shows what each ServiceAccount and pod resolves to, and `valet mutate` what a pod would get; drop --enable-debugging-handlers"
    )]
    DebuggingHandlers,
}

impl PeerFlags {
    /// Refuses the flags whose behaviour valet lacks (only when turned on:
    /// `--watch-config-map=false` asks for nothing).
    pub fn check(&self) -> Result<(), PeerFlagError> {
        if self.watch_config_map == Some(true) {
            return Err(PeerFlagError::WatchConfigMap);
        }
        if self.compose_role_arn == Some(true) {
            return Err(PeerFlagError::ComposeRoleArn);
        }
        if self.enable_debugging_handlers == Some(true) {
            return Err(PeerFlagError::DebuggingHandlers);
        }
        Ok(())
    }

    /// `(flag, what valet does instead)` for every given flag without
    /// meaning here, for one start-up log line each.
    pub fn notes(&self) -> Vec<(&'static str, &'static str)> {
        const CERTS: &str = "valet serves --tls-cert/--tls-key, reloaded on rotation (create them with `valet certs` or cert-manager), not the CSR API";
        const LOGS: &str =
            "valet logs to stderr only; level from RUST_LOG, format from --log-format";
        let k = &self.klog;
        let given = [
            ("--in-cluster", self.in_cluster.is_some(), CERTS),
            ("--service-name", self.service_name.is_some(), CERTS),
            ("--namespace", self.namespace.is_some(), CERTS),
            ("--tls-secret", self.tls_secret.is_some(), CERTS),
            (
                "--resync-period",
                self.resync_period.is_some(),
                "valet's ServiceAccount watch is event-driven and re-lists after any gap; there is no periodic resync",
            ),
            (
                "--watch-config-map",
                self.watch_config_map.is_some(),
                "off: roles come from ServiceAccount annotations",
            ),
            (
                "--compose-role-arn",
                self.compose_role_arn.is_some(),
                "off: role-arn annotations are full ARNs",
            ),
            (
                "--enable-debugging-handlers",
                self.enable_debugging_handlers.is_some(),
                "off: no debugging handlers",
            ),
            ("--v", k.v.is_some(), LOGS),
            ("--vmodule", k.vmodule.is_some(), LOGS),
            ("--logtostderr", k.logtostderr.is_some(), LOGS),
            ("--alsologtostderr", k.alsologtostderr.is_some(), LOGS),
            ("--stderrthreshold", k.stderrthreshold.is_some(), LOGS),
            ("--log_dir", k.log_dir.is_some(), LOGS),
            ("--log_file", k.log_file.is_some(), LOGS),
            ("--log_file_max_size", k.log_file_max_size.is_some(), LOGS),
            ("--log_backtrace_at", k.log_backtrace_at.is_some(), LOGS),
            ("--add_dir_header", k.add_dir_header.is_some(), LOGS),
            ("--skip_headers", k.skip_headers.is_some(), LOGS),
            ("--skip_log_headers", k.skip_log_headers.is_some(), LOGS),
            ("--one_output", k.one_output.is_some(), LOGS),
            (
                "--legacy_stderr_threshold_behavior",
                k.legacy_stderr_threshold_behavior.is_some(),
                LOGS,
            ),
        ];
        given
            .into_iter()
            .filter(|(_, set, _)| *set)
            .map(|(flag, _, note)| (flag, note))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_we_lack_is_refused_only_when_turned_on() {
        let mut f = PeerFlags {
            watch_config_map: Some(false),
            compose_role_arn: Some(false),
            enable_debugging_handlers: Some(false),
            ..Default::default()
        };
        assert_eq!(f.check(), Ok(()));
        f.compose_role_arn = Some(true);
        assert_eq!(f.check(), Err(PeerFlagError::ComposeRoleArn));
        f.compose_role_arn = None;
        f.watch_config_map = Some(true);
        assert!(f.check().unwrap_err().to_string().contains("role-arn"));
        f.watch_config_map = None;
        f.enable_debugging_handlers = Some(true);
        assert!(f.check().unwrap_err().to_string().contains("valet audit"));
    }

    #[test]
    fn severities() {
        for ok in ["INFO", "warning", "ERROR", "2"] {
            assert!(parse_severity(ok).is_ok());
        }
        assert!(parse_severity("loud").is_err());
    }
}
