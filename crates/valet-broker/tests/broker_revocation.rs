//! Revocation through the running controller: the real run loop with its
//! watches on BucketAccessPolicies and Namespaces (in-process API server,
//! moto), nobody calling reconcile by hand. A policy edit that no longer
//! allows a grant revokes it, a re-allow restores it, and relabelling the
//! namespace out of a selector revokes it again; the BucketAccess itself is
//! never touched.

mod common;

use std::collections::BTreeMap;

use common::env::*;
use common::grant;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use valet_broker::access_policy::BucketAccessPolicy;
use valet_broker::crd::{Access, BucketAccess, BucketAccessSpec};
use valet_broker::provision::INLINE_POLICY_NAME;

const NAME: &str = "media";

fn spec() -> BucketAccessSpec {
    BucketAccessSpec {
        service_account_name: "app".into(),
        bucket_account: None,
        buckets: vec![grant(
            "team-a-bucket",
            None,
            Some("team-a/"),
            Access::Readwrite,
        )],
        suspended: false,
    }
}

fn status_of(ba: &BucketAccess, type_: &str) -> Option<(String, String)> {
    ba.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.message.clone()))
}

/// Waits (on the object, not the clock) until `Permitted` has `status`.
async fn permitted(env: &Env, status: &str) -> BucketAccess {
    wait_for(&format!("Permitted={status}"), async || {
        let ba = env.get(NAME).await?;
        (status_of(&ba, "Permitted")?.0 == status).then_some(ba)
    })
    .await
}

async fn inline_policy(env: &Env, role: &str) -> bool {
    env.iam()
        .await
        .get_role_policy(role, INLINE_POLICY_NAME)
        .await
        .expect("GetRolePolicy")
        .is_some()
}

async fn wait_inline_policy(env: &Env, role: &str, present: bool) {
    wait_for(&format!("inline policy present={present}"), async || {
        (inline_policy(env, role).await == present).then_some(())
    })
    .await;
}

async fn wait_event(env: &Env, reason: &str, count: u64) {
    wait_for(&format!("{count} {reason} Event(s)"), async || {
        // kube's recorder folds a repeated Event into one with a series count.
        let n: u64 = env
            .api
            .list("events.k8s.io/v1", "Event")
            .into_iter()
            .filter(|e| e["regarding"]["name"] == NAME && e["reason"] == reason)
            .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
            .sum();
        (n >= count).then_some(())
    })
    .await;
}

async fn edit_policy(env: &Env, spec: serde_json::Value) {
    let api: Api<BucketAccessPolicy> = Api::all(env.api.client());
    api.patch(
        ALLOW_ALL,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .expect("edit the policy");
}

async fn label_namespace(env: &Env, tenant: &str) {
    let api: Api<Namespace> = Api::all(env.api.client());
    let labels = BTreeMap::from([("tenant".to_string(), tenant.to_string())]);
    if api.get_opt(NS).await.expect("get namespace").is_some() {
        api.patch(
            NS,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .expect("relabel the namespace");
    } else {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(NS.into());
        ns.metadata.labels = Some(labels);
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create the namespace");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_controller_revokes_and_restores_on_policy_and_namespace_changes() {
    // A short resync, so the test would also pass on the resync path; the
    // watches should make every step far quicker than that.
    let env = Env::with("revoke-ctl", |cfg| cfg.resync_seconds = 5).await;
    let controller = tokio::spawn(valet_broker::controller::run(env.ctx.clone()));

    env.create(NAME, spec()).await;
    let ba = wait_for("Ready=True", async || {
        let ba = env.get(NAME).await?;
        (status_of(&ba, "Ready")?.0 == "True").then_some(ba)
    })
    .await;
    let role_arn = ba.status.as_ref().and_then(|s| s.role_arn.clone()).unwrap();
    let role = role_arn.rsplit('/').next().unwrap().to_string();
    let generation = ba.metadata.generation;
    wait_inline_policy(&env, &role, true).await;

    // The platform edits its policy: team-a is no longer in it.
    edit_policy(
        &env,
        json!({"namespaces": ["team-z"], "buckets": [{"name": "*", "maxAccess": "readwrite"}]}),
    )
    .await;
    let ba = permitted(&env, "False").await;
    let (_, message) = status_of(&ba, "Permitted").unwrap();
    for part in [
        "namespace team-a",
        "bucket team-a-bucket",
        "prefix team-a/",
        "access readwrite",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    wait_inline_policy(&env, &role, false).await;
    assert!(
        env.iam().await.get_role(&role).await.unwrap().is_some(),
        "the role is kept"
    );
    wait_event(&env, "AccessRevoked", 1).await;
    assert_eq!(ba.metadata.generation, generation, "the spec was touched");
    assert_eq!(ba.spec, spec(), "the BucketAccess was rewritten");

    // Allowed again: the grant comes back.
    edit_policy(
        &env,
        json!({"namespaces": ["team-*"], "buckets": [{"name": "*", "maxAccess": "readwrite"}]}),
    )
    .await;
    permitted(&env, "True").await;
    wait_inline_policy(&env, &role, true).await;
    wait_event(&env, "AccessRestored", 1).await;

    // A selector instead of names; the namespace carries the label ...
    label_namespace(&env, "true").await;
    edit_policy(
        &env,
        json!({"namespaces": null, "namespaceSelector": {"matchLabels": {"tenant": "true"}},
            "buckets": [{"name": "team-*", "prefixes": ["{namespace}/"], "maxAccess": "readwrite"}]}),
    )
    .await;
    let ba = wait_for("Permitted by the selector policy", async || {
        let ba = env.get(NAME).await?;
        let (status, message) = status_of(&ba, "Permitted")?;
        (status == "True" && message.contains(ALLOW_ALL)).then_some(ba)
    })
    .await;
    assert_eq!(ba.metadata.generation, generation);
    // ... until it is relabelled out of it: revoked, by the Namespace watch.
    label_namespace(&env, "false").await;
    permitted(&env, "False").await;
    wait_inline_policy(&env, &role, false).await;
    wait_event(&env, "AccessRevoked", 2).await;
    let ba = env.get(NAME).await.expect("BucketAccess kept");
    assert_eq!(ba.metadata.generation, generation);
    assert_eq!(ba.spec, spec());
    assert!(env.iam().await.get_role(&role).await.unwrap().is_some());

    controller.abort();
}
