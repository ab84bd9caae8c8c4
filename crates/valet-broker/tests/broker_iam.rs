//! Role provisioning against a real moto server: plan (reads only),
//! execute, steady state, drift, deletion, foreign roles, injected faults.

mod common;

use std::collections::BTreeMap;

use common::*;
use valet_broker::crd::Access;
use valet_broker::iam::FaultKind;
use valet_broker::provision::*;
use valet_policy::PolicyDocument;

fn desired(cluster: &str, ns: &str, sa: &str) -> DesiredRole {
    let spec = spec(
        sa,
        vec![
            grant("acme-media", Some("media"), Some("team-a/"), Access::Read),
            grant("acme-logs", Some("logs"), None, Access::Write),
        ],
    )
    .validate()
    .unwrap();
    desired_role(&config(cluster), ISSUER, ns, "media-reader", &spec).unwrap()
}

#[tokio::test]
async fn provisions_from_nothing_then_steady_state_writes_nothing() {
    let iam = iam();
    let role = desired("prov", "team-a", "media-app");
    let before = iam.probe().counts();
    let first = plan(&iam, role.clone()).await.unwrap();
    assert_eq!(first.steps, vec![Step::CreateRole, Step::PutAccessPolicy]);
    assert!(!first.existed);
    assert_eq!(
        iam.probe().counts().since(&before).writes(),
        0,
        "planning must not write"
    );
    execute(&iam, &first).await.unwrap();

    let found = iam
        .get_role(&role.name)
        .await
        .unwrap()
        .expect("role exists");
    assert_eq!(found.arn, role.arn);
    assert_eq!(found.path, "/storage-valet/prov/");
    assert!(found.trust.as_ref().unwrap().same_as(&role.trust));
    for (k, v) in &role.tags {
        assert_eq!(found.tags.get(k), Some(v), "tag {k}");
    }
    let policy = iam
        .get_role_policy(&role.name, INLINE_POLICY_NAME)
        .await
        .unwrap();
    assert!(policy.unwrap().unwrap().same_as(&role.access));

    let before = iam.probe().counts();
    let again = plan(&iam, role.clone()).await.unwrap();
    assert!(
        again.steps.is_empty(),
        "steady state plans nothing: {:?}",
        again.steps
    );
    execute(&iam, &again).await.unwrap();
    let delta = iam.probe().counts().since(&before);
    assert_eq!(delta.writes(), 0, "steady state wrote: {:?}", delta.ops);
    assert_eq!(delta.ops.get("GetRole"), Some(&1));
    assert_eq!(delta.ops.get("GetRolePolicy"), Some(&1));
}

#[tokio::test]
async fn drift_in_trust_and_inline_policy_is_repaired() {
    let iam = iam();
    let role = desired("drift", "team-a", "media-app");
    execute(&iam, &plan(&iam, role.clone()).await.unwrap())
        .await
        .unwrap();

    // Someone widens the trust policy to every ServiceAccount and adds s3:* in the console.
    let mut wide: serde_json::Value = serde_json::from_str(&role.trust.to_json()).unwrap();
    let sub = format!("{}:sub", ISSUER.trim_start_matches("https://"));
    wide["Statement"]["Condition"] =
        serde_json::json!({"StringLike": {sub: "system:serviceaccount:*"}});
    iam.client()
        .update_assume_role_policy()
        .role_name(&role.name)
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();
    iam.client()
        .put_role_policy()
        .role_name(&role.name)
        .policy_name(INLINE_POLICY_NAME)
        .policy_document(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#)
        .send()
        .await
        .unwrap();

    let repair = plan(&iam, role.clone()).await.unwrap();
    assert!(repair.existed);
    assert_eq!(repair.steps, vec![Step::UpdateTrust, Step::PutAccessPolicy]);
    execute(&iam, &repair).await.unwrap();
    assert!(plan(&iam, role.clone()).await.unwrap().steps.is_empty());
    let found = iam.get_role(&role.name).await.unwrap().unwrap();
    assert!(found.trust.unwrap().same_as(&role.trust));

    // A deleted inline policy comes back too.
    iam.client()
        .delete_role_policy()
        .role_name(&role.name)
        .policy_name(INLINE_POLICY_NAME)
        .send()
        .await
        .unwrap();
    assert_eq!(
        plan(&iam, role.clone()).await.unwrap().steps,
        vec![Step::PutAccessPolicy]
    );
}

#[tokio::test]
async fn foreign_role_with_the_same_name_is_never_touched() {
    let iam = iam();
    let role = desired("foreign", "team-a", "media-app");
    let foreign_trust = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}}"#;
    // Same name and path, but tagged by someone else.
    iam.client()
        .create_role()
        .role_name(&role.name)
        .path(&role.path)
        .assume_role_policy_document(foreign_trust)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key(TAG_MANAGED_BY)
                .value("terraform")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let before = iam.probe().counts();
    let err = plan(&iam, role.clone()).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Foreign { .. }), "{err}");
    assert_eq!(err.reason(), "ForeignRole");
    assert!(err.to_string().contains("left untouched"), "{err}");
    let err = deprovision(&iam, &role).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Foreign { .. }), "{err}");
    assert_eq!(iam.probe().counts().since(&before).writes(), 0);
    let still = iam.get_role(&role.name).await.unwrap().unwrap();
    assert_eq!(
        still.trust.unwrap(),
        PolicyDocument::parse(foreign_trust).unwrap()
    );
}

