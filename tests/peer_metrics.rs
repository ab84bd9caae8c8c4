//! The peer's metrics (names, types, labels, units), scraped from the real
//! binary's metrics port after real admissions, beside ours.

mod support;

use std::path::Path;

use serde_json::json;
use support::*;

/// The value of the one sample line `series` (name and labels, exactly).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_metrics_are_exported_beside_ours() {
    let cluster = Cluster::start(&[
        sa("team-a", "app", json!({"eks.amazonaws.com/role-arn": ARN})),
        sa("team-a", "cc", json!({})),
        sa("team-a", "plain", json!({})),
    ])
    .await;
    let cc = cluster.dir.path().join("cc.json");
    std::fs::write(
        &cc,
        r#"{"identities":[{"namespace":"team-a","serviceAccount":"cc"}]}"#,
    )
    .unwrap();
    let hook = cluster.spawn(
        Path::new(env!("CARGO_BIN_EXE_valet")),
        &[
            "webhook".to_string(),
            format!("--watch-container-credentials-config={}", cc.display()),
            "--service-account-lookup-grace-period=0".into(),
        ],
    );
    let c = client(&cluster.ca_pem);
    hook.wait_ready(&c).await;
    let before = hook.scrape().await;
    assert_eq!(
        sample(&before, "pod_identity_webhook_used"),
        Some(1.0),
        "{before}"
    );

    for (i, sa) in ["app", "app", "cc", "plain", "missing"].iter().enumerate() {
        admit(
            &c,
            hook.port,
            &review(&format!("u{i}"), "team-a", pod(sa, json!([]))),
        )
        .await;
    }
    // A request the peer answers 415, as we do.
    let r = c
        .post(format!("https://localhost:{}/mutate", hook.port))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Health checks are not counted: the peer instruments /mutate only.
    c.get(format!("https://localhost:{}/healthz", hook.port))
        .send()
        .await
        .unwrap();

    let m = hook.scrape().await;
    let expect = [
        (
            r#"http_request_count{verb="POST",path="/mutate",code="200"}"#,
            5.0,
        ),
        (
            r#"http_request_count{verb="POST",path="/mutate",code="415"}"#,
            1.0,
        ),
        (
            r#"http_request_latencies_count{verb="POST",path="/mutate"}"#,
            6.0,
        ),
        (
            r#"http_request_latencies_bucket{verb="POST",path="/mutate",le="+Inf"}"#,
            6.0,
        ),
        (
            r#"http_request_duration_microseconds_count{verb="POST",path="/mutate"}"#,
            6.0,
        ),
        (
            r#"pod_identity_webhook_pod_count{Method="sts_web_identity"}"#,
            2.0,
        ),
        (
            r#"pod_identity_webhook_pod_count{Method="container_credentials"}"#,
            1.0,
        ),
        ("pod_identity_webhook_missing_sa_count", 1.0),
        ("pod_identity_webhook_used", 1.0),
    ];
    for (series, want) in expect {
        assert_eq!(sample(&m, series), Some(want), "{series} in:\n{m}");
    }
    assert!(!m.contains("path=\"/healthz\""), "{m}");
    // The peer's units: microseconds, its buckets from 125 ms to 8 s.
    for le in [
        "125000.0",
        "250000.0",
        "500000.0",
        "1000000.0",
        "2000000.0",
        "4000000.0",
        "8000000.0",
    ] {
        let series =
            format!(r#"http_request_latencies_bucket{{verb="POST",path="/mutate",le="{le}"}}"#);
        assert!(sample(&m, &series).is_some(), "{series} in:\n{m}");
    }
    // Types as the peer declares them (counters are `unknown` in
    // OpenMetrics, which reserves `counter` for names ending in _total).
    for line in [
        "# TYPE http_request_count unknown",
        "# TYPE http_request_latencies histogram",
        "# TYPE http_request_duration_microseconds summary",
        "# TYPE pod_identity_webhook_pod_count unknown",
        "# TYPE pod_identity_webhook_missing_sa_count unknown",
        "# TYPE pod_identity_webhook_used gauge",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} missing:\n{m}");
    }
    // Ours are still there, and the exposition still ends once.
    assert_eq!(
        sample(
            &m,
            r#"storage_valet_admission_requests_total{outcome="mutated"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(m.lines().filter(|l| *l == "# EOF").count(), 1);
    assert_eq!(m.lines().last(), Some("# EOF"));
}
