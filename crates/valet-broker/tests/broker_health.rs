//! The broker's runtime guarantees around its Lease and its probes: a
//! leader whose renewal hangs steps down before the Lease can expire (two
//! replicas never reconcile at once), and /healthz fails while a reconcile
//! is wedged. The real kube-rs Controller against the in-process API server.

mod common;

use std::time::Duration;

use common::env::*;
use common::{grant, spec};
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;
use tokio::time::Instant;
use valet_broker::controller::run_with_lease;
use valet_broker::crd::Access;
use valet_broker::lease::LeaseLock;
use valet_buckets::crd::{BucketClaim, BucketClaimSpec};
use valet_testkit::proxy::FreezingProxy;

#[tokio::test]
async fn a_leader_whose_renewal_hangs_steps_down_before_another_takes_over() {
    let env = Env::new("ctl-renew-hang").await;
    let (parts_a, ctx_a) = env.replica("replica-a").await;
    let (parts_b, ctx_b) = env.replica("replica-b").await;
    // Replica A reaches the Lease through a link that can hang; its
    // reconciles (ctx_a) still reach the API server: the dangerous case,
    // where a stale leader would go on writing.
    let proxy = FreezingProxy::start(env.api.addr()).await.expect("proxy");
    let via_proxy =
        kube::Client::try_from(kube::Config::new(proxy.url().parse().expect("proxy URL")))
            .expect("client");
    let lease = Duration::from_secs(3);
    let (stop_a, stopped_a) = oneshot::channel::<()>();
    let a = tokio::spawn(run_with_lease(
        ctx_a,
        LeaseLock::new(via_proxy, LEASE_NS, "broker", "replica-a", lease),
        async {
            let _ = stopped_a.await;
        },
    ));
    wait_for("replica-a to lead", async || {
        (env.lease_holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let (stop_b, stopped_b) = oneshot::channel::<()>();
    let b = tokio::spawn(run_with_lease(
        ctx_b,
        LeaseLock::new(env.api.client(), LEASE_NS, "broker", "replica-b", lease),
        async {
            let _ = stopped_b.await;
        },
    ));
    env.create(
        "first",
        spec("first", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    wait_for("first to be Ready", async || env.ready("first").await).await;
    assert_eq!(parts_b.accounts.probe().counts().total(), 0);

    // A's renewals now hang. It must stop reconciling (leader gauge 0)
    // before B can take the Lease, which B only does once it expired.
    proxy.set_frozen(true);
    let frozen = Instant::now();
    let mut a_stepped_down = None;
    let b_took_over = loop {
        if a_stepped_down.is_none() && parts_a.metrics.leader.get() == 0 {
            a_stepped_down = Some(frozen.elapsed());
        }
        if env.lease_holder().await.as_deref() == Some("replica-b") {
            break frozen.elapsed();
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(60),
            "replica-b never took over"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let a_stepped_down =
        a_stepped_down.expect("replica-a was still leading when replica-b took over");
    assert!(
        a_stepped_down < b_took_over,
        "A stepped down at {a_stepped_down:?}, B took over at {b_took_over:?}"
    );
    println!("renewal hung at 0: A stepped down at {a_stepped_down:?}, B led at {b_took_over:?}");

    // Only B reconciles from now on.
    let a_calls = parts_a.accounts.probe().counts().total();
    env.create(
        "second",
        spec(
            "second",
            vec![grant("acme-logs", None, None, Access::Write)],
        ),
    )
    .await;
    wait_for("second to be Ready", async || env.ready("second").await).await;
    assert!(
        parts_b.accounts.probe().counts().total() > 0,
        "B reconciled"
    );
    assert_eq!(
        parts_a.accounts.probe().counts().total(),
        a_calls,
        "the stepped-down replica made no IAM call"
    );
    assert_eq!(parts_a.metrics.leader.get(), 0);

    let _ = stop_b.send(());
    b.await.expect("b");
    let _ = stop_a.send(());
    a.await.expect("a");
}

async fn status(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test]
async fn a_wedged_reconcile_fails_liveness_and_readiness_follows_the_lease() {
    let env = Env::new("ctl-wedged").await;
    let (parts, ctx) = env.replica("replica-a").await;
    parts.metrics.health.set_stall_after(Duration::from_secs(2));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin = tokio::spawn(valet_broker::metrics::serve_admin(
        listener,
        parts.metrics.clone(),
        async {
            let _ = admin_stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let (code, body) = status(&http, &format!("{url}/readyz")).await;
    assert_eq!(
        code, 503,
        "not ready before the first election attempt: {body}"
    );

    let (stop, stopped) = oneshot::channel::<()>();
    let broker = tokio::spawn(run_with_lease(
        ctx,
        LeaseLock::new(
            env.api.client(),
            LEASE_NS,
            "broker",
            "replica-a",
            Duration::from_secs(3),
        ),
        async {
            let _ = stopped.await;
        },
    ));
    wait_for("ready (leading, caches synced)", async || {
        (status(&http, &format!("{url}/readyz")).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(status(&http, &format!("{url}/healthz")).await.0, 200);

    // The reconcile of `stuck` hangs on its first write (the finalizer).
    let path = format!("/apis/storage-valet.dev/v1alpha1/namespaces/{NS}/bucketaccesses/stuck");
    env.api.set_stall("PATCH", &path, true);
    env.create(
        "stuck",
        spec("stuck", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let body = wait_for("/healthz to fail", async || {
        let (code, body) = status(&http, &format!("{url}/healthz")).await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(
        body.contains("stuck") && body.contains("--reconcile-stall-seconds"),
        "{body}"
    );
    assert_eq!(
        status(&http, &format!("{url}/readyz")).await.0,
        200,
        "still the synced leader"
    );

    // Unwedged: the reconcile finishes and liveness recovers.
    env.api.set_stall("PATCH", &path, false);
    wait_for("stuck to be Ready", async || env.ready("stuck").await).await;
    wait_for("/healthz to recover", async || {
        (status(&http, &format!("{url}/healthz")).await.0 == 200).then_some(())
    })
    .await;

    // The claim controller's reconciles count too: a claim whose first
    // write hangs fails liveness the same way.
    let path = format!("/apis/storage-valet.dev/v1alpha1/namespaces/{NS}/bucketclaims/stuck-claim");
    env.api.set_stall("PATCH", &path, true);
    let claim = BucketClaim::new(
        "stuck-claim",
        BucketClaimSpec {
            bucket_class_name: "standard".into(),
        },
    );
    Api::<BucketClaim>::namespaced(env.api.client(), NS)
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
    let body = wait_for("/healthz to fail on the claim", async || {
        let (code, body) = status(&http, &format!("{url}/healthz")).await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(
        body.contains("BucketClaim") && body.contains("stuck-claim"),
        "{body}"
    );
    env.api.set_stall("PATCH", &path, false);
    wait_for("/healthz to recover after the claim", async || {
        (status(&http, &format!("{url}/healthz")).await.0 == 200).then_some(())
    })
    .await;

    let _ = stop.send(());
    broker.await.expect("broker");
    let _ = stop_admin.send(());
    admin.await.expect("admin").expect("serve");
}
