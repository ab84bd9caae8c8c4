//! The ServiceAccount cache against the in-process API server: which path
//! answered a lookup (watch, grace-period wait, direct GET) is read from the
//! metrics, since the e2e tests only see the admission result.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use valet_core::settings::Settings;
use valet_testkit::apiserver::ApiServer;
use valet_webhook::MutationFlags;
use valet_webhook::cache::{Lookup, SaCache};
use valet_webhook::metrics::Metrics;

const ARN: &str = "arn:aws:iam::222222222222:role/storage-valet/prod/team-a-app";

fn sa(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "team-a", "annotations": annotations}})
}

fn cache(api: &ApiServer, metrics: &Arc<Metrics>) -> Arc<SaCache> {
    let parsed: FlagsOnly = clap::Parser::parse_from(["flags"]);
    let keys = Settings::from(&parsed.flags).keys;
    SaCache::new(Some(api.client()), keys, metrics.clone())
}

/// `metric{labels} value` from the text exposition, 0 when absent.
fn metric(metrics: &Metrics, series: &str) -> f64 {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn wait_synced(cache: &SaCache) {
    for _ in 0..2000 {
        if cache.is_synced() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ServiceAccount cache did not sync within 20s");
}

#[derive(clap::Parser)]
struct FlagsOnly {
    #[command(flatten)]
    flags: MutationFlags,
}

#[tokio::test]
async fn waiting_pod_is_woken_by_the_watch_not_the_fallback() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = ApiServer::start().await;
    api.insert(sa("present", json!({"eks.amazonaws.com/role-arn": ARN})))
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let cache = cache(&api, &metrics);
    tokio::spawn(cache.clone().run_watch());
    wait_synced(&cache).await;
    assert!(matches!(
        cache.lookup("team-a", "present", Duration::ZERO).await,
        Lookup::Found(c) if !c.is_empty()
    ));

    // The pod arrives first; its SA is created while it waits. A grace
    // period far longer than the test's runtime means only the watch's
    // notification can end the wait before the fallback.
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .lookup("team-a", "late", Duration::from_secs(600))
                .await
        })
    };
    for _ in 0..2000 {
        if metric(&metrics, "storage_valet_serviceaccount_cache_misses_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    api.insert(sa("late", json!({"eks.amazonaws.com/role-arn": ARN})))
        .unwrap();
    let found = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the watch event did not wake the waiting lookup")
        .unwrap();
    assert!(matches!(found, Lookup::Found(c) if !c.is_empty()));
    assert_eq!(
        metric(&metrics, "storage_valet_serviceaccount_cache_misses_total"),
        1.0
    );
    // (Every result's series exists from start-up, at 0.)
    let text = metrics.encode();
    assert!(
        text.lines()
            .filter(|l| l.starts_with("storage_valet_serviceaccount_api_fallbacks_total{"))
            .all(|l| l.ends_with(" 0")),
        "no direct GET expected:\n{text}"
    );

    // Deletion reaches the cache: a later lookup misses.
    api.delete("v1", "ServiceAccount", "team-a", "present")
        .unwrap();
    for _ in 0..2000 {
        if matches!(
            cache.lookup("team-a", "present", Duration::ZERO).await,
            Lookup::NotFound
        ) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deleted ServiceAccount still in the cache");
}

#[tokio::test]
async fn direct_get_after_the_grace_period_counts_each_result() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = ApiServer::start().await;
    api.insert(sa("app", json!({"eks.amazonaws.com/role-arn": ARN})))
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    // No watch running: every first lookup misses and goes to the API server.
    let cache = cache(&api, &metrics);

    let grace = Duration::from_millis(20);
    assert!(matches!(
        cache.lookup("team-a", "app", grace).await,
        Lookup::Found(c) if !c.is_empty()
    ));
    // The GET's answer is kept: the next lookup is a hit.
    assert!(matches!(
        cache.lookup("team-a", "app", grace).await,
        Lookup::Found(_)
    ));
    assert!(matches!(
        cache.lookup("team-a", "ghost", grace).await,
        Lookup::NotFound
    ));
    api.set_down(true).await;
    match cache.lookup("team-a", "other", grace).await {
        Lookup::Unavailable(why) => assert!(!why.is_empty()),
        other => panic!("expected Unavailable with the API server down, got {other:?}"),
    }
    api.set_down(false).await;

    for (series, want) in [
        ("storage_valet_serviceaccount_cache_misses_total", 3.0),
        (
            "storage_valet_serviceaccount_api_fallbacks_total{result=\"found\"}",
            1.0,
        ),
        (
            "storage_valet_serviceaccount_api_fallbacks_total{result=\"not_found\"}",
            1.0,
        ),
        (
            "storage_valet_serviceaccount_api_fallbacks_total{result=\"error\"}",
            1.0,
        ),
        ("storage_valet_serviceaccount_cache_size", 1.0),
    ] {
        assert_eq!(metric(&metrics, series), want, "{series}");
    }
}
