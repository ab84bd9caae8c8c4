//! The ServiceAccount cache: a metadata-only watch of every ServiceAccount,
//! keeping per SA only its parsed annotations (not the object).
//!
//! Admission reads the cache; it never calls the API server in the normal
//! case. A pod whose SA was created a moment before it (the peer's known
//! failure) waits up to the grace period for the watch, then makes one
//! direct GET with a short timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use valet_core::SaConfig;
use valet_core::settings::AnnotationKeys;

use crate::metrics::{FallbackLabels, Metrics};

/// The direct GET after the grace period must not hold the pod for long.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(1);

/// What a lookup found.
#[derive(Clone, Debug)]
pub enum Lookup {
    Found(Arc<SaConfig>),
    NotFound,
    Unavailable(String),
}

pub struct SaCache {
    entries: RwLock<HashMap<Box<str>, Arc<SaConfig>>>,
    /// Shared by every SA without relevant annotations: most of a cluster.
    empty: Arc<SaConfig>,
    synced: AtomicBool,
    changed: Notify,
    keys: AnnotationKeys,
    client: Option<kube::Client>,
    metrics: Arc<Metrics>,
}

fn key(ns: &str, name: &str) -> Box<str> {
    format!("{ns}/{name}").into_boxed_str()
}

impl SaCache {
    pub fn new(
        client: Option<kube::Client>,
        keys: AnnotationKeys,
        metrics: Arc<Metrics>,
    ) -> Arc<SaCache> {
        Arc::new(SaCache {
            entries: RwLock::new(HashMap::new()),
            empty: Arc::new(SaConfig::default()),
            synced: AtomicBool::new(false),
            changed: Notify::new(),
            keys,
            client,
            metrics,
        })
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn parse(&self, annotations: &BTreeMap<String, String>) -> Arc<SaConfig> {
        let cfg = SaConfig::from_annotations(annotations, &self.keys);
        if cfg.role_arn.is_some() {
            self.metrics.peer.mark_used();
        }
        if cfg.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(cfg)
        }
    }

    fn get(&self, ns: &str, name: &str) -> Option<Arc<SaConfig>> {
        // Every admission looks up once: build the key on the stack (a
        // namespace is at most 63 bytes and a name 253).
        let mut buf = [0u8; 320];
        let len = ns.len() + 1 + name.len();
        let owned;
        let k: &str = if len <= buf.len() {
            buf[..ns.len()].copy_from_slice(ns.as_bytes());
            buf[ns.len()] = b'/';
            buf[ns.len() + 1..len].copy_from_slice(name.as_bytes());
            // Two whole strings joined by an ASCII byte are UTF-8.
            std::str::from_utf8(&buf[..len]).ok()?
        } else {
            owned = key(ns, name);
            &owned
        };
        let map = self.entries.read().ok()?;
        map.get(k).cloned()
    }

    /// Inserts or replaces one SA's parsed annotations (also used by tests
    /// and benchmarks that fill the cache without an API server).
    pub fn insert(&self, ns: &str, name: &str, annotations: &BTreeMap<String, String>) {
        let cfg = self.parse(annotations);
        if let Ok(mut map) = self.entries.write() {
            map.insert(key(ns, name), cfg);
            self.metrics.cache_size.set(map.len() as i64);
        }
        self.changed.notify_waiters();
    }

