//! RBAC rules of the install: least privilege per component, no wildcards,
//! a read-only audit role.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::checks::{Problems, strs};
use super::{id, named};

/// (apiGroup, resource, verb, resourceNames)
pub type Grant = (String, String, String, Vec<String>);

/// Every grant each ServiceAccount receives through bindings in `docs`,
/// keyed by the SA's component label.
pub fn grants_by_component(docs: &[Value]) -> BTreeMap<String, BTreeSet<Grant>> {
    let mut out: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
    for binding in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
    {
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
        let Some(role) = named(
            docs,
            role_kind,
            binding["roleRef"]["name"].as_str().unwrap_or(""),
        ) else {
            continue;
        };
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            let Some(sa) = named(
                docs,
                "ServiceAccount",
                subject["name"].as_str().unwrap_or(""),
            ) else {
                continue;
            };
            let component = sa["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap_or("?");
            let set = out.entry(component.to_string()).or_default();
            for rule in role["rules"].as_array().into_iter().flatten() {
                let mut names = strs(&rule["resourceNames"]);
                names.sort();
                for group in strs(&rule["apiGroups"]) {
                    for resource in strs(&rule["resources"]) {
                        for verb in strs(&rule["verbs"]) {
                            set.insert((group.clone(), resource.clone(), verb, names.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

pub fn grants(spec: &[(&str, &str, &str)]) -> BTreeSet<Grant> {
    spec.iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.split(',').map(move |v| {
                (
                    group.to_string(),
                    resource.to_string(),
                    v.to_string(),
                    Vec::new(),
                )
            })
        })
        .collect()
}

pub fn check(docs: &[Value], p: &mut Problems) {
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for field in ["apiGroups", "resources", "verbs"] {
                if strs(&rule[field]).iter().any(|s| s == "*") {
                    p.push(format!("{}: wildcard in {field}", id(role)));
                }
            }
        }
        if role["metadata"]["labels"]["app.kubernetes.io/component"] == "audit" {
            let verbs: BTreeSet<String> = role["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| strs(&r["verbs"]))
                .collect();
            if !verbs
                .iter()
                .all(|v| ["get", "list", "watch"].contains(&v.as_str()))
            {
                p.push(format!(
                    "{}: the audit role must be read-only, has {verbs:?}",
                    id(role)
                ));
            }
        }
    }
    let by_component = grants_by_component(docs);
    if let Some(webhook) = by_component.get("webhook") {
        let want = grants(&[("", "serviceaccounts", "get,list,watch")]);
        if webhook != &want {
            p.push(format!(
                "webhook RBAC must be exactly {want:?}, is {webhook:?}"
            ));
        }
    }
    if let Some(broker) = by_component.get("broker") {
        let want = grants(&[
            (
                "storage-valet.dev",
                "bucketaccesses",
                "get,list,watch,patch",
            ),
            (
                "storage-valet.dev",
                "bucketaccesses/status",
                "get,patch,update",
            ),
            ("storage-valet.dev", "bucketaccesses/finalizers", "update"),
            ("storage-valet.dev", "bucketclasses", "get,list,watch"),
            ("storage-valet.dev", "bucketclaims", "get,list,watch,patch"),
            (
                "storage-valet.dev",
                "bucketclaims/status",
                "get,patch,update",
            ),
            ("storage-valet.dev", "bucketclaims/finalizers", "update"),
            // Read only: the broker cannot widen its own guardrails.
            (
                "storage-valet.dev",
                "bucketaccesspolicies",
                "get,list,watch",
            ),
            ("", "namespaces", "get,list,watch"),
            // No serviceaccounts/token: the controller never mints tokens.
            ("", "serviceaccounts", "get,list,watch,create,patch,delete"),
            ("", "events", "create,patch"),
            ("events.k8s.io", "events", "create,patch"),
            (
                "coordination.k8s.io",
                "leases",
                "get,list,watch,create,update,patch",
            ),
        ]);
        if broker != &want {
            p.push(format!(
                "broker RBAC differs: extra {:?}, missing {:?}",
                broker.difference(&want).collect::<Vec<_>>(),
                want.difference(broker).collect::<Vec<_>>()
            ));
        }
    }
    if let Some(certs) = by_component.get("certs") {
        for (group, resource, verb, names) in certs {
            let ok = match (group.as_str(), resource.as_str(), verb.as_str()) {
                ("", "secrets", "create") => true,
                ("", "secrets", "get" | "update") => names.len() == 2,
                (
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    "get" | "update",
                ) => names.len() == 1,
                _ => false,
            };
            if !ok {
                p.push(format!(
                    "certs RBAC: unexpected grant {verb} {group}/{resource} {names:?}"
                ));
            }
        }
    }
}
