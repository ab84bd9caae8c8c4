//! `ApiServer`: the listener (which tests can take down and bring back on the
//! same port) and the test-facing controls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::handler::handle;
use super::registry::ResourceDef;
use super::state::{RecordedRequest, Shared, Verb};

/// A running in-process API server on 127.0.0.1. Stops when dropped.
pub struct ApiServer {
    pub(super) shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl ApiServer {
    /// Binds 127.0.0.1 on a free port and serves. Panics when no loopback
    /// port can be bound (the test cannot run at all then).
    pub async fn start() -> ApiServer {
        match ApiServer::try_start().await {
            Ok(s) => s,
            Err(e) => panic!("cannot bind the test API server on 127.0.0.1: {e}"),
        }
    }

    pub async fn try_start() -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = ApiServer {
            shared: Arc::new(Shared::new(addr.to_string())),
            addr,
            running: Mutex::new(None),
        };
        server.spawn(listener);
        Ok(server)
    }

    fn spawn(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        let router = Router::new()
            .fallback(handle)
            .with_state(self.shared.clone());
        let task = tokio::spawn(serve(listener, router, token.clone()));
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some((token, task));
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube config for this server: no auth, default namespace "default".
    pub fn config(&self) -> kube::Config {
        let url = self
            .url()
            .parse()
            .unwrap_or_else(|e| panic!("own URL {} does not parse: {e}", self.url()));
        kube::Config::new(url)
    }

    /// A real kube-rs client for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config())
            .unwrap_or_else(|e| panic!("cannot build a kube client: {e}"))
    }

    /// A kubeconfig (cluster, context and user all named `valet-test`).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: valet-test\n  cluster:\n    server: {}\n\
             contexts:\n- name: valet-test\n  context:\n    cluster: valet-test\n    user: valet-test\n    namespace: default\n\
             current-context: valet-test\nusers:\n- name: valet-test\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes `dir/kubeconfig` for a `valet` binary (`--kubeconfig` or `KUBECONFIG`).
    pub fn write_kubeconfig(&self, dir: impl AsRef<Path>) -> std::io::Result<PathBuf> {
        let path = dir.as_ref().join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml())?;
        Ok(path)
    }

    /// Serves another resource type (replacing one with the same group,
    /// version and plural).
    pub fn register(&self, def: ResourceDef) {
        self.shared.store().registry.register(def);
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Forgets the watch history, as an etcd compaction: watching from any
    /// earlier resourceVersion is then answered with 410 Gone.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// How many events per type are kept for watches to resume from.
    pub fn set_history_limit(&self, events: usize) {
        self.shared.store().set_history_limit(events);
    }

    /// How often watches that allow bookmarks get one (default 1s).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self
            .shared
            .bookmark_interval
            .write()
            .unwrap_or_else(|p| p.into_inner()) = every;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// The next request with this method whose path (with query) starts with
    /// `path_prefix` is answered with a `Status` of this HTTP code.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16) {
        self.fail_times(method, path_prefix, status, 1);
    }

    /// As `fail_next`, for the next `times` matching requests.
    pub fn fail_times(&self, method: &str, path_prefix: &str, status: u16, times: usize) {
        let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .unwrap_or(http::Method::GET);
        for _ in 0..times {
            self.shared.add_fault(method.clone(), path_prefix, status);
        }
    }

    /// Holds every request with this method whose path (with query) starts
    /// with `path_prefix` unanswered (a hung API server, as a client sees
    /// it) until `set_stall(.., false)`; the held requests are then served.
    pub fn set_stall(&self, method: &str, path_prefix: &str, on: bool) {
        let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .unwrap_or(http::Method::GET);
        self.shared.set_stall(method, path_prefix, on);
    }

    /// Stops (or resumes) recording requests, e.g. for a 100k-object bench
    /// where the log would only cost memory. On by default.
    pub fn set_request_log(&self, on: bool) {
        self.shared.set_request_log(on);
    }

    /// Watches currently streaming.
    pub fn watch_count(&self) -> usize {
        self.shared.watches.load(Ordering::SeqCst)
    }

    pub fn verb_count(&self, verb: Verb) -> u64 {
        self.shared.verb_count(verb)
    }

    /// Create + update + patch + delete requests received.
    pub fn write_count(&self) -> u64 {
        [Verb::Create, Verb::Update, Verb::Patch, Verb::Delete]
            .iter()
            .map(|v| self.verb_count(*v))
            .sum()
    }

    /// Installs the TokenRequest minter: (namespace, service account,
    /// audiences, expirationSeconds) -> token.
    pub fn set_token_issuer(
        &self,
        issuer: impl Fn(&str, &str, &[String], i64) -> String + Send + Sync + 'static,
    ) {
        *self
            .shared
            .token_issuer
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(issuer));
    }

    /// Served at `/.well-known/openid-configuration`.
    pub fn set_oidc_discovery(&self, doc: Value) {
        self.shared.set_oidc(Some(doc), None);
    }

    /// Served at `/openid/v1/jwks`.
    pub fn set_oidc_jwks(&self, jwks: Value) {
        self.shared.set_oidc(None, Some(jwks));
    }

    /// Turns mutating admission on CREATE on or off (default off): webhooks
    /// of stored MutatingWebhookConfigurations are then called over HTTPS.
    pub fn set_admission(&self, on: bool) {
        self.shared.set_admission(on);
    }

    /// Where a webhook `service` reference (`{name}.{ns}.svc`) is reached,
    /// e.g. a `valet webhook` listening on 127.0.0.1. TLS still checks the
    /// certificate against `{name}.{ns}.svc` and the caBundle.
    pub fn route_service(&self, ns: &str, name: &str, addr: SocketAddr) {
        self.shared.route_service(ns, name, addr);
    }

    /// AdmissionReviews sent to webhooks so far.
    pub fn admission_calls(&self) -> u64 {
        self.shared.admission_calls()
    }

    /// Takes the server down (listener closed, every connection and watch
    /// cut: clients see refused or reset connections) or brings it back on
    /// the same port with the same objects.
    pub async fn set_down(&self, down: bool) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if down {
            if let Some((token, task)) = running {
                token.cancel();
                let _ = task.await;
            }
            return;
        }
        if let Some(r) = running {
            *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            return;
        }
        // The old socket is closed, so the port is normally free at once;
        // retry briefly in case the kernel is slow to release it.
        let mut last = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => return self.spawn(listener),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "cannot rebind the test API server on {}: {last:?}",
            self.addr
        );
    }

    /// Waits until `cond` holds, checking every 10ms; false after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&ApiServer) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some((token, _)) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            token.cancel();
        }
    }
}

async fn serve(listener: TcpListener, router: Router, token: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let svc = TowerToHyperService::new(router.clone());
                conns.spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    // Aborting drops every connection, so clients see them reset.
    conns.shutdown().await;
}
