use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use serde_json::json;
use valet_core::settings::AnnotationKeys;

use super::*;
use crate::facts::{BucketAccessFacts, Facts, PodFacts, ReadyCondition, SaFacts, SecretKeys};

const ROLE_A: &str = "arn:aws:iam::111122223333:role/app-a";
const ROLE_B: &str = "arn:aws:iam::111122223333:role/app-b";

fn keys() -> AnnotationKeys {
    AnnotationKeys::new("eks.amazonaws.com")
}

fn sa(ns: &str, name: &str, annotations: serde_json::Value) -> SaFacts {
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "annotations": annotations}
    }))
    .expect("service account");
    SaFacts::from_sa(&sa, &keys())
}

fn pod(value: serde_json::Value) -> PodFacts {
    let pod: Pod = serde_json::from_value(value).expect("pod");
    PodFacts::from_pod(&pod, &keys())
}

fn facts(sas: Vec<SaFacts>, pods: Vec<PodFacts>) -> Facts {
    Facts {
        service_accounts: sas,
        pods,
        ..Facts::default()
    }
}

fn kinds(f: &[Finding]) -> Vec<(Severity, Kind)> {
    f.iter().map(|f| (f.severity, f.kind)).collect()
}

fn mutated_pod(role: &str, bucket_env: &str) -> serde_json::Value {
    json!({
        "metadata": {"namespace": "team", "name": "web-1", "annotations": {
            "storage-valet.dev/injected-mode": "web-identity",
            "storage-valet.dev/injected-role-arn": role,
            "storage-valet.dev/injected-bucket-env": bucket_env,
        }, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c", "uid": "u", "controller": true}]},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "main", "env": [
            {"name": "AWS_ROLE_ARN", "value": role}
        ]}]}
    })
}

#[test]
fn fresh_pod_has_no_finding() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_A, "storage-valet.dev/bucket": "acme"}),
        )],
        vec![pod(mutated_pod(ROLE_A, r#"{"S3_BUCKET":"acme"}"#))],
    );
    assert_eq!(judge(&f), vec![]);
}

#[test]
fn role_changed_is_stale_with_rollout_restart() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_B, "storage-valet.dev/bucket": "acme"}),
        )],
        vec![pod(mutated_pod(ROLE_A, r#"{"S3_BUCKET":"acme"}"#))],
    );
    let out = judge(&f);
    assert_eq!(kinds(&out), vec![(Severity::Warning, Kind::Stale)]);
    assert!(
        out[0].reason.contains(ROLE_A) && out[0].reason.contains(ROLE_B),
        "{}",
        out[0].reason
    );
    assert_eq!(out[0].fix, "kubectl -n team rollout restart deployment/web");
    assert_eq!(out[0].object, "pod/web-1");
}

#[test]
fn bucket_changed_is_stale() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_A, "storage-valet.dev/bucket": "other"}),
        )],
        vec![pod(mutated_pod(ROLE_A, r#"{"S3_BUCKET":"acme"}"#))],
    );
    let out = judge(&f);
    assert_eq!(kinds(&out), vec![(Severity::Warning, Kind::Stale)]);
    assert!(
        out[0].reason.contains("S3_BUCKET=acme") && out[0].reason.contains("S3_BUCKET=other"),
        "{}",
        out[0].reason
    );
}

#[test]
fn role_removed_from_sa_is_stale() {
    let f = facts(
        vec![sa("team", "app", json!({}))],
        vec![pod(mutated_pod(ROLE_A, r#"{}"#))],
    );
    let out = judge(&f);
    assert_eq!(kinds(&out), vec![(Severity::Warning, Kind::Stale)]);
    assert!(
        out[0].reason.contains("now grants no role"),
        "{}",
        out[0].reason
    );
}

#[test]
fn unannotated_pod_of_annotated_sa_is_missed() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_A}),
        )],
        vec![pod(json!({
            "metadata": {"namespace": "team", "name": "old"},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "main"}, {"name": "sidecar"}]}
        }))],
    );
    let out = judge(&f);
    assert_eq!(kinds(&out), vec![(Severity::Warning, Kind::Missed)]);
    assert!(out[0].reason.contains("main, sidecar"), "{}", out[0].reason);
    assert!(
        out[0].reason.contains("created before the webhook"),
        "{}",
        out[0].reason
    );
    assert!(
        out[0].fix.contains("kubectl replace --force"),
        "{}",
        out[0].fix
    );
}

#[test]
fn skipped_containers_are_info_not_warning() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_A}),
        )],
        vec![pod(json!({
            "metadata": {"namespace": "team", "name": "p", "annotations": {"eks.amazonaws.com/skip-containers": "main, sidecar"}},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "main"}, {"name": "sidecar"}]}
        }))],
    );
    let found = judge(&f);
    assert_eq!(kinds(&found), vec![(Severity::Info, Kind::Missed)]);
    assert!(
        found[0].reason.contains("main, sidecar"),
        "{}",
        found[0].reason
    );
}

#[test]
fn pod_of_unannotated_sa_is_not_missed() {
    let f = facts(
        vec![sa("team", "app", json!({}))],
        vec![pod(json!({"metadata": {"namespace": "team", "name": "p"},
            "spec": {"serviceAccountName": "app", "containers": [{"name": "main"}]}}))],
    );
    assert_eq!(judge(&f), vec![]);
}

