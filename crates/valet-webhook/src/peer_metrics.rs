//! amazon-eks-pod-identity-webhook's metrics, under its names, labels and
//! units, so that its users' dashboards and alerts keep working:
//!
//! | peer series | type | labels | what |
//! | --- | --- | --- | --- |
//! | `http_request_count` | counter | verb, path, code | requests to `/mutate` |
//! | `http_request_latencies` | histogram (µs; 125 ms .. 8 s buckets) | verb, path | their latency |
//! | `http_request_duration_microseconds` | summary (µs; no quantiles) | verb, path | their latency |
//! | `pod_identity_webhook_pod_count` | counter | Method (sts_web_identity, container_credentials) | pods given credentials |
//! | `pod_identity_webhook_missing_sa_count` | counter | | pods whose ServiceAccount was not found |
//! | `pod_identity_webhook_used` | gauge | | 1 once a ServiceAccount with a role-arn is seen |
//!
//! The series are written by hand, not through prometheus-client: its
//! OpenMetrics encoder renames every counter to `NAME_total`, which would
//! leave the peer's queries on `http_request_count` blank. OpenMetrics
//! requires that suffix of a `counter`, so the two peer counters are typed
//! `unknown` here: same name, labels and values, and PromQL (`rate`,
//! `increase`) treats them the same.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The peer's latency buckets: `ExponentialBuckets(125000, 2, 7)` µs.
const LATENCY_BUCKETS_US: [f64; 7] = [
    125_000.0,
    250_000.0,
    500_000.0,
    1_000_000.0,
    2_000_000.0,
    4_000_000.0,
    8_000_000.0,
];

/// The credential methods the peer counts pods under.
pub const STS_WEB_IDENTITY: &str = "sts_web_identity";
pub const CONTAINER_CREDENTIALS: &str = "container_credentials";

#[derive(Default)]
struct Latency {
    buckets: [u64; LATENCY_BUCKETS_US.len()],
    count: u64,
    sum_us: f64,
}

#[derive(Default)]
pub struct PeerMetrics {
    /// (verb, path, code) -> requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// (verb, path) -> latency histogram and summary.
    latencies: Mutex<BTreeMap<(String, String), Latency>>,
    sts_web_identity: AtomicU64,
    container_credentials: AtomicU64,
    missing_sa: AtomicU64,
    used: AtomicU64,
}

