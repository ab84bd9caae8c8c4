//! Mutating admission on CREATE, as kube-apiserver does it: every webhook of
//! every stored `MutatingWebhookConfiguration` (in name order) whose rules and
//! selectors match gets a real `admission.k8s.io/v1` AdmissionReview over
//! HTTPS (trusting its `caBundle`), and its JSONPatch is applied.
//!
//! Opt-in (`ApiServer::set_admission(true)`), CREATE only; `service`
//! references are reached through addresses the test maps with
//! `ApiServer::route_service`.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::handler::Target;
use super::registry::ResourceDef;
use super::state::Shared;
use super::store::Scan;
use super::wire::{ApiError, meta_str, new_uid};

/// Runs the mutating webhooks on an object about to be created; returns the
/// object as mutated.
pub async fn admit_create(shared: &Shared, t: &Target, mut obj: Value) -> Result<Value, ApiError> {
    let (configs, ns_labels) = {
        let store = shared.store();
        let mwc = ResourceDef::cluster(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        );
        let configs = store.list(&mwc, Scan::default(), |_| true).items;
        let ns = t.ns_key();
        let ns_def = ResourceDef::cluster("", "v1", "Namespace", "namespaces").with_status();
        let mut labels = store
            .get(&ns_def, "", ns)
            .ok()
            .and_then(|n| n["metadata"]["labels"].as_object().cloned())
            .unwrap_or_default();
        // The real server labels every namespace with its own name.
        labels.insert("kubernetes.io/metadata.name".into(), json!(ns));
        (configs, Value::Object(labels))
    };
    for config in &configs {
        for hook in config["webhooks"].as_array().into_iter().flatten() {
            let ns_obj = json!({ "metadata": { "labels": ns_labels } });
            let ns_ok = !t.def.namespaced || selector_matches(&hook["namespaceSelector"], &ns_obj);
            if !rules_match(hook, &t.def)
                || !ns_ok
                || !selector_matches(&hook["objectSelector"], &obj)
            {
                continue;
            }
            let name = hook["name"].as_str().unwrap_or("").to_string();
            shared.count_admission();
            match call(shared, hook, t, &obj).await {
                Ok(Some(patched)) => obj = patched,
                Ok(None) => {}
                Err(Failure::Denied(err)) => return Err(err),
                Err(Failure::Call(msg)) => {
                    if hook["failurePolicy"].as_str() == Some("Ignore") {
                        continue;
                    }
                    return Err(ApiError::new(
                        500,
                        "InternalError",
                        format!(
                            "Internal error occurred: failed calling webhook \"{name}\": {msg}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(obj)
}

enum Failure {
    /// The webhook answered allowed: false (or with a bad patch).
    Denied(ApiError),
    /// The webhook could not be called or answered garbage.
    Call(String),
}

fn rules_match(hook: &Value, def: &ResourceDef) -> bool {
    let has = |list: &Value, want: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v == "*" || v.as_str() == Some(want)))
    };
    hook["rules"].as_array().into_iter().flatten().any(|rule| {
        has(&rule["operations"], "CREATE")
            && has(&rule["apiGroups"], &def.group)
            && has(&rule["apiVersions"], &def.version)
            && has(&rule["resources"], &def.plural)
            && match rule["scope"].as_str() {
                Some("Namespaced") => def.namespaced,
                Some("Cluster") => !def.namespaced,
                _ => true,
            }
    })
}

/// A `metav1.LabelSelector` (matchLabels and matchExpressions) against the
/// object's labels; an absent selector matches everything.
fn selector_matches(selector: &Value, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let exprs_ok = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    labels_ok && exprs_ok
}

async fn call(
    shared: &Shared,
    hook: &Value,
    t: &Target,
    obj: &Value,
) -> Result<Option<Value>, Failure> {
    let cc = &hook["clientConfig"];
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(
        hook["timeoutSeconds"].as_u64().unwrap_or(10),
    ));
    if let Some(bundle) = cc["caBundle"].as_str().filter(|b| !b.is_empty()) {
        let pem = STANDARD
            .decode(bundle)
            .map_err(|e| Failure::Call(format!("caBundle is not base64: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Failure::Call(format!("caBundle holds no PEM certificate: {e}")))?;
        builder = builder.tls_certs_only(certs);
    }
    let url = match (cc["url"].as_str(), cc.get("service")) {
        (Some(url), _) => url.to_string(),
        (None, Some(svc)) => {
            let (name, ns) = (
                svc["name"].as_str().unwrap_or(""),
                svc["namespace"].as_str().unwrap_or(""),
            );
            let host = format!("{name}.{ns}.svc");
            let addr: SocketAddr = shared.service_route(ns, name).ok_or_else(|| {
                Failure::Call(format!(
                    "service {ns}/{name} has no address: call ApiServer::route_service in the test"
                ))
            })?;
            builder = builder.resolve(&host, addr);
            let port = svc["port"].as_u64().unwrap_or(443);
            format!(
                "https://{host}:{port}{}",
                svc["path"].as_str().unwrap_or("/")
            )
        }
        (None, None) => {
            return Err(Failure::Call(
                "clientConfig has neither url nor service".into(),
            ));
        }
    };
    let client = builder
        .build()
        .map_err(|e| Failure::Call(format!("cannot build the HTTPS client: {e}")))?;
    let uid = new_uid();
    let review = review_request(&uid, t, obj);
    let resp = client
        .post(&url)
        .json(&review)
        .send()
        .await
        .map_err(|e| Failure::Call(format!("{e:?}")))?;
    if !resp.status().is_success() {
        return Err(Failure::Call(format!(
            "the webhook answered HTTP {}",
            resp.status()
        )));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| Failure::Call(format!("not an AdmissionReview: {e}")))?;
    let response = &body["response"];
    if response["uid"].as_str() != Some(uid.as_str()) {
        return Err(Failure::Call(format!(
            "expected response.uid={uid:?}, got {}",
            response["uid"]
        )));
    }
    let name = hook["name"].as_str().unwrap_or("");
    if response["allowed"].as_bool() != Some(true) {
        let status = &response["status"];
        let code = status["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(400);
        let message = status["message"].as_str().unwrap_or("");
        return Err(Failure::Denied(ApiError::injected(code).with_message(
            format!("admission webhook \"{name}\" denied the request: {message}"),
        )));
    }
    let Some(patch) = response["patch"].as_str() else {
        return Ok(None);
    };
    let raw = STANDARD
        .decode(patch)
        .map_err(|e| Failure::Call(format!("patch is not base64: {e}")))?;
    let ops: json_patch::Patch = serde_json::from_slice(&raw)
        .map_err(|e| Failure::Call(format!("patch is not a JSON patch: {e}")))?;
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| {
        Failure::Denied(ApiError::invalid(format!(
            "the patch of webhook \"{name}\" does not apply: {e}"
        )))
    })?;
    Ok(Some(patched))
}

fn review_request(uid: &str, t: &Target, obj: &Value) -> Value {
    let kind = json!({ "group": t.def.group, "version": t.def.version, "kind": t.def.kind });
    let resource =
        json!({ "group": t.def.group, "version": t.def.version, "resource": t.def.plural });
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": meta_str(obj, "name"),
            "namespace": t.ns_key(),
            "operation": "CREATE",
            "userInfo": { "username": "system:admin", "groups": ["system:masters", "system:authenticated"] },
            "object": obj,
            "oldObject": null,
            "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1" },
        }
    })
}
