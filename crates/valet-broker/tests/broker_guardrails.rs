//! Multi-tenant guardrails through the controller's reconcile (in-process
//! API server, moto): BucketAccessPolicies allow, refuse, revoke and
//! restore; suspend and resume; the permissions boundary; a ServiceAccount
//! the broker did not annotate. Every scenario counts IAM writes.

mod common;

use std::collections::BTreeMap;

use common::env::*;
use common::grant;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use valet_broker::access_policy::{BucketAccessPolicy, BucketAccessPolicySpec};
use valet_broker::crd::{Access, BucketAccessSpec};
use valet_broker::provision::INLINE_POLICY_NAME;

fn team_a_spec(access: Access) -> BucketAccessSpec {
    BucketAccessSpec {
        service_account_name: "app".into(),
        bucket_account: None,
        buckets: vec![grant("team-a-bucket", None, Some("team-a/"), access)],
        suspended: false,
    }
}

async fn set_policy(env: &Env, name: &str, spec: serde_json::Value) {
    let api: Api<BucketAccessPolicy> = Api::all(env.api.client());
    let spec: BucketAccessPolicySpec = serde_json::from_value(spec).expect("policy spec");
    let _ = api.delete(name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &BucketAccessPolicy::new(name, spec))
        .await
        .expect("create policy");
}

async fn drop_policy(env: &Env, name: &str) {
    let api: Api<BucketAccessPolicy> = Api::all(env.api.client());
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete policy");
}