impl PeerMetrics {
    /// One request answered, as the peer's `InstrumentRoute` middleware counts it.
    pub fn observe_request(&self, verb: &str, path: &str, code: u16, elapsed: Duration) {
        // The peer truncates to whole microseconds.
        let us = elapsed.as_micros() as f64;
        // Found without building a key: no allocation per request once a
        // series exists (there are a handful).
        let mut requests = lock(&self.requests);
        match requests
            .iter_mut()
            .find(|((v, p, c), _)| v == verb && p == path && *c == code)
        {
            Some((_, n)) => *n += 1,
            None => {
                requests.insert((verb.to_string(), path.to_string(), code), 1);
            }
        }
        drop(requests);
        let mut latencies = lock(&self.latencies);
        if !latencies.iter().any(|((v, p), _)| v == verb && p == path) {
            latencies.insert((verb.to_string(), path.to_string()), Latency::default());
        }
        let Some((_, l)) = latencies
            .iter_mut()
            .find(|((v, p), _)| v == verb && p == path)
        else {
            return;
        };
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            if us <= *bound {
                l.buckets[i] += 1;
            }
        }
        l.count += 1;
        l.sum_us += us;
    }

    /// A pod given credentials by `method` ([`STS_WEB_IDENTITY`] or
    /// [`CONTAINER_CREDENTIALS`]).
    pub fn count_pod(&self, container_credentials: bool) {
        let counter = if container_credentials {
            &self.container_credentials
        } else {
            &self.sts_web_identity
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A pod whose ServiceAccount was not in the cache (nor found by the
    /// direct read after the grace period).
    pub fn count_missing_sa(&self) {
        self.missing_sa.fetch_add(1, Ordering::Relaxed);
    }

    /// A ServiceAccount with a role-arn annotation was seen.
    pub fn mark_used(&self) {
        self.used.store(1, Ordering::Relaxed);
    }

    /// The families in OpenMetrics text, to go before `# EOF`.
    pub fn encode(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = self.write(out);
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP http_request_count Counter of requests broken out for each verb, path, and response code."
        )?;
        writeln!(out, "# TYPE http_request_count unknown")?;
        for ((verb, path, code), n) in lock(&self.requests).iter() {
            writeln!(
                out,
                "http_request_count{{verb=\"{}\",path=\"{}\",code=\"{code}\"}} {n}",
                escape(verb),
                escape(path)
            )?;
        }
        let latencies = lock(&self.latencies);
        writeln!(
            out,
            "# HELP http_request_latencies Response latency distribution in microseconds for each verb and path"
        )?;
        writeln!(out, "# TYPE http_request_latencies histogram")?;
        for ((verb, path), l) in latencies.iter() {
            let labels = format!("verb=\"{}\",path=\"{}\"", escape(verb), escape(path));
            for (bound, n) in LATENCY_BUCKETS_US.iter().zip(l.buckets) {
                writeln!(
                    out,
                    "http_request_latencies_bucket{{{labels},le=\"{bound:.1}\"}} {n}"
                )?;
            }
            writeln!(
                out,
                "http_request_latencies_bucket{{{labels},le=\"+Inf\"}} {}",
                l.count
            )?;
            writeln!(
                out,
                "http_request_latencies_sum{{{labels}}} {:.1}",
                l.sum_us
            )?;
            writeln!(out, "http_request_latencies_count{{{labels}}} {}", l.count)?;
        }
        writeln!(
            out,
            "# HELP http_request_duration_microseconds Response latency summary in microseconds for each verb and path."
        )?;
        writeln!(out, "# TYPE http_request_duration_microseconds summary")?;
        for ((verb, path), l) in latencies.iter() {
            let labels = format!("verb=\"{}\",path=\"{}\"", escape(verb), escape(path));
            writeln!(
                out,
                "http_request_duration_microseconds_sum{{{labels}}} {:.1}",
                l.sum_us
            )?;
            writeln!(
                out,
                "http_request_duration_microseconds_count{{{labels}}} {}",
                l.count
            )?;
        }
        writeln!(
            out,
            "# HELP pod_identity_webhook_pod_count Indicator to how many pods are using sts web identity or container credentials"
        )?;
        writeln!(out, "# TYPE pod_identity_webhook_pod_count unknown")?;
        for (method, n) in [
            (CONTAINER_CREDENTIALS, &self.container_credentials),
            (STS_WEB_IDENTITY, &self.sts_web_identity),
        ] {
            writeln!(
                out,
                "pod_identity_webhook_pod_count{{Method=\"{method}\"}} {}",
                n.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP pod_identity_webhook_missing_sa_count Pods whose ServiceAccount was not found in the cache"
        )?;
        writeln!(out, "# TYPE pod_identity_webhook_missing_sa_count unknown")?;
        writeln!(
            out,
            "pod_identity_webhook_missing_sa_count {}",
            self.missing_sa.load(Ordering::Relaxed)
        )?;
        writeln!(
            out,
            "# HELP pod_identity_webhook_used Indicator to know pod identity webhook is used"
        )?;
        writeln!(out, "# TYPE pod_identity_webhook_used gauge")?;
        writeln!(
            out,
            "pod_identity_webhook_used {}",
            self.used.load(Ordering::Relaxed)
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Label values escaped as the exposition formats require.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_names_labels_and_units() {
        let m = PeerMetrics::default();
        m.observe_request("POST", "/mutate", 200, Duration::from_micros(300_000));
        m.observe_request("POST", "/mutate", 200, Duration::from_micros(100));
        m.observe_request("POST", "/mutate", 415, Duration::from_micros(50));
        m.count_pod(false);
        m.count_pod(true);
        m.count_pod(false);
        m.count_missing_sa();
        m.mark_used();
        let mut out = String::new();
        m.encode(&mut out);
        for line in [
            r#"http_request_count{verb="POST",path="/mutate",code="200"} 2"#,
            r#"http_request_count{verb="POST",path="/mutate",code="415"} 1"#,
            r#"http_request_latencies_bucket{verb="POST",path="/mutate",le="125000.0"} 2"#,
            r#"http_request_latencies_bucket{verb="POST",path="/mutate",le="500000.0"} 3"#,
            r#"http_request_latencies_bucket{verb="POST",path="/mutate",le="+Inf"} 3"#,
            r#"http_request_latencies_sum{verb="POST",path="/mutate"} 300150.0"#,
            r#"http_request_duration_microseconds_count{verb="POST",path="/mutate"} 3"#,
            r#"pod_identity_webhook_pod_count{Method="sts_web_identity"} 2"#,
            r#"pod_identity_webhook_pod_count{Method="container_credentials"} 1"#,
            "pod_identity_webhook_missing_sa_count 1",
            "pod_identity_webhook_used 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing:\n{out}");
        }
    }
}
