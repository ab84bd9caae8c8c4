//! Fixture cluster with one finding of each kind, plus parsers that check the
//! JSON and DOT outputs for real.
#![allow(dead_code)]

pub mod dot;
pub mod schema;

use clap::Parser;
use serde_json::{Value, json};
use valet_audit::AuditOptions;
use valet_cli::audit::AuditArgs;
use valet_testkit::apiserver::ApiServer;

pub const ROLE_WEB: &str = "arn:aws:iam::222222222222:role/storage-valet/team-a-web";
pub const ROLE_OLD: &str = "arn:aws:iam::222222222222:role/storage-valet/team-a-old";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    audit: AuditArgs,
}

/// `valet audit` arguments as a user types them.
pub fn args(argv: &[&str]) -> AuditOptions {
    let mut all = vec!["valet-audit"];
    all.extend_from_slice(argv);
    Cli::parse_from(all).audit.into()
}

pub fn sa(ns: &str, name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"namespace": ns, "name": name, "annotations": annotations}})
}

/// A Deployment's pod (owned by ReplicaSet `<deploy>-7c9d5`).
pub fn pod(ns: &str, name: &str, sa: &str, annotations: Value, containers: Value) -> Value {
    let deploy = name.rsplit_once('-').map_or(name, |(d, _)| d);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{deploy}-7c9d5"), "uid": "u-1", "controller": true}]},
        "spec": {"serviceAccountName": sa, "containers": containers},
        "status": {"phase": "Running"}})
}

/// What the webhook leaves on a pod it mutated.
pub fn mutated(role: &str, bucket_env: Value) -> Value {
    json!({
        "storage-valet.dev/injected-mode": "web-identity",
        "storage-valet.dev/injected-role-arn": role,
        "storage-valet.dev/injected-bucket-env": bucket_env.to_string(),
    })
}

pub fn env_container(name: &str, role: &str, bucket: &str) -> Value {
    json!({"name": name, "image": "app", "env": [
        {"name": "AWS_ROLE_ARN", "value": role},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
        {"name": "S3_BUCKET", "value": bucket}]})
}

