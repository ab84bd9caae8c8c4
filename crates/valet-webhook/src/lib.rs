//! `valet webhook`: the HTTPS admission server.
//!
//! - [`handler`]: decode, look up, call `valet_core::admission::admit`, encode
//! - [`cache`]: metadata-only ServiceAccount watch, parsed annotations only
//! - [`server`]: TLS + HTTP/1.1 + HTTP/2 serving with graceful shutdown
//! - [`metrics`]: the Prometheus metrics
//! - [`peer_metrics`]: the peer's metrics, under its names
//! - [`args`]: the webhook's flags, with the peer's names; [`flags`]: those
//!   shared with `valet mutate`
//! - [`peer`]: the peer's flags that have no meaning here, or are refused
//! - [`argv`]: the peer's Go-style command line, rewritten for clap

pub mod args;
pub mod argv;
pub mod cache;
pub mod flags;
pub mod handler;
pub mod limits;
pub mod metrics;
pub mod peer;
pub mod peer_metrics;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
pub use args::WebhookArgs;
use axum::Router;
use axum::routing::{get, post};
pub use flags::MutationFlags;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use valet_core::settings::{ContainerCredentialsIdentities, Settings};

use crate::cache::SaCache;
use crate::handler::AppState;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("serving certificate: {0}")]
    Tls(#[from] valet_tls::TlsError),
    #[error(transparent)]
    Kube(#[from] valet_kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("container credentials config {path}: {message}")]
    ContainerCredentials { path: PathBuf, message: String },
    #[error(transparent)]
    PeerFlag(#[from] peer::PeerFlagError),
    #[error(transparent)]
    TlsPolicy(#[from] valet_tls::PolicyError),
    #[error("--kube-api={url:?} is not a URL: {reason} (e.g. https://10.0.0.1:6443)")]
    KubeApi { url: String, reason: String },
    #[error("{0}")]
    Limits(String),
}

/// Runs the webhook until SIGTERM/SIGINT (a second signal exits at once).
pub async fn run(args: WebhookArgs) -> Result<(), Error> {
    if args.peer.version == Some(true) {
        // The peer's `--version`: a deployment's probe or script may call it.
        println!("valet webhook {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    // Refused flags and bad TLS names fail before anything starts.
    args.peer.check()?;
    args.limits.validate().map_err(Error::Limits)?;
    let tls_policy =
        valet_tls::TlsPolicy::from_go_names(&args.tls_min_version, &args.tls_cipher_suites)?;
    let kube_api = args
        .kube_api
        .as_deref()
        .map(parse_kube_api)
        .transpose()?
        .flatten();
    for (flag, instead) in args.peer.notes() {
        info!(flag, instead, "peer flag");
    }
    let settings = Settings::from(&args.mutation);
    let metrics = Arc::new(Metrics::new());

    let resolver = valet_tls::ReloadingResolver::from_files(&args.tls_cert, &args.tls_key)?;
    let _cert_watch = resolver.spawn_watcher(valet_tls::DEFAULT_RECHECK_INTERVAL)?;
    let tls = Arc::new(valet_tls::server_config_with(
        resolver.clone(),
        &tls_policy,
    )?);

    let client = kube_client(args.kubeconfig.as_deref(), kube_api).await?;
    let cache = SaCache::new(Some(client), settings.keys.clone(), metrics.clone());
    tokio::spawn(cache.clone().run_watch());

    let cc_path = PathBuf::from(&args.mutation.watch_container_credentials_config);
    let (identities, cc_bytes) = if cc_path.as_os_str().is_empty() {
        (ContainerCredentialsIdentities::default(), Vec::new())
    } else {
        read_identities(&cc_path)?
    };
    let state = Arc::new(AppState {
        settings,
        cache,
        container_credentials: ArcSwap::from_pointee(identities),
        grace: args.service_account_lookup_grace_period,
        on_lookup_failure: args.on_lookup_failure.into(),
        metrics: metrics.clone(),
        bodies: limits::BodyReader::new(&args.limits),
        cert_loaded: true.into(),
    });
    let shutdown = CancellationToken::new();
    if !cc_path.as_os_str().is_empty() {
        tokio::spawn(watch_identities(
            cc_path,
            cc_bytes,
            state.clone(),
            shutdown.clone(),
        ));
    }
    {
        let (metrics, resolver) = (metrics.clone(), resolver.clone());
        tokio::spawn(async move {
            loop {
                metrics
                    .cert_expiration
                    .set(unix_seconds(resolver.not_after()));
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        });
    }
    tokio::spawn(signals(shutdown.clone()));

    let app = router(state.clone());
    let addr = SocketAddr::new(args.bind_address, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let metrics_addr = SocketAddr::new(args.bind_address, args.metrics_port);
    let metrics_listener =
        TcpListener::bind(metrics_addr)
            .await
            .map_err(|source| Error::Listen {
                addr: metrics_addr,
                source,
            })?;
    info!(%addr, %metrics_addr, "listening");

    let metrics_app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    let metrics_shutdown = shutdown.clone();
    let metrics_server = tokio::spawn(async move {
        let _ = axum::serve(metrics_listener, metrics_app)
            .with_graceful_shutdown(async move { metrics_shutdown.cancelled().await })
            .await;
    });
    server::serve_tls(
        listener,
        tls,
        app,
        shutdown,
        args.shutdown_timeout,
        args.limits.clone(),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), metrics_server).await;
    info!("stopped");
    Ok(())
}

/// The HTTPS routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/mutate",
            // Only /mutate, as the peer instruments it.
            post(handler::mutate).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                instrument_peer_route,
            )),
        )
        .route("/healthz", get(handler::healthz))
        .route("/readyz", get(handler::readyz))
        .with_state(state)
}

/// The peer's `InstrumentRoute`: `http_request_count` and the latencies.
async fn instrument_peer_route(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let verb = peer_verb(request.method());
    let response = next.run(request).await;
    // Only /mutate is instrumented, so its path is the label.
    state.metrics.peer.observe_request(
        verb,
        "/mutate",
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The `verb` label: a standard method, or OTHER for an extension method
/// (any token is a method to HTTP; each would be a series of its own, an
/// unbounded number for whoever sends them).
fn peer_verb(method: &http::Method) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

async fn kube_client(
    kubeconfig: Option<&std::path::Path>,
    kube_api: Option<http::Uri>,
) -> Result<kube::Client, Error> {
    let mut config = valet_kube::config(kubeconfig).await?;
    if let Some(uri) = kube_api {
        config.cluster_url = uri;
    }
    Ok(valet_kube::client_from(config)?)
}

/// `--kube-api`: the API server's URL (`None` when empty, the peer's default).
fn parse_kube_api(url: &str) -> Result<Option<http::Uri>, Error> {
    if url.is_empty() {
        return Ok(None);
    }
    let bad = |reason: String| Error::KubeApi {
        url: url.to_string(),
        reason,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if uri.scheme().is_none() || uri.host().is_none() {
        return Err(bad("it needs a scheme and a host".into()));
    }
    Ok(Some(uri))
}

/// The parsed identities and the bytes they came from (the watcher's
/// starting point, so a change right after start-up is not missed).
fn read_identities(
    path: &std::path::Path,
) -> Result<(ContainerCredentialsIdentities, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::ContainerCredentials {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let identities =
        ContainerCredentialsIdentities::parse(&bytes).map_err(|e| Error::ContainerCredentials {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok((identities, bytes))
}

/// Re-reads the container-credentials file when its content changes.
/// Polling the content (not a file watch) survives the kubelet's `..data`
/// symlink swap in ConfigMap volumes, which leaves file watches stale.
async fn watch_identities(
    path: PathBuf,
    initial: Vec<u8>,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) {
    let mut last = Some(initial);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        match ContainerCredentialsIdentities::parse(&bytes) {
            Ok(ids) => {
                info!(path = %path.display(), identities = ids.len(), "container credentials config reloaded");
                state.container_credentials.store(Arc::new(ids));
            }
            Err(error) => {
                state.metrics.cc_config_refused.inc();
                warn!(path = %path.display(), %error, "container credentials config refused; keeping the previous one")
            }
        }
        last = Some(bytes);
    }
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    info!("signal received: shutting down gracefully (send again to exit now)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    warn!("second signal: exiting now");
    std::process::exit(1);
}

/// Seconds since the Unix epoch (negative before it: a certificate can say so).
fn unix_seconds(t: std::time::SystemTime) -> f64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::peer_verb;

    #[test]
    fn extension_methods_share_one_verb_label() {
        assert_eq!(peer_verb(&http::Method::POST), "POST");
        assert_eq!(peer_verb(&http::Method::GET), "GET");
        for made_up in ["BREW", "X1", "post"] {
            let m = http::Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(peer_verb(&m), "OTHER", "{made_up}");
        }
    }
}