    fn remove(&self, ns: &str, name: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(key(ns, name).as_ref());
            self.metrics.cache_size.set(map.len() as i64);
        }
    }

    fn replace_all(&self, fresh: HashMap<Box<str>, Arc<SaConfig>>) {
        if let Ok(mut map) = self.entries.write() {
            *map = fresh;
            self.metrics.cache_size.set(map.len() as i64);
        }
        self.synced.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Marks the cache synced without a watch (offline tests, benchmarks).
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// The SA's parsed annotations: from the cache, else after waiting up to
    /// `grace` for the watch, else from one direct GET.
    pub async fn lookup(&self, ns: &str, name: &str, grace: Duration) -> Lookup {
        if let Some(cfg) = self.get(ns, name) {
            return Lookup::Found(cfg);
        }
        self.metrics.cache_misses.inc();
        if !grace.is_zero() {
            let deadline = tokio::time::Instant::now() + grace;
            loop {
                // Register interest before re-checking, so an insert between
                // the check and the wait is not missed.
                let notified = self.changed.notified();
                if let Some(cfg) = self.get(ns, name) {
                    return Lookup::Found(cfg);
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    break;
                }
            }
        }
        let found = self.fetch(ns, name).await;
        if !matches!(found, Lookup::Found(_)) {
            self.metrics.peer.count_missing_sa();
        }
        found
    }

    /// One direct GET of the SA's metadata: since we cannot be sure the
    /// watch is up to date (it may lag, or the SA is seconds old), the API
    /// server is the only authority left.
    async fn fetch(&self, ns: &str, name: &str) -> Lookup {
        let Some(client) = &self.client else {
            return Lookup::NotFound;
        };
        let api: Api<PartialObjectMeta<ServiceAccount>> = Api::namespaced(client.clone(), ns);
        let result = tokio::time::timeout(FALLBACK_TIMEOUT, api.get_opt(name)).await;
        let (lookup, label) = match result {
            Ok(Ok(Some(meta))) => {
                let annotations = meta.metadata.annotations.unwrap_or_default();
                self.insert(ns, name, &annotations);
                (Lookup::Found(self.parse(&annotations)), "found")
            }
            Ok(Ok(None)) => (Lookup::NotFound, "not_found"),
            Ok(Err(e)) => (
                Lookup::Unavailable(format!("API server error: {e}")),
                "error",
            ),
            Err(_) => (
                Lookup::Unavailable(format!(
                    "no answer from the API server within {FALLBACK_TIMEOUT:?}"
                )),
                "error",
            ),
        };
        self.metrics
            .api_fallbacks
            .get_or_create(&FallbackLabels { result: label })
            .inc();
        debug!(%ns, %name, result = label, "ServiceAccount fetched directly");
        lookup
    }

    /// Runs the watch until the stream ends (never, in practice: the
    /// watcher retries with backoff and re-lists after errors).
    pub async fn run_watch(self: Arc<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let api: Api<PartialObjectMeta<ServiceAccount>> = Api::all(client);
        let config = watcher::Config::default().page_size(500).any_semantic();
        let stream = kube::runtime::WatchStreamExt::default_backoff(watcher::watcher(api, config));
        futures::pin_mut!(stream);
        let mut pending: Option<HashMap<Box<str>, Arc<SaConfig>>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => pending = Some(HashMap::new()),
                Ok(Event::InitApply(sa)) => {
                    if let (Some(p), Some((ns, name))) = (pending.as_mut(), ns_name(&sa)) {
                        let cfg = self
                            .parse(sa.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()));
                        p.insert(key(ns, name), cfg);
                    }
                }
                Ok(Event::InitDone) => {
                    let fresh = pending.take().unwrap_or_default();
                    info!(
                        service_accounts = fresh.len(),
                        "ServiceAccount cache synced"
                    );
                    self.replace_all(fresh);
                }
                Ok(Event::Apply(sa)) => {
                    if let Some((ns, name)) = ns_name(&sa) {
                        self.insert(
                            ns,
                            name,
                            sa.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
                        );
                    }
                }
                Ok(Event::Delete(sa)) => {
                    if let Some((ns, name)) = ns_name(&sa) {
                        self.remove(ns, name);
                    }
                }
                Err(error) => {
                    self.metrics.watch_errors.inc();
                    warn!(%error, "ServiceAccount watch failed; retrying");
                }
            }
        }
    }
}

fn ns_name(sa: &PartialObjectMeta<ServiceAccount>) -> Option<(&str, &str)> {
    Some((
        sa.metadata.namespace.as_deref()?,
        sa.metadata.name.as_deref()?,
    ))
}
