//! Each document through its k8s-openapi type and back: a field the type
//! does not know (a typo, a wrong nesting) disappears on the way and shows
//! up as a difference.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn roundtrip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    diff("", doc, &back, &mut diffs);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => diff(&p, wv, gv, out),
                    None => out.push(format!("{p}: unknown field (typo or wrong place?)")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) && !gv.is_null() {
                    out.push(format!("{path}.{k}: appeared on the way back"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                diff(&format!("{path}[{i}]"), wv, gv, out);
            }
        }
        _ if want == got => {}
        _ => out.push(format!("{path}: {want} came back as {got}")),
    }
}

/// Kinds with no k8s-openapi type: the keys their spec may use, from the
/// CRDs of cert-manager v1 and prometheus-operator v1.
const FOREIGN: &[(&str, &str, &[&str])] = &[
    ("cert-manager.io/v1", "Issuer", &["selfSigned", "ca"]),
    (
        "cert-manager.io/v1",
        "Certificate",
        &[
            "secretName",
            "isCA",
            "commonName",
            "dnsNames",
            "duration",
            "renewBefore",
            "issuerRef",
            "privateKey",
            "usages",
            "secretTemplate",
        ],
    ),
    (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        &["selector", "namespaceSelector", "endpoints", "jobLabel"],
    ),
];

/// Checks one document against its type; Err names the problem.
pub fn check(doc: &Value) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    match (api_version, kind) {
        ("v1", "Namespace") => roundtrip::<Namespace>(doc),
        ("v1", "ServiceAccount") => roundtrip::<ServiceAccount>(doc),
        ("v1", "Service") => roundtrip::<Service>(doc),
        ("v1", "ConfigMap") => roundtrip::<ConfigMap>(doc),
        ("v1", "Secret") => roundtrip::<Secret>(doc),
        ("apps/v1", "Deployment") => roundtrip::<Deployment>(doc),
        ("batch/v1", "Job") => roundtrip::<Job>(doc),
        ("batch/v1", "CronJob") => roundtrip::<CronJob>(doc),
        ("policy/v1", "PodDisruptionBudget") => roundtrip::<PodDisruptionBudget>(doc),
        ("networking.k8s.io/v1", "NetworkPolicy") => roundtrip::<NetworkPolicy>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            roundtrip::<ClusterRoleBinding>(doc)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<RoleBinding>(doc),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            roundtrip::<MutatingWebhookConfiguration>(doc)
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            roundtrip::<CustomResourceDefinition>(doc)
        }
        _ => match FOREIGN
            .iter()
            .find(|(a, k, _)| *a == api_version && *k == kind)
        {
            Some((_, _, keys)) => foreign(doc, keys),
            None => Err(format!(
                "no type known for apiVersion {api_version:?} kind {kind:?}"
            )),
        },
    }
}

fn foreign(doc: &Value, spec_keys: &[&str]) -> Result<(), String> {
    // The metadata is the common ObjectMeta: check it like any other.
    let meta =
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]});
    roundtrip::<ConfigMap>(&meta)?;
    let spec = doc["spec"].as_object().ok_or("no spec")?;
    for key in spec.keys() {
        if !spec_keys.contains(&key.as_str()) {
            return Err(format!("spec.{key}: not a field of {}", doc["kind"]));
        }
    }
    let top: Vec<&String> = doc
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    for key in top {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&key.as_str()) {
            return Err(format!("{key}: not a top-level field"));
        }
    }
    Ok(())
}
