//! The broker's metrics, registered once, and its admin port:
//! `/healthz`, `/readyz` and `/metrics` on plain HTTP.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use valet_buckets::probe::CallProbe;

use crate::iam::{IamProbe, is_write};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// ok or error.
    pub outcome: &'static str,
}

/// Reconciles of one kind: how many, by outcome, and how long each took.
#[derive(Debug)]
pub struct Reconciles {
    count: Family<OutcomeLabels, Counter>,
    duration: Histogram,
}

impl Reconciles {
    /// Registers `{prefix}reconciles` and `{prefix}reconcile_duration_seconds`
    /// for objects of `kind`.
    fn register(registry: &mut Registry, prefix: &str, kind: &str) -> Reconciles {
        let count = Family::<OutcomeLabels, Counter>::default();
        // 1 ms .. ~65 s: a reconcile is a handful of AWS and API calls, more with retries.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            format!("{prefix}reconciles"),
            format!("{kind} reconciles, by outcome (ok, error)"),
            count.clone(),
        );
        registry.register(
            format!("{prefix}reconcile_duration_seconds"),
            format!("Time for one {kind} reconcile"),
            duration.clone(),
        );
        // Both outcomes' series from start-up: rates and alerts see a 0
        // before the first reconcile instead of no series at all.
        for outcome in ["ok", "error"] {
            count.get_or_create_owned(&OutcomeLabels { outcome });
        }
        Reconciles { count, duration }
    }

    /// Counts one reconcile by outcome, and its duration.
    pub fn observe(&self, ok: bool, took: std::time::Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.count.get_or_create(&OutcomeLabels { outcome }).inc();
        self.duration.observe(took.as_secs_f64());
    }
}

#[derive(Debug)]
pub struct Metrics {
    /// BucketAccess reconciles.
    pub accesses: Reconciles,
    /// BucketClaim reconciles.
    pub claims: Reconciles,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    pub registry: Registry,
    /// What /healthz and /readyz report (kept here: everything that
    /// observes the controller shares this one Arc).
    pub health: crate::health::Health,
}

/// IAM operations read from the probe at scrape time.
#[derive(Debug)]
struct IamCollector(Arc<IamProbe>);

impl Collector for IamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.counts();
        let mut family = encoder.encode_descriptor(
            "iam_operations",
            "IAM operations made by the broker, by operation and kind (read, write); retries not counted",
            None,
            MetricType::Counter,
        )?;
        for (op, n) in &counts.ops {
            let kind = if is_write(op) { "write" } else { "read" };
            let labels = [("operation", op.as_str()), ("kind", kind)];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        let mut throttled = encoder.encode_descriptor(
            "aws_throttled",
            "AWS HTTP attempts answered with a throttling code (Throttling, ThrottlingException, RequestLimitExceeded, SlowDown), by service and operation; retried attempts included",
            None,
            MetricType::Counter,
        )?;
        for (op, n) in &self.0.throttled() {
            let labels = [("service", "iam"), ("operation", op.as_str())];
            ConstCounter::new(*n).encode(throttled.encode_family(&labels)?)?;
        }
        let attempts = ConstCounter::new(counts.attempts);
        let attempt_encoder = encoder.encode_descriptor(
            "iam_http_attempts",
            "HTTP attempts to IAM, retries included",
            None,
            attempts.metric_type(),
        )?;
        attempts.encode(attempt_encoder)
    }
}

/// S3 operations of BucketClaims, read from the probe at scrape time.
#[derive(Debug)]
struct S3Collector(Arc<CallProbe>);

impl Collector for S3Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "s3_operations",
            "S3 operations made for BucketClaims, by operation and kind (read, write); retries not counted",
            None,
            MetricType::Counter,
        )?;
        for (op, n) in &self.0.counts().ops {
            let kind = if valet_buckets::probe::is_write(op) {
                "write"
            } else {
                "read"
            };
            let labels = [("operation", op.as_str()), ("kind", kind)];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The broker's metrics; IAM and S3 operations are read from the probes
    /// the account clients count them in.
    pub fn new(probe: Arc<IamProbe>, s3_probe: Arc<CallProbe>) -> Metrics {
        let leader = Gauge::default();
        // `storage_valet_build_info` is named as the webhook's (one query
        // counts every valet component); the rest is `storage_valet_broker_*`.
        let mut root = Registry::with_prefix("storage_valet");
        root.register(
            "build",
            "The running valet: version and component (always 1)",
            prometheus_client::metrics::info::Info::new([
                ("version", env!("CARGO_PKG_VERSION")),
                ("component", "broker"),
            ]),
        );
        let registry = root.sub_registry_with_prefix("broker");
        let accesses = Reconciles::register(registry, "", "BucketAccess");
        let claims = Reconciles::register(registry, "claim_", "BucketClaim");
        registry.register_collector(Box::new(S3Collector(s3_probe)));
        registry.register(
            "leader",
            "1 while this replica holds the Lease",
            leader.clone(),
        );
        registry.register_collector(Box::new(IamCollector(probe)));
        Metrics {
            accesses,
            claims,
            leader,
            registry: root,
            health: crate::health::Health::default(),
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
}

/// Serves the admin port until `shutdown`. `/healthz` and `/readyz` answer
/// 503 with the reason when [`crate::health::Health`] says so.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(s): State<AdminState>| async move { probe(s.metrics.health.liveness()) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<AdminState>| async move { probe(s.metrics.health.readiness()) }),
        )
        .route("/metrics", get(scrape))
        .with_state(AdminState { metrics });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn probe(result: Result<(), String>) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why + "\n"),
    }
}

async fn scrape(State(s): State<AdminState>) -> impl IntoResponse {
    match s.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
