//! Support processes for `bench/webhook` and `bench/cache-memory`:
//!
//! - `serve DIR N [STATIC_PORT]`: an in-process API server with N
//!   ServiceAccounts (half annotated), a kubeconfig, a serving certificate
//!   for localhost and an 8 KB-pod AdmissionReview written into DIR; with
//!   STATIC_PORT, also the baselines: the same TLS + HTTP stack as the
//!   webhook answering every POST with one fixed AdmissionReview: on
//!   `/mutate` the one in DIR/answer.json (valet's answer to the review), on
//!   `/allow` an empty allow.
//! - `reflector KUBECONFIG`: a plain full-object kube reflector of every
//!   ServiceAccount; prints its RSS once synced.

// The review literal nests deeper than json!'s default limit allows.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use valet_testkit::apiserver::ApiServer;

// The same allocator as the `valet` binary, so that the baseline runs the same
// stack.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// An 8 KB pod review shaped as the API server sends it for a Deployment's
/// replica: `generateName`, `ownerReferences`, `managedFields`, the fields
/// the API server defaults, the token volume it injects.
fn review_8kb() -> serde_json::Value {
    let env: Vec<_> = (0..48)
        .map(|i| json!({"name": format!("SETTING_{i:03}"), "value": format!("value-{i}-{}", "x".repeat(60))}))
        .collect();
    let managed_env: serde_json::Map<_, _> = (0..48)
        .map(|i| {
            (
                format!("k:{{\"name\":\"SETTING_{i:03}\"}}"),
                json!({".": {}, "f:name": {}, "f:value": {}}),
            )
        })
        .collect();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "ns-7", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": "b0f0c9a1-5d2e-4c57-9a34-0e6f1d2c3b4a",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
        "object": {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"generateName": "app-7d9f8b6c5d-", "namespace": "ns-7",
                "creationTimestamp": null,
                "labels": {"app": "app", "pod-template-hash": "7d9f8b6c5d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f8b6c5d",
                    "uid": "4c2f1e9a-8b7d-4e3f-a1b2-c3d4e5f60718", "controller": true, "blockOwnerDeletion": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                    "time": "2026-11-20T10:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                        "f:ownerReferences": {".": {}, "k:{\"uid\":\"4c2f1e9a-8b7d-4e3f-a1b2-c3d4e5f60718\"}": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": managed_env,
                            "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {".": {}, "f:requests": {".": {}, "f:cpu": {}}},
                            "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                        "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                        "f:securityContext": {}, "f:serviceAccount": {}, "f:serviceAccountName": {},
                        "f:terminationGracePeriodSeconds": {}}}}]},
            "spec": {
                "volumes": [{"name": "kube-api-access-7xk2p", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                    "defaultMode": 420}}],
                "containers": [{"name": "app", "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/acme/app:1.42.0",
                    "env": env, "resources": {"requests": {"cpu": "100m"}},
                    "volumeMounts": [{"name": "kube-api-access-7xk2p", "readOnly": true,
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "sa-70", "serviceAccount": "sa-70", "securityContext": {},
                "schedulerName": "default-scheduler",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"},
            "status": {}},
        "oldObject": null, "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}})
}

async fn serve(dir: &str, n: usize, static_port: Option<u16>) {
    let dir = std::path::Path::new(dir);
    let api = ApiServer::start().await;
    for i in 0..n {
        let mut ann = serde_json::Map::new();
        if i % 2 == 0 {
            ann.insert(
                "eks.amazonaws.com/role-arn".into(),
                json!(format!(
                    "arn:aws:iam::222222222222:role/storage-valet/c/sa-{i}"
                )),
            );
            ann.insert(
                "storage-valet.dev/bucket".into(),
                json!(format!("bucket-{}/ns-{}/", i % 97, i / 100)),
            );
        }
        ann.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            json!("{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\"}"),
        );
        api.insert(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": format!("sa-{i}"), "namespace": format!("ns-{}", i / 10), "annotations": ann,
                "labels": {"app.kubernetes.io/managed-by": "bench"}},
            "secrets": [{"name": format!("sa-{i}-token")}]}))
            .expect("insert");
    }
    api.write_kubeconfig(dir).expect("kubeconfig");
    let ca = valet_tls::generate_ca("bench CA", Duration::from_secs(86400)).expect("ca");
    let pair = valet_tls::generate_serving(&ca, &["localhost".into()], Duration::from_secs(86400))
        .expect("pair");
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).expect("write");
    std::fs::write(dir.join("tls.crt"), &pair.cert_pem).expect("write");
    std::fs::write(dir.join("tls.key"), &pair.key_pem).expect("write");
    std::fs::write(dir.join("review.json"), review_8kb().to_string()).expect("write");

    if let Some(port) = static_port {
        let resolver =
            valet_tls::ReloadingResolver::from_files(dir.join("tls.crt"), dir.join("tls.key"))
                .expect("tls");
        let tls = Arc::new(valet_tls::server_config(resolver).expect("tls config"));
        let allow: axum::body::Bytes =
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true}})
            .to_string()
            .into();
        // `/mutate` answers with DIR/answer.json, read once on first use: the
        // bench writes there what valet answered to the same review, so both
        // sides send the same bytes and differ only in deciding them.
        let answer_file = dir.join("answer.json");
        let answer = Arc::new(std::sync::OnceLock::<axum::body::Bytes>::new());
        let fixed = move |body: axum::body::Bytes| async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        };
        let app = Router::new()
            .route(
                "/allow",
                post(move |_body: axum::body::Bytes| fixed(allow.clone())),
            )
            .route(
                "/mutate",
                post(move |_body: axum::body::Bytes| {
                    let bytes = answer
                        .get_or_init(|| std::fs::read(&answer_file).expect("answer.json").into())
                        .clone();
                    fixed(bytes)
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        tokio::spawn(valet_webhook::server::serve_tls(
            listener,
            tls,
            app,
            CancellationToken::new(),
            Duration::from_secs(1),
            valet_webhook::limits::LimitFlags::default(),
        ));
    }
    std::fs::write(dir.join("ready"), "").expect("write");
    println!("serving {n} ServiceAccounts at {}", api.url());
    std::future::pending::<()>().await;
}

async fn reflect(kubeconfig: &str) {
    let client = valet_kube::client(Some(std::path::Path::new(kubeconfig)))
        .await
        .expect("client");
    let api: kube::Api<ServiceAccount> = kube::Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default().page_size(500)),
    )
    .applied_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    reader.wait_until_ready().await.expect("sync");
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("{} {}", reader.state().len(), rss_kib());
}

#[tokio::main]
async fn main() {
    valet_kube::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let n = args[3].parse().expect("N");
            serve(&args[2], n, args.get(4).and_then(|p| p.parse().ok())).await
        }
        Some("reflector") => reflect(&args[2]).await,
        _ => eprintln!("usage: bench_support serve DIR N [STATIC_PORT] | reflector KUBECONFIG"),
    }
}
