//! `valet broker apply`: files in, plan printed before any write, then applied.

mod common;

use std::time::Duration;

use common::env::*;
use valet_broker::apply::{execute_all, make_providers, plan_all, read_sources, render_plan};
use valet_broker::trust_gate::TrustGate;
use valet_trust::OidcHttp;

const FILE: &str = r#"
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccessPolicy
metadata: { name: teams }
spec:
  namespaces: ["team-*"]
  buckets:
    - { name: acme-*, maxAccess: readwrite }
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: { name: media-reader, namespace: team-a }
spec:
  serviceAccountName: media-app
  buckets:
    - { name: acme-media, alias: media, prefix: team-a/, access: read }
    - { name: acme-uploads, alias: uploads, access: write }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: unrelated }
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: { name: broken, namespace: team-b }
spec:
  serviceAccountName: app
  buckets:
    - { name: Not_A_Bucket, access: read }
"#;

/// The trust gate `broker apply` plans with (`create`: false) or makes the
/// planned OIDC providers with (true).
fn trust_gate(env: &Env, create: bool) -> TrustGate {
    let http = OidcHttp::with_ca_pem(env.oidc.ca_pem().as_bytes(), "test CA").unwrap();
    TrustGate::new(
        http,
        &env.oidc.url(),
        "sts.amazonaws.com",
        create,
        Duration::from_secs(60),
    )
}

#[tokio::test]
async fn plans_first_then_applies_then_has_nothing_to_do() {
    let env = Env::new("apply").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.yaml");
    std::fs::write(&path, FILE).unwrap();

    let sources = read_sources(std::slice::from_ref(&path)).unwrap();
    assert_eq!(sources.accesses.len(), 2, "the ConfigMap is skipped");
    assert_eq!(sources.policies.len(), 1);
    let gate = trust_gate(&env, false);
    let accounts = &env.parts.accounts;

    let before = env.counts();
    let mut plans = plan_all(&sources, accounts, &gate).await;
    let plan = render_plan(&plans);
    assert_eq!(
        env.counts().since(&before).writes(),
        0,
        "planning wrote to IAM"
    );
    for needle in [
        "BucketAccess team-a/media-reader",
        "+ create role (trust policy, tags)",
        "+ put inline access policy",
        "storage-valet.dev/buckets: media=acme-media/team-a/,uploads=acme-uploads",
        "eks.amazonaws.com/role-arn: arn:aws:iam::",
        "BucketAccess team-b/broken",
        "! error: spec.buckets[0]",
        // createOidcProvider: the missing provider is a change of the plan.
        "IAM OIDC provider in account",
        "+ create or repair arn:aws:iam::",
        "trust waits for the OIDC provider above",
        "Plan: 3 change(s) to 2 object(s), 1 error(s).",
    ] {
        assert!(plan.contains(needle), "{needle:?} missing from:\n{plan}");
    }

    let creator = trust_gate(&env, true);
    let checked = make_providers(&mut plans, accounts, &creator).await;
    assert!(
        checked.len() == 1 && checked[0].starts_with("trust repaired"),
        "{checked:?}"
    );
    let results = execute_all(&plans, accounts).await;
    assert_eq!(results.len(), 1);
    assert!(results[0].is_ok(), "{results:?}");

    // The planning gate remembers the provider missing; a new run would not.
    gate.forget().await;
    let before = env.counts();
    let again = render_plan(&plan_all(&sources, accounts, &gate).await);
    assert!(again.contains("= no changes"), "{again}");
    assert!(again.contains("Plan: 0 change(s)"), "{again}");
    assert_eq!(env.counts().since(&before).writes(), 0);
}

const TENANTS: &str = r#"
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccessPolicy
metadata: { name: team-buckets }
spec:
  namespaces: ["team-a"]
  buckets:
    - { name: team-a-bucket, prefixes: ["{namespace}/"], maxAccess: read }
---
apiVersion: v1
kind: Namespace
metadata: { name: team-b }
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: { name: steal, namespace: team-b }
spec:
  serviceAccountName: app
  buckets:
    - { name: team-a-bucket, prefix: team-a/, access: readwrite }
"#;

#[tokio::test]
async fn refused_objects_and_typos_touch_no_aws() {
    let env = Env::new("apply-guard").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.yaml");
    std::fs::write(&path, TENANTS).unwrap();
    let inputs = read_sources(std::slice::from_ref(&path)).unwrap();
    assert_eq!(inputs.namespaces.len(), 1);
    let gate = trust_gate(&env, false);
    let before = env.counts();
    let plans = plan_all(&inputs, &env.parts.accounts, &gate).await;
    let plan = render_plan(&plans);
    assert_eq!(
        env.counts().since(&before).total(),
        0,
        "no IAM call: {plan}"
    );
    let err = plans.accesses[0].outcome.as_ref().err().expect("refused");
    assert!(
        matches!(err, valet_broker::apply::ItemError::Refused(_)),
        "a refusal exits 1, not 2: {err:?}"
    );
    let err = err.to_string();
    for part in [
        "refused",
        "namespace team-b",
        "bucket team-a-bucket",
        "prefix team-a/",
        "access readwrite",
    ] {
        assert!(err.contains(part), "{err}");
    }
    assert!(plan.contains("1 error(s)"), "{plan}");

    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, TENANTS.replace("prefix: team-a/", "prefx: team-a/")).unwrap();
    let err = read_sources(std::slice::from_ref(&typo))
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.buckets[0].prefx"), "{err}");
}
