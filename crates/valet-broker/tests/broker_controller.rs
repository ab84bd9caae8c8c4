//! The real kube-rs Controller behind a Lease: two replicas, one reconciles;
//! when the leader steps down the other takes over.

mod common;

use std::time::Duration;

use common::env::*;
use common::{grant, spec};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::oneshot;
use valet_broker::controller::run_with_lease;
use valet_broker::crd::Access;
use valet_broker::lease::LeaseLock;

#[tokio::test]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() {
    let env = Env::new("ctl-lease").await;
    let (parts_a, ctx_a) = env.replica("replica-a").await;
    let (parts_b, ctx_b) = env.replica("replica-b").await;
    let lock = |id: &str| {
        LeaseLock::new(
            env.api.client(),
            LEASE_NS,
            "broker",
            id,
            Duration::from_secs(3),
        )
    };

    let (stop_a, stopped_a) = oneshot::channel::<()>();
    let a = tokio::spawn(run_with_lease(ctx_a, lock("replica-a"), async {
        let _ = stopped_a.await;
    }));
    wait_for("replica-a to lead", async || {
        (env.lease_holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let (stop_b, stopped_b) = oneshot::channel::<()>();
    let b = tokio::spawn(run_with_lease(ctx_b, lock("replica-b"), async {
        let _ = stopped_b.await;
    }));

    env.create(
        "first",
        spec("first", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    wait_for("first to be Ready", async || env.ready("first").await).await;
    assert!(
        parts_a.accounts.probe().counts().total() > 0,
        "the leader reconciled"
    );
    assert_eq!(
        parts_b.accounts.probe().counts().total(),
        0,
        "the follower made no IAM call"
    );
    assert_eq!(env.lease_holder().await.as_deref(), Some("replica-a"));

    // The admin port reports it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin = tokio::spawn(valet_broker::metrics::serve_admin(
        listener,
        parts_a.metrics.clone(),
        async {
            let _ = admin_stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "storage_valet_broker_leader 1",
        "storage_valet_broker_reconciles_total{outcome=\"ok\"}",
        "storage_valet_broker_iam_operations_total{operation=\"CreateRole\",kind=\"write\"} 1",
        "storage_valet_broker_reconcile_duration_seconds_count",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    let _ = stop_admin.send(());
    admin.await.unwrap().unwrap();

    // The leader stops and releases the Lease; the follower takes over.
    let _ = stop_a.send(());
    a.await.unwrap();
    wait_for("replica-b to lead", async || {
        (env.lease_holder().await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
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
        "the new leader reconciled"
    );

    let _ = stop_b.send(());
    b.await.unwrap();
    assert_eq!(env.lease_holder().await, None, "released on shutdown");
}

#[tokio::test]
async fn a_held_lease_is_not_taken_until_it_expires() {
    let env = Env::new("ctl-expiry").await;
    let a = LeaseLock::new(
        env.api.client(),
        LEASE_NS,
        "broker",
        "a",
        Duration::from_secs(600),
    );
    let b = LeaseLock::new(
        env.api.client(),
        LEASE_NS,
        "broker",
        "b",
        Duration::from_secs(600),
    );
    assert!(a.try_acquire().await.unwrap());
    assert!(!b.try_acquire().await.unwrap(), "a holds a fresh lease");
    assert!(a.try_acquire().await.unwrap(), "the holder renews");
    // Expire it by hand: renewTime far in the past.
    let leases: Api<Lease> = Api::namespaced(env.api.client(), LEASE_NS);
    let patch = serde_json::json!({"spec": {"renewTime": "2020-01-01T00:00:00.000000Z"}});
    leases
        .patch(
            "broker",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert!(
        b.try_acquire().await.unwrap(),
        "an expired lease is taken over"
    );
    assert_eq!(env.lease_holder().await.as_deref(), Some("b"));
    let lease = leases.get("broker").await.unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    assert!(
        !a.try_acquire().await.unwrap(),
        "the old holder is now a follower"
    );
}
