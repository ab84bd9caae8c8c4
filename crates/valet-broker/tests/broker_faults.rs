//! AWS failures during reconcile: throttling, AccessDenied, an endpoint
//! that is down. Each ends in a condition a person can act on and a
//! requeue, never a panic; the next pass after recovery is Ready.

mod common;

use std::time::Duration;

use common::env::*;
use common::{grant, spec};
use kube::runtime::controller::Action;
use valet_broker::crd::Access;
use valet_broker::iam::FaultKind;

#[tokio::test]
async fn throttling_and_access_denied_become_conditions_and_retries() {
    let env = Env::new("flt-iam").await;
    // Warm the account clients and the trust caches, so only the role's IAM calls meet the fault.
    env.iam().await;
    for (kind, reason) in [
        (FaultKind::Throttling, "IamThrottled"),
        (FaultKind::AccessDenied, "IamAccessDenied"),
    ] {
        let name = reason.to_ascii_lowercase();
        env.create(
            &name,
            spec(&name, vec![grant("acme-media", None, None, Access::Read)]),
        )
        .await;
        env.parts.accounts.probe().inject(kind, None);
        let action = env.reconcile(&name).await;
        env.parts.accounts.probe().clear();
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(20)),
            "{reason}: retried soon"
        );
        let ba = env.get(&name).await.unwrap();
        let c = condition(&ba, "RoleProvisioned");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", reason),
            "{c:?}"
        );
        assert_eq!(condition(&ba, "Ready").status, "False");
        assert!(env.event_reasons(&name).contains(&reason.to_string()));
        if kind == FaultKind::AccessDenied {
            assert!(
                c.message.contains("give the provisioning role iam:"),
                "{}",
                c.message
            );
        }
        // Recovery: the retry succeeds and the condition flips.
        let ba = env.settle(&name).await;
        assert_eq!(
            condition(&ba, "Ready").status,
            "True",
            "{reason}: {:?}",
            ba.status
        );
    }
}

#[tokio::test]
async fn a_transient_throttle_is_absorbed_by_sdk_retries() {
    let env = Env::new("flt-absorb").await;
    env.iam().await;
    env.create(
        "app",
        spec("app", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let before = env.counts();
    // Fewer failed attempts than the SDK's max_attempts (3): no error surfaces.
    env.parts
        .accounts
        .probe()
        .inject(FaultKind::Throttling, Some(2));
    let ba = env.settle("app").await;
    assert_eq!(condition(&ba, "Ready").status, "True", "{:?}", ba.status);
    let delta = env.counts().since(&before);
    assert!(
        delta.attempts >= delta.total() + 2,
        "retried attempts are visible: {delta:?}"
    );
}

#[tokio::test]
async fn an_unreachable_iam_endpoint_becomes_a_condition() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::with("flt-down", |cfg| {
        cfg.endpoints.iam = Some(format!("http://127.0.0.1:{closed}"))
    })
    .await;
    env.create(
        "app",
        spec("app", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let action = env.reconcile("app").await;
    assert_eq!(action, Action::requeue(Duration::from_secs(20)));
    let ba = env.get("app").await.unwrap();
    let c = condition(&ba, "RoleProvisioned");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "IamUnreachable"),
        "{c:?}"
    );
    assert!(c.message.contains("IAM endpoint"), "{}", c.message);
    let t = condition(&ba, "TrustValid");
    assert_eq!(
        t.status, "False",
        "the provider cannot be checked either: {t:?}"
    );
    assert!(env.sas().get_opt("app").await.unwrap().is_none());
}

#[tokio::test]
async fn an_unknown_bucket_account_is_refused_before_any_aws_call() {
    let env = Env::new("flt-acct").await;
    let mut s = spec("app", vec![grant("acme-media", None, None, Access::Read)]);
    s.bucket_account = Some("444455556666".into());
    // A policy allows the account: the broker config is what refuses it.
    let allow: valet_broker::access_policy::BucketAccessPolicySpec = serde_json::from_value(
        serde_json::json!({"namespaces": ["*"], "bucketAccount": "444455556666",
            "buckets": [{"name": "*", "maxAccess": "read"}]}),
    )
    .unwrap();
    kube::Api::<valet_broker::access_policy::BucketAccessPolicy>::all(env.api.client())
        .create(
            &kube::api::PostParams::default(),
            &valet_broker::access_policy::BucketAccessPolicy::new("other-account", allow),
        )
        .await
        .unwrap();
    env.create("app", s).await;
    let before = env.counts();
    env.reconcile("app").await;
    let ba = env.get("app").await.unwrap();
    let c = condition(&ba, "Ready");
    assert_eq!(c.reason, "UnknownBucketAccount", "{c:?}");
    assert!(c.message.contains("bucketAccounts"), "{}", c.message);
    assert_eq!(env.counts().since(&before).total(), 0);
}

#[tokio::test]
async fn a_provisioning_role_in_another_account_is_a_config_error() {
    // Assuming a role outside the bucket account would provision in the wrong place.
    let mut cfg = valet_broker::config::BrokerConfig::new("flt-ext", "eu-west-1");
    cfg.bucket_accounts.insert(
        "111111111111".into(),
        valet_broker::config::BucketAccountConfig {
            provisioning_role_arn: Some("arn:aws:iam::222222222222:role/p".into()),
            external_id: Some("x".into()),
            permissions_boundary_arn: None,
            region: None,
        },
    );
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("it must be a role in 111111111111"), "{err}");
}