/// Every finding kind, once: see `every_finding_kind` for the list.
pub fn load_fixture(server: &ApiServer) {
    let put = |v: Value| {
        server.insert(v).expect("fixture object");
    };
    put(sa(
        "team-a",
        "web",
        json!({
            "eks.amazonaws.com/role-arn": ROLE_WEB,
            "storage-valet.dev/bucket": "acme-media",
        }),
    ));
    // Fresh: no finding.
    put(pod(
        "team-a",
        "web-fresh",
        "web",
        mutated(ROLE_WEB, json!({"S3_BUCKET": "acme-media"})),
        json!([env_container("main", ROLE_WEB, "acme-media")]),
    ));
    // Stale role: mutated when the SA had another role.
    put(pod(
        "team-a",
        "api-1",
        "web",
        mutated(ROLE_OLD, json!({"S3_BUCKET": "acme-media"})),
        json!([env_container("main", ROLE_OLD, "acme-media")]),
    ));
    // Stale bucket.
    put(pod(
        "team-a",
        "media-1",
        "web",
        mutated(ROLE_WEB, json!({"S3_BUCKET": "acme-old"})),
        json!([env_container("main", ROLE_WEB, "acme-old")]),
    ));
    // Missed: created before the webhook.
    put(pod(
        "team-a",
        "worker-1",
        "web",
        json!({}),
        json!([{"name": "main", "image": "app"}]),
    ));
    // Skipped container (info).
    let mut skip = mutated(ROLE_WEB, json!({"S3_BUCKET": "acme-media"}));
    skip["eks.amazonaws.com/skip-containers"] = json!("proxy");
    put(pod(
        "team-a",
        "gateway-1",
        "web",
        skip,
        json!([env_container("main", ROLE_WEB, "acme-media"), {"name": "proxy", "image": "envoy"}]),
    ));
    // Completed pods are not audited unless asked.
    let mut done = pod(
        "team-a",
        "job-1",
        "web",
        json!({}),
        json!([{"name": "main", "image": "app"}]),
    );
    done["status"]["phase"] = json!("Succeeded");
    put(done);

    // Invalid annotations.
    put(sa(
        "team-a",
        "batch",
        json!({
            "eks.amazonaws.com/role-arn": "arn:aws:iam::12:role/x",
            "eks.amazonaws.com/token-expiration": "soon",
        }),
    ));

    // Static keys: literal, secretKeyRef, envFrom of a Secret holding keys.
    put(sa("team-a", "default", json!({})));
    put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"namespace": "team-a", "name": "aws-creds"},
        "data": {"AWS_ACCESS_KEY_ID": "QUtJQUVYQU1QTEU=", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0LXZhbHVlLTQy"}}),
    );
    put(pod(
        "team-a",
        "legacy-1",
        "default",
        json!({}),
        json!([
        {"name": "main", "image": "app", "env": [
            {"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws-creds", "key": "AWS_SECRET_ACCESS_KEY"}}}]},
        {"name": "uploader", "image": "app", "envFrom": [{"secretRef": {"name": "aws-creds"}}]}]),
    ));

    server.register(valet_testkit::apiserver::ResourceDef::cluster(
        "storage-valet.dev",
        "v1alpha1",
        "BucketAccessPolicy",
        "bucketaccesspolicies",
    ));
    // The platform's policy allows both BucketAccesses below (the bucket
    // account is the broker's default, as media-reader's role shows).
    put(
        json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccessPolicy",
        "metadata": {"name": "team-a-media"},
        "spec": {"namespaces": ["team-a"], "buckets": [{"name": "acme-media", "maxAccess": "readwrite"}]}}),
    );
    // BucketAccess not Ready, and one that is.
    put(
        json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccess",
        "metadata": {"namespace": "team-a", "name": "media-writer"},
        "spec": {"serviceAccountName": "web", "buckets": [{"name": "acme-media", "access": "readwrite"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "ProvisionFailed",
            "message": "iam:CreateRole AccessDenied in account 222222222222", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );
    put(
        json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccess",
        "metadata": {"namespace": "team-a", "name": "media-reader"},
        "spec": {"serviceAccountName": "web", "buckets": [{"name": "acme-media", "access": "read"}]},
        "status": {"roleArn": ROLE_WEB, "conditions": [{"type": "Ready", "status": "True", "reason": "Provisioned",
            "message": "role ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
    );

    // team-b: a pod takes a Secret the audit may not read (403 set by the test).
    put(sa("team-b", "etl", json!({})));
    put(pod(
        "team-b",
        "etl-1",
        "etl",
        json!({}),
        json!([
        {"name": "main", "image": "etl", "envFrom": [{"secretRef": {"name": "etl-env"}}]}]),
    ));

    // The webhook, with failurePolicy Ignore.
    put(webhook_config("Ignore"));
    // Someone else's webhook: ignored.
    put(
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "istio-sidecar-injector"},
        "webhooks": [{"name": "sidecar-injector.istio.io", "failurePolicy": "Fail",
            "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"namespace": "istio-system", "name": "istiod", "path": "/inject"}}}]}),
    );
}

/// Our MutatingWebhookConfiguration.
pub fn webhook_config(failure_policy: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "storage-valet"},
        "webhooks": [{"name": "pod-identity.storage-valet.dev", "failurePolicy": failure_policy,
            "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"namespace": "storage-valet", "name": "storage-valet-webhook", "path": "/mutate"}}}]})
}

/// Makes reading Secrets in team-b forbidden for the next requests.
pub fn forbid_team_b_secrets(server: &ApiServer) {
    server.fail_times("GET", "/api/v1/namespaces/team-b/secrets", 403, 10);
}
