//! State shared by the handlers and the test-facing `ApiServer`: the store,
//! the request log, injected faults, counters and pluggable responders.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::response::Response;
use http::Method;
use serde_json::Value;
use tokio::sync::watch;

use super::handler::json_response;
use super::store::Store;
use super::wire::ApiError;

/// Mints a service account token: (namespace, service account, audiences,
/// expirationSeconds) -> token.
pub type TokenIssuer = dyn Fn(&str, &str, &[String], i64) -> String + Send + Sync;

/// A request as received, for verifier-style assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// "GET", "POST", ...
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/a/pods?&watch=true`.
    pub path: String,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

/// API verbs, counted per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    const ALL: [Verb; 7] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
    ];

    fn index(self) -> usize {
        Verb::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

struct Fault {
    method: Method,
    path_prefix: String,
    status: u16,
}

pub struct Shared {
    pub store: Mutex<Store>,
    pub changes: watch::Receiver<u64>,
    pub server_address: String,
    pub bookmark_interval: RwLock<Duration>,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<Fault>>,
    /// (method, path prefix) of requests held unanswered until released.
    stalls: watch::Sender<Vec<(Method, String)>>,
    counts: [AtomicU64; 7],
    pub watches: AtomicUsize,
    admission: AtomicBool,
    log_requests: AtomicBool,
    admission_calls: AtomicU64,
    services: Mutex<HashMap<(String, String), SocketAddr>>,
    pub token_issuer: RwLock<Option<Arc<TokenIssuer>>>,
    oidc_discovery: RwLock<Option<Value>>,
    oidc_jwks: RwLock<Option<Value>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding a lock must not wedge the others.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(server_address: String) -> Shared {
        let (tx, rx) = watch::channel(0);
        Shared {
            store: Mutex::new(Store::new(tx)),
            changes: rx,
            server_address,
            bookmark_interval: RwLock::new(Duration::from_secs(1)),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            stalls: watch::Sender::new(Vec::new()),
            counts: Default::default(),
            watches: AtomicUsize::new(0),
            admission: AtomicBool::new(false),
            log_requests: AtomicBool::new(true),
            admission_calls: AtomicU64::new(0),
            services: Mutex::new(HashMap::new()),
            token_issuer: RwLock::new(None),
            oidc_discovery: RwLock::new(None),
            oidc_jwks: RwLock::new(None),
        }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn record(&self, req: RecordedRequest) {
        if self.log_requests.load(Ordering::Relaxed) {
            lock(&self.requests).push(req);
        }
    }

    pub fn set_request_log(&self, on: bool) {
        self.log_requests.store(on, Ordering::Relaxed);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    pub fn add_fault(&self, method: Method, path_prefix: &str, status: u16) {
        lock(&self.faults).push(Fault {
            method,
            path_prefix: path_prefix.to_string(),
            status,
        });
    }

    pub fn set_stall(&self, method: Method, path_prefix: &str, on: bool) {
        self.stalls.send_modify(|rules| {
            rules.retain(|(m, p)| !(*m == method && p == path_prefix));
            if on {
                rules.push((method, path_prefix.to_string()));
            }
        });
    }

    /// Returns once no stall rule matches this request (at once when none does).
    pub async fn wait_unstalled(&self, method: &Method, path: &str) {
        let mut rx = self.stalls.subscribe();
        let _ = rx
            .wait_for(|rules| {
                !rules
                    .iter()
                    .any(|(m, p)| m == method && path.starts_with(p.as_str()))
            })
            .await;
    }

    /// Consumes the first fault matching this request.
    pub fn take_fault(&self, method: &Method, path: &str) -> Option<u16> {
        let mut faults = lock(&self.faults);
        let i = faults
            .iter()
            .position(|f| f.method == *method && path.starts_with(&f.path_prefix))?;
        Some(faults.remove(i).status)
    }

    pub fn count(&self, verb: Verb) {
        self.counts[verb.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn verb_count(&self, verb: Verb) -> u64 {
        self.counts[verb.index()].load(Ordering::Relaxed)
    }

    pub fn set_admission(&self, on: bool) {
        self.admission.store(on, Ordering::SeqCst);
    }

    pub fn admission_enabled(&self) -> bool {
        self.admission.load(Ordering::SeqCst)
    }

    pub fn count_admission(&self) {
        self.admission_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn admission_calls(&self) -> u64 {
        self.admission_calls.load(Ordering::Relaxed)
    }

    pub fn route_service(&self, ns: &str, name: &str, addr: SocketAddr) {
        lock(&self.services).insert((ns.to_string(), name.to_string()), addr);
    }

    pub fn service_route(&self, ns: &str, name: &str) -> Option<SocketAddr> {
        lock(&self.services)
            .get(&(ns.to_string(), name.to_string()))
            .copied()
    }

    pub fn set_oidc(&self, discovery: Option<Value>, jwks: Option<Value>) {
        if let Some(d) = discovery {
            *self
                .oidc_discovery
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(d);
        }
        if let Some(j) = jwks {
            *self.oidc_jwks.write().unwrap_or_else(|p| p.into_inner()) = Some(j);
        }
    }

    pub fn oidc_document(&self, jwks: bool) -> Result<Response, ApiError> {
        let slot = if jwks {
            &self.oidc_jwks
        } else {
            &self.oidc_discovery
        };
        let doc = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
        doc.map(|d| json_response(200, &d)).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "no OIDC document configured: call ApiServer::set_oidc_discovery / set_oidc_jwks in the test",
            )
        })
    }
}