#[test]
fn static_keys_literal_secret_key_ref_and_env_from() {
    let mut f = facts(
        vec![],
        vec![pod(
            json!({"metadata": {"namespace": "team", "name": "legacy"},
            "spec": {"containers": [{"name": "main",
                "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"},
                    {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "AWS_SECRET_ACCESS_KEY"}}},
                    {"name": "HARMLESS", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "password"}}}
                ],
                "envFrom": [{"secretRef": {"name": "creds"}}, {"secretRef": {"name": "plain"}}, {"secretRef": {"name": "hidden"}}]
            }]}}),
        )],
    );
    let k = |ns: &str, n: &str| (ns.to_string(), n.to_string());
    f.secrets.insert(
        k("team", "creds"),
        SecretKeys::Keys(vec![
            "AWS_ACCESS_KEY_ID".into(),
            "AWS_SECRET_ACCESS_KEY".into(),
            "x".into(),
        ]),
    );
    f.secrets
        .insert(k("team", "plain"), SecretKeys::Keys(vec!["DB_URL".into()]));
    f.secrets.insert(
        k("team", "hidden"),
        SecretKeys::Unreadable("forbidden".into()),
    );
    let out = judge(&f);
    assert_eq!(
        kinds(&out),
        vec![
            (Severity::Error, Kind::StaticKeys),
            (Severity::Error, Kind::StaticKeys),
            (Severity::Error, Kind::StaticKeys),
            (Severity::Info, Kind::StaticKeys),
        ]
    );
    let reasons: Vec<&str> = out.iter().map(|f| f.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("AWS_ACCESS_KEY_ID as a literal")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("from secret/aws key AWS_SECRET_ACCESS_KEY")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r
                .contains("secret/creds, which holds AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("cannot read Secret team/hidden keys")),
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r.contains("AKIAEXAMPLE")),
        "values never printed"
    );
}

#[test]
fn invalid_annotations_are_errors() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": "not-an-arn", "eks.amazonaws.com/token-expiration": "soon"}),
        )],
        vec![],
    );
    let out = judge(&f);
    assert_eq!(
        kinds(&out),
        vec![
            (Severity::Error, Kind::InvalidAnnotation),
            (Severity::Error, Kind::InvalidAnnotation)
        ]
    );
    assert!(
        out.iter()
            .any(|f| f.reason.contains("eks.amazonaws.com/role-arn"))
    );
    assert_eq!(out[0].object, "serviceaccount/app");
}

#[test]
fn bucket_access_not_ready() {
    let ba = |name: &str, ready: Option<(&str, &str)>| BucketAccessFacts {
        namespace: "team".into(),
        name: name.into(),
        service_account: Some("app".into()),
        ready: ready.map(|(s, m)| ReadyCondition {
            status: s.into(),
            reason: "R".into(),
            message: m.into(),
        }),
        ..BucketAccessFacts::default()
    };
    let f = Facts {
        bucket_accesses: vec![
            ba("ok", Some(("True", "fine"))),
            ba(
                "broken",
                Some(("False", "trust check failed: no OIDC provider")),
            ),
            ba("pending", None),
        ],
        ..Facts::default()
    };
    let out = judge(&f);
    assert_eq!(
        kinds(&out),
        vec![
            (Severity::Error, Kind::BucketaccessNotReady),
            (Severity::Warning, Kind::BucketaccessNotReady)
        ]
    );
    assert!(out[0].reason.contains("no OIDC provider"));
    assert_eq!(out[1].object, "bucketaccess/pending");
}

#[test]
fn notes_are_info() {
    let f = Facts {
        notes: vec!["BucketAccess CRD not installed".into()],
        ..Facts::default()
    };
    assert_eq!(kinds(&judge(&f)), vec![(Severity::Info, Kind::Unchecked)]);
}

#[test]
fn bad_recorded_bucket_env_is_reported() {
    let f = facts(
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_A}),
        )],
        vec![pod(mutated_pod(ROLE_A, "not json"))],
    );
    let out = judge(&f);
    assert_eq!(kinds(&out), vec![(Severity::Warning, Kind::Stale)]);
    assert!(out[0].reason.contains("not a JSON object"));
    let _ = BTreeMap::<String, String>::new();
}

#[test]
fn missing_webhook_and_ignore_policy() {
    use crate::facts::WebhookFacts;
    let annotated = || {
        vec![sa(
            "team",
            "app",
            json!({"eks.amazonaws.com/role-arn": ROLE_A}),
        )]
    };
    let unmutated = || {
        pod(json!({"metadata": {"namespace": "team", "name": "p"},
        "spec": {"serviceAccountName": "app", "containers": [{"name": "main"}]}}))
    };
    let mut f = facts(annotated(), vec![unmutated()]);
    f.webhooks = Some(vec![]);
    let found = judge(&f);
    assert_eq!(
        kinds(&found),
        vec![
            (Severity::Error, Kind::Webhook),
            (Severity::Warning, Kind::Missed)
        ]
    );
    assert!(
        found[1].reason.contains("no webhook configuration"),
        "{}",
        found[1].reason
    );

    f.webhooks = Some(vec![WebhookFacts {
        configuration: "storage-valet".into(),
        name: "pod-identity.storage-valet.dev".into(),
        failure_policy: "Ignore".into(),
    }]);
    let found = judge(&f);
    assert_eq!(
        kinds(&found),
        vec![
            (Severity::Warning, Kind::Missed),
            (Severity::Info, Kind::Webhook)
        ]
    );
    assert!(
        found[0].reason.contains("failurePolicy Ignore"),
        "{}",
        found[0].reason
    );

    f.webhooks
        .as_mut()
        .into_iter()
        .flatten()
        .for_each(|h| h.failure_policy = "Fail".into());
    let found = judge(&f);
    assert_eq!(kinds(&found), vec![(Severity::Warning, Kind::Missed)]);
    assert!(!found[0].reason.contains("Ignore"), "{}", found[0].reason);
}
