//! The one Kubernetes client builder of every `valet` subcommand (webhook,
//! broker, audit, trust, certs), so that each reads the same flag and
//! environment the same way (DESIGN.md "CLI conventions"):
//!
//! - `--kubeconfig PATH[:PATH...]`, from `KUBECONFIG` when absent. A list is
//!   merged as kubectl merges `KUBECONFIG`: the first file to set a value
//!   wins, so a context may live in any file of the list.
//! - Without either: `~/.kube/config`, then the in-cluster configuration.
//! - `VALET_KUBECONFIG`, the old name, still works when neither is given,
//!   and says once that it is deprecated.
//!
//! Every client gets the process's one rustls provider (aws-lc-rs, the one
//! the AWS SDK and the webhook's TLS use too).

use std::path::{Path, PathBuf};
use std::sync::Once;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// The flag every subcommand takes.
pub const FLAG: &str = "--kubeconfig";
/// The environment variable behind [`FLAG`] (kubectl's).
pub const ENV: &str = "KUBECONFIG";
/// The old, deprecated environment variable, read when [`ENV`] is unset.
pub const DEPRECATED_ENV: &str = "VALET_KUBECONFIG";
/// The help text of [`FLAG`], the same on every subcommand.
pub const HELP: &str = "Kubeconfig file, or a colon-separated list merged as kubectl merges KUBECONFIG (the first file to set a value wins); default: ~/.kube/config, then the in-cluster config";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kubeconfig {}: {source} (check --kubeconfig or KUBECONFIG)", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read kubeconfig {paths}: {source} (check --kubeconfig or KUBECONFIG)")]
    Read {
        paths: String,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "kubeconfig {paths}: {source} (check its current-context, or pass another --kubeconfig)"
    )]
    Load {
        paths: String,
        #[source]
        source: KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration: {source} (pass --kubeconfig, set KUBECONFIG, or run in a pod)"
    )]
    Infer {
        #[source]
        source: kube::config::InferConfigError,
    },
    #[error("cannot build the Kubernetes client: {source}")]
    Client {
        #[source]
        source: kube::Error,
    },
}

/// Installs the process's rustls provider (aws-lc-rs) unless one is
/// installed already; idempotent.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // A concurrent install may win the race: either way one provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The kubeconfig files to read: `flag` (from `--kubeconfig` or
/// `KUBECONFIG`, split on `:` as kubectl splits `KUBECONFIG`), else
/// `VALET_KUBECONFIG`. Empty means: infer.
pub fn kubeconfig_paths(flag: Option<&Path>) -> Vec<PathBuf> {
    let split = |value: &std::ffi::OsStr| -> Vec<PathBuf> {
        std::env::split_paths(value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    };
    let deprecated = std::env::var_os(DEPRECATED_ENV).filter(|v| !v.is_empty());
    if let Some(flag) = flag.map(|p| split(p.as_os_str())).filter(|p| !p.is_empty()) {
        if deprecated.is_some() {
            warn_deprecated(true);
        }
        return flag;
    }
    match deprecated {
        Some(value) => {
            warn_deprecated(false);
            split(&value)
        }
        None => Vec::new(),
    }
}

fn warn_deprecated(ignored: bool) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if ignored {
            tracing::warn!(
                env = DEPRECATED_ENV,
                instead = "--kubeconfig or KUBECONFIG",
                "deprecated environment variable ignored: --kubeconfig or KUBECONFIG is set"
            );
        } else {
            tracing::warn!(
                env = DEPRECATED_ENV,
                instead = "--kubeconfig or KUBECONFIG",
                "deprecated environment variable used"
            );
        }
    });
}

fn display(paths: &[PathBuf]) -> String {
    std::env::join_paths(paths)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{paths:?}"))
}

/// The client configuration for `--kubeconfig` (see [`kubeconfig_paths`]).
pub async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, Error> {
    let paths = kubeconfig_paths(kubeconfig);
    if paths.is_empty() {
        return kube::Config::infer()
            .await
            .map_err(|source| Error::Infer { source });
    }
    let merged = paths
        .iter()
        .try_fold(Kubeconfig::default(), |merged, path| {
            Kubeconfig::read_from(path).and_then(|next| merged.merge(next))
        })
        .map_err(|source| match source {
            KubeconfigError::ReadConfig(source, path) => Error::ReadFile { path, source },
            source => Error::Read {
                paths: display(&paths),
                source,
            },
        })?;
    kube::Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Load {
            paths: display(&paths),
            source,
        })
}

/// A client from a configuration (e.g. [`config`] with its URL overridden).
pub fn client_from(config: kube::Config) -> Result<kube::Client, Error> {
    install_crypto_provider();
    kube::Client::try_from(config).map_err(|source| Error::Client { source })
}

/// The client for `--kubeconfig` (see [`kubeconfig_paths`]).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, Error> {
    client_from(config(kubeconfig).await?)
}
