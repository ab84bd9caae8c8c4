//! Mutating admission: the server calls a real HTTPS webhook with an
//! AdmissionReview and applies its JSONPatch, as kube-apiserver does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use valet_testkit::apiserver::ApiServer;

use super::*;

/// Labels pods `mutated=yes`, or denies pods labelled `deny`.
async fn review(Json(review): Json<Value>) -> Json<Value> {
    let req = &review["request"];
    let uid = req["uid"].clone();
    if req["object"]["metadata"]["labels"].get("deny").is_some() {
        return Json(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": false, "status": {"code": 403, "message": "no thanks"}}
        }));
    }
    let patch = json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]);
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": STANDARD.encode(patch.to_string()),
        }
    }))
}

/// An HTTPS webhook for `valet-webhook.valet-system.svc`; returns its
/// address and the CA PEM.
async fn start_webhook() -> anyhow::Result<(SocketAddr, String)> {
    let ca = valet_tls::generate_ca("test CA", Duration::from_secs(3600))?;
    let names = valet_tls::service_dns_names("valet-webhook", "valet-system");
    let leaf = valet_tls::generate_serving(&ca, &names, Duration::from_secs(3600))?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let router = Router::new().route("/mutate", post(review));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = TowerToHyperService::new(router);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok((addr, ca.cert_pem))
}

fn webhook_config(ca_pem: &str, object_selector: Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "valet"},
        "webhooks": [{
            "name": "pod-identity.storage-valet.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "clientConfig": {
                "service": {"name": "valet-webhook", "namespace": "valet-system", "path": "/mutate", "port": 443},
                "caBundle": STANDARD.encode(ca_pem),
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "objectSelector": object_selector,
        }]
    })
}

fn pod(name: &str, labels: Value) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    }))?)
}

#[tokio::test]
async fn pod_creation_goes_through_the_mutating_webhook() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let (addr, ca_pem) = start_webhook().await?;
    let selector = json!({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]});
    server.insert(webhook_config(&ca_pem, selector))?;
    let pods: Api<Pod> = Api::namespaced(server.client(), "app");

    // Off by default: stored as sent.
    let plain = pods
        .create(&PostParams::default(), &pod("before", json!({}))?)
        .await?;
    assert!(
        !plain
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("mutated")
    );
    assert_eq!(server.admission_calls(), 0);

    server.set_admission(true);
    let (code, _) = api_status(
        pods.create(&PostParams::default(), &pod("unrouted", json!({}))?)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 500, "failurePolicy Fail with an unreachable service");

    server.route_service("valet-system", "valet-webhook", addr);
    let mutated = pods
        .create(&PostParams::default(), &pod("a", json!({"x": "1"}))?)
        .await?;
    assert_eq!(
        mutated
            .metadata
            .labels
            .unwrap_or_default()
            .get("mutated")
            .map(String::as_str),
        Some("yes")
    );
    let skipped = pods
        .create(&PostParams::default(), &pod("b", json!({"skip": "1"}))?)
        .await?;
    assert!(
        !skipped
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("mutated"),
        "objectSelector"
    );

    let (code, _) = api_status(
        pods.create(&PostParams::default(), &pod("c", json!({"deny": "1"}))?)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(server.get("v1", "Pod", "app", "c").is_none());
    assert_eq!(server.admission_calls(), 3);
    Ok(())
}