async fn label_namespace(env: &Env, labels: BTreeMap<&str, &str>) {
    let api: Api<Namespace> = Api::all(env.api.client());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    ns.metadata.labels = Some(
        labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let _ = api.delete(NS, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

async fn has_inline_policy(env: &Env, role: &str) -> bool {
    let name = role.rsplit('/').next().unwrap_or_default();
    env.iam()
        .await
        .get_role_policy(name, INLINE_POLICY_NAME)
        .await
        .expect("GetRolePolicy")
        .is_some()
}

#[tokio::test]
async fn team_b_is_refused_without_any_iam_call_and_team_a_is_allowed() {
    let env = Env::new("guard1").await;
    drop_policy(&env, ALLOW_ALL).await;
    set_policy(
        &env,
        "team-buckets",
        json!({"namespaces": ["team-a"], "buckets": [
            {"name": "team-a-bucket", "prefixes": ["{namespace}/"], "maxAccess": "read"}]}),
    )
    .await;
    // Over maxAccess: refused before AWS.
    env.create("rw", team_a_spec(Access::Readwrite)).await;
    let before = env.counts();
    let ba = env.settle("rw").await;
    assert_eq!(env.counts().since(&before).total(), 0, "no IAM call");
    let permitted = condition(&ba, "Permitted");
    assert_eq!(permitted.status, "False");
    assert_eq!(permitted.reason, "NotPermitted");
    for part in [
        "namespace team-a",
        "bucket team-a-bucket",
        "prefix team-a/",
        "access readwrite",
    ] {
        assert!(permitted.message.contains(part), "{}", permitted.message);
    }
    assert_eq!(condition(&ba, "Ready").status, "False");
    assert!(
        env.event_reasons("rw")
            .contains(&"NotPermitted".to_string())
    );

    // Within maxAccess: allowed, and the condition names the policy.
    env.create("ro", team_a_spec(Access::Read)).await;
    let before = env.counts();
    let ba = env.settle("ro").await;
    let permitted = condition(&ba, "Permitted");
    assert_eq!(permitted.status, "True", "{}", permitted.message);
    assert!(
        permitted.message.contains("team-buckets"),
        "{}",
        permitted.message
    );
    assert_eq!(condition(&ba, "Ready").status, "True");
    assert!(
        env.counts().since(&before).writes() >= 2,
        "CreateRole + PutRolePolicy"
    );
}

#[tokio::test]
async fn a_policy_edit_revokes_and_a_re_allow_restores() {
    let env = Env::new("guard2").await;
    env.create("media", team_a_spec(Access::Readwrite)).await;
    let ba = env.settle("media").await;
    assert_eq!(condition(&ba, "Ready").status, "True");
    let role = ba
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .expect("role");
    assert!(has_inline_policy(&env, &role).await);

    // The platform narrows the policy: another namespace only.
    drop_policy(&env, ALLOW_ALL).await;
    set_policy(
        &env,
        "narrow",
        json!({"namespaces": ["team-z"], "buckets": [{"name": "*", "maxAccess": "readwrite"}]}),
    )
    .await;
    let before = env.counts();
    let ba = env.settle("media").await;
    assert_eq!(
        env.counts().since(&before).writes(),
        1,
        "DeleteRolePolicy only"
    );
    assert!(
        !has_inline_policy(&env, &role).await,
        "the role keeps no S3 access"
    );
    assert_eq!(condition(&ba, "Permitted").status, "False");
    assert_eq!(condition(&ba, "Ready").reason, "NotPermitted");
    assert!(
        env.event_reasons("media")
            .contains(&"AccessRevoked".to_string())
    );
    let sa = env.sas().get("app").await.expect("SA kept");
    assert!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("eks.amazonaws.com/role-arn")
    );
    // Steady while refused: reads only.
    let before = env.counts();
    env.settle("media").await;
    assert_eq!(env.counts().since(&before).writes(), 0);

    // Allowed again, by labels this time.
    set_policy(
        &env,
        "tenants",
        json!({"namespaceSelector": {"matchLabels": {"tenant": "true"}},
            "buckets": [{"name": "team-*", "prefixes": ["{namespace}/"], "maxAccess": "readwrite"}]}),
    )
    .await;
    label_namespace(&env, BTreeMap::from([("tenant", "true")])).await;
    let before = env.counts();
    let ba = env.settle("media").await;
    assert_eq!(
        env.counts().since(&before).writes(),
        1,
        "PutRolePolicy only"
    );
    assert!(has_inline_policy(&env, &role).await);
    assert_eq!(condition(&ba, "Ready").status, "True");
    assert!(condition(&ba, "Permitted").message.contains("tenants"));
    assert!(
        env.event_reasons("media")
            .contains(&"AccessRestored".to_string())
    );

    // The namespace is relabelled: revoked again.
    label_namespace(&env, BTreeMap::from([("tenant", "false")])).await;
    let ba = env.settle("media").await;
    assert_eq!(condition(&ba, "Permitted").status, "False");
    assert!(!has_inline_policy(&env, &role).await);
}

#[tokio::test]
async fn suspend_and_resume_keep_the_role_and_the_annotation() {
    let env = Env::new("guard3").await;
    env.create("media", team_a_spec(Access::Read)).await;
    let ba = env.settle("media").await;
    let role = ba
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .expect("role");
    let suspend = |on: bool| json!({"spec": {"suspended": on}});
    env.bas()
        .patch(
            "media",
            &PatchParams::default(),
            &Patch::Merge(&suspend(true)),
        )
        .await
        .expect("suspend");
    let before = env.counts();
    let ba = env.settle("media").await;
    assert_eq!(env.counts().since(&before).writes(), 1);
    assert_eq!(condition(&ba, "Ready").reason, "Suspended");
    assert_eq!(condition(&ba, "Permitted").status, "True");
    assert!(!has_inline_policy(&env, &role).await);
    let name = role.rsplit('/').next().unwrap_or_default();
    assert!(
        env.iam()
            .await
            .get_role(name)
            .await
            .expect("GetRole")
            .is_some(),
        "role kept"
    );
    let sa = env.sas().get("app").await.expect("SA kept");
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn"),
        Some(&role)
    );
    env.bas()
        .patch(
            "media",
            &PatchParams::default(),
            &Patch::Merge(&suspend(false)),
        )
        .await
        .expect("resume");
    let before = env.counts();
    let ba = env.settle("media").await;
    assert_eq!(env.counts().since(&before).writes(), 1);
    assert_eq!(condition(&ba, "Ready").status, "True");
    assert!(has_inline_policy(&env, &role).await);
}

#[tokio::test]
async fn the_boundary_is_set_on_created_roles_and_put_back() {
    let boundary = |account: &str| format!("arn:aws:iam::{account}:policy/storage-valet-boundary");
    let env = Env::with("guard4", |cfg| {
        let account = cfg.default_bucket_account.clone().unwrap_or_default();
        if let Some(a) = cfg.bucket_accounts.get_mut(&account) {
            a.permissions_boundary_arn = Some(boundary(&account));
        }
    })
    .await;
    env.create("media", team_a_spec(Access::Read)).await;
    let ba = env.settle("media").await;
    let role = ba
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .expect("role");
    let name = role.rsplit('/').next().unwrap_or_default().to_string();
    let iam = env.iam().await;
    let found = iam.get_role(&name).await.expect("GetRole").expect("role");
    assert_eq!(found.boundary, Some(boundary(&env.account)));

    iam.client()
        .delete_role_permissions_boundary()
        .role_name(&name)
        .send()
        .await
        .expect("someone removes the boundary");
    let before = env.counts();
    env.settle("media").await;
    let delta = env.counts().since(&before);
    assert_eq!(delta.writes(), 1, "{delta:?}");
    let found = iam.get_role(&name).await.expect("GetRole").expect("role");
    assert_eq!(found.boundary, Some(boundary(&env.account)), "repaired");
}

#[tokio::test]
async fn a_service_account_annotated_by_someone_else_is_left_alone() {
    let env = Env::new("guard5").await;
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("app".into());
    sa.metadata.annotations = Some(BTreeMap::from([(
        "eks.amazonaws.com/role-arn".to_string(),
        "arn:aws:iam::111111111111:role/kube-system-admin".to_string(),
    )]));
    env.sas()
        .create(&PostParams::default(), &sa)
        .await
        .expect("SA");
    env.create("media", team_a_spec(Access::Read)).await;
    let before = env.counts();
    let ba = env.settle("media").await;
    assert_eq!(env.counts().since(&before).total(), 0, "no IAM call");
    let ready = condition(&ba, "Ready");
    assert_eq!(ready.reason, "ServiceAccountNotOurs");
    assert!(
        ready.message.contains("kube-system-admin"),
        "{}",
        ready.message
    );
    let sa = env.sas().get("app").await.expect("SA");
    assert_eq!(
        sa.metadata
            .annotations
            .unwrap_or_default()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::111111111111:role/kube-system-admin"),
        "untouched"
    );
}
