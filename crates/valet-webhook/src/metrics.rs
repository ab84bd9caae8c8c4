//! The webhook's metrics, registered once.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// mutated, skipped or error.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// found, not_found or error.
    pub result: &'static str,
}

const OUTCOMES: [&str; 3] = ["mutated", "skipped", "error"];

pub struct Metrics {
    /// amazon-eks-pod-identity-webhook's series, under its names.
    pub peer: crate::peer_metrics::PeerMetrics,
    pub requests: Family<OutcomeLabels, Counter>,
    /// The three series of `requests`, resolved once: counting a request
    /// then takes no lock and hashes no labels.
    by_outcome: [Counter; 3],
    pub duration: Histogram,
    pub cache_size: Gauge,
    pub cache_misses: Counter,
    /// Errors of the ServiceAccount watch (each is retried with backoff).
    pub watch_errors: Counter,
    pub api_fallbacks: Family<FallbackLabels, Counter>,
    /// Unix time at which the serving certificate expires (alerts compare it with `time()`).
    pub cert_expiration: Gauge<f64, AtomicU64>,
    pub cc_config_refused: Counter,
    pub registry: Registry,
}

impl Metrics {
    pub fn new() -> Metrics {
        let requests = Family::<OutcomeLabels, Counter>::default();
        // 100 µs .. ~3 s: admission latency budgets are a few seconds at most.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0001, 2.0, 16,
        ));
        let cache_size = Gauge::default();
        let cache_misses = Counter::default();
        let watch_errors = Counter::default();
        let api_fallbacks = Family::<FallbackLabels, Counter>::default();
        let cert_expiration = Gauge::<f64, AtomicU64>::default();
        let cc_config_refused = Counter::default();
        let mut registry = Registry::with_prefix("storage_valet");
        registry.register(
            "admission_requests",
            "Admission reviews answered, by outcome (mutated, skipped, error)",
            requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            duration.clone(),
        );
        registry.register(
            "serviceaccount_cache_size",
            "ServiceAccounts in the cache",
            cache_size.clone(),
        );
        registry.register(
            "serviceaccount_cache_misses",
            "Pods whose ServiceAccount was not in the cache when they arrived",
            cache_misses.clone(),
        );
        registry.register(
            "serviceaccount_watch_errors",
            "Errors of the ServiceAccount watch (retried with backoff; while they last, the cache goes stale)",
            watch_errors.clone(),
        );
        registry.register(
            "serviceaccount_api_fallbacks",
            "Direct ServiceAccount GETs after the grace period, by result",
            api_fallbacks.clone(),
        );
        registry.register(
            "tls_certificate_expiration_timestamp_seconds",
            "Unix time at which the serving certificate expires",
            cert_expiration.clone(),
        );
        registry.register(
            "container_credentials_config_refused",
            "Changes of the container-credentials config refused as invalid (the previous one stays)",
            cc_config_refused.clone(),
        );
        registry.register(
            "build",
            "The running valet: version and component (always 1)",
            prometheus_client::metrics::info::Info::new([
                ("version", env!("CARGO_PKG_VERSION")),
                ("component", "webhook"),
            ]),
        );
        // Every result's series from start-up, so rates and alerts see a 0
        // before the first fallback instead of no series at all.
        for result in ["found", "not_found", "error"] {
            api_fallbacks.get_or_create_owned(&FallbackLabels { result });
        }
        let by_outcome =
            OUTCOMES.map(|outcome| requests.get_or_create_owned(&OutcomeLabels { outcome }));
        Metrics {
            peer: Default::default(),
            requests,
            by_outcome,
            duration,
            cache_size,
            cache_misses,
            watch_errors,
            api_fallbacks,
            cert_expiration,
            cc_config_refused,
            registry,
        }
    }

    /// Counts one admission request under `outcome` (mutated, skipped or error).
    pub fn count_request(&self, outcome: &'static str) {
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) => self.by_outcome[i].inc(),
            None => self
                .requests
                .get_or_create(&OutcomeLabels { outcome })
                .inc(),
        };
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        // The peer's families beside ours, before the end marker.
        self.peer.encode(&mut out);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