#[tokio::test]
async fn a_second_bucket_access_for_the_same_service_account_conflicts() {
    let iam = iam();
    let role = desired("conflict", "team-a", "media-app");
    execute(&iam, &plan(&iam, role.clone()).await.unwrap())
        .await
        .unwrap();
    let mut other = role.clone();
    other.bucket_access = "another".into();
    other
        .tags
        .insert(TAG_BUCKET_ACCESS.into(), "another".into());
    let err = plan(&iam, other.clone()).await.unwrap_err();
    assert_eq!(err.reason(), "RoleConflict", "{err}");
    assert!(deprovision(&iam, &other).await.is_err());
    assert!(iam.get_role(&role.name).await.unwrap().is_some());
}

#[tokio::test]
async fn deletion_removes_policy_and_role_and_is_idempotent() {
    let iam = iam();
    let role = desired("delete", "team-a", "media-app");
    execute(&iam, &plan(&iam, role.clone()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(deprovision(&iam, &role).await.unwrap(), Removed::Deleted);
    assert!(iam.get_role(&role.name).await.unwrap().is_none());
    assert_eq!(
        deprovision(&iam, &role).await.unwrap(),
        Removed::AlreadyGone
    );
}

#[tokio::test]
async fn long_namespace_and_service_account_names_fit_iam() {
    let iam = iam();
    let ns = "n".repeat(63);
    let sa = "s".repeat(253);
    let role = desired("long-names-cluster", &ns, &sa);
    assert!(role.name.len() <= 64, "{}", role.name);
    assert!(role.tags.values().all(|v| v.len() <= 256));
    execute(&iam, &plan(&iam, role.clone()).await.unwrap())
        .await
        .unwrap();
    assert!(plan(&iam, role.clone()).await.unwrap().steps.is_empty());
    valet_core::arn::RoleArn::parse(&role.arn).unwrap();
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_surfaces_as_a_typed_error() {
    let iam = iam();
    let role = desired("throttle", "team-a", "media-app");
    // Two throttled attempts: the SDK's retry (3 attempts) absorbs them.
    iam.probe().inject(FaultKind::Throttling, Some(2));
    let before = iam.probe().counts();
    let p = plan(&iam, role.clone()).await.unwrap();
    let delta = iam.probe().counts().since(&before);
    assert_eq!(delta.ops.get("GetRole"), Some(&1));
    assert_eq!(delta.attempts, 3, "two throttled attempts and one success");
    execute(&iam, &p).await.unwrap();

    // Throttled for good: a typed, retryable error, no panic.
    iam.probe().inject(FaultKind::Throttling, None);
    let err = plan(&iam, role.clone()).await.unwrap_err();
    iam.probe().clear();
    assert_eq!(err.reason(), "IamThrottled", "{err}");
    assert!(err.transient());
    assert!(plan(&iam, role).await.unwrap().steps.is_empty());
}

#[tokio::test]
async fn access_denied_and_unreachable_endpoints_are_typed_errors() {
    let iam = iam();
    let role = desired("denied", "team-a", "media-app");
    iam.probe().inject(FaultKind::AccessDenied, None);
    let err = plan(&iam, role.clone()).await.unwrap_err();
    iam.probe().clear();
    assert_eq!(err.reason(), "IamAccessDenied", "{err}");
    assert!(err.to_string().contains("iam:GetRole"), "{err}");

    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = iam_at(&format!("http://127.0.0.1:{closed}"));
    let err = plan(&down, role).await.unwrap_err();
    assert_eq!(err.reason(), "IamUnreachable", "{err}");
}

#[test]
fn ownership_needs_every_tag_and_the_path() {
    let role = desired("own", "team-a", "media-app");
    let found = |path: &str, tags: BTreeMap<String, String>| valet_broker::iam::RoleInfo {
        arn: role.arn.clone(),
        path: path.into(),
        tags,
        boundary: None,
        trust: Ok(role.trust.clone()),
    };
    assert!(check_owner(&role, &found(&role.path, role.tags.clone())).is_ok());
    assert!(check_owner(&role, &found("/", role.tags.clone())).is_err());
    for key in [
        TAG_MANAGED_BY,
        TAG_CLUSTER,
        TAG_NAMESPACE,
        TAG_SERVICE_ACCOUNT,
    ] {
        let mut tags = role.tags.clone();
        tags.remove(key);
        assert!(
            check_owner(&role, &found(&role.path, tags)).is_err(),
            "{key}"
        );
    }
    let mut other_cluster = role.tags.clone();
    other_cluster.insert(TAG_CLUSTER.into(), "staging".into());
    let err = check_owner(&role, &found(&role.path, other_cluster)).unwrap_err();
    assert!(err.to_string().contains("staging"), "{err}");
}
