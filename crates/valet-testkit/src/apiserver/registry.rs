//! The table of resource types the server knows, and the discovery documents
//! built from it.

use std::sync::Arc;

use serde_json::{Value, json};

/// One resource type: what the URL, the `kind` and discovery need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment, e.g. "serviceaccounts".
    pub plural: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource keep `.status`,
    /// writes to `/status` change only `.status`.
    pub status_subresource: bool,
}

impl ResourceDef {
    pub fn namespaced(group: &str, version: &str, kind: &str, plural: &str) -> ResourceDef {
        ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            namespaced: true,
            status_subresource: false,
        }
    }

    pub fn cluster(group: &str, version: &str, kind: &str, plural: &str) -> ResourceDef {
        ResourceDef {
            namespaced: false,
            ..ResourceDef::namespaced(group, version, kind, plural)
        }
    }

    pub fn with_status(mut self) -> ResourceDef {
        self.status_subresource = true;
        self
    }

    /// "v1" or "group/version".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Key of this type's bucket in the store.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}/{}", self.group, self.version, self.plural)
    }
}

/// The types served before any `register`: what the valet components and
/// their tests touch.
pub fn defaults() -> Vec<ResourceDef> {
    vec![
        ResourceDef::cluster("", "v1", "Namespace", "namespaces").with_status(),
        ResourceDef::namespaced("", "v1", "ServiceAccount", "serviceaccounts"),
        ResourceDef::namespaced("", "v1", "Pod", "pods").with_status(),
        ResourceDef::namespaced("", "v1", "Event", "events"),
        ResourceDef::namespaced("", "v1", "Secret", "secrets"),
        ResourceDef::namespaced("", "v1", "ConfigMap", "configmaps"),
        ResourceDef::namespaced("", "v1", "Service", "services").with_status(),
        ResourceDef::cluster("", "v1", "Node", "nodes").with_status(),
        // The audit's Mountpoint for S3 CSI inventory.
        ResourceDef::cluster("", "v1", "PersistentVolume", "persistentvolumes").with_status(),
        ResourceDef::namespaced("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
            .with_status(),
        ResourceDef::namespaced("apps", "v1", "Deployment", "deployments").with_status(),
        ResourceDef::namespaced("coordination.k8s.io", "v1", "Lease", "leases"),
        ResourceDef::namespaced("events.k8s.io", "v1", "Event", "events"),
        ResourceDef::cluster(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
        ),
        ResourceDef::cluster(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
        ),
        ResourceDef::cluster(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        )
        .with_status(),
        ResourceDef::namespaced(
            "storage-valet.dev",
            "v1alpha1",
            "BucketAccess",
            "bucketaccesses",
        )
        .with_status(),
    ]
}

/// The registered types, looked up by URL or by apiVersion + kind.
#[derive(Debug, Clone)]
pub struct Registry {
    defs: Vec<Arc<ResourceDef>>,
}

impl Registry {
    pub fn with_defaults() -> Registry {
        Registry {
            defs: defaults().into_iter().map(Arc::new).collect(),
        }
    }

    /// Adds or replaces (same group, version and plural) a type.
    pub fn register(&mut self, def: ResourceDef) {
        self.defs.retain(|d| {
            !(d.group == def.group && d.version == def.version && d.plural == def.plural)
        });
        self.defs.push(Arc::new(def));
    }

    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .cloned()
    }

    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
            .cloned()
    }

    fn group_versions(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in &self.defs {
            match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some((_, versions)) if !versions.contains(&d.version) => {
                    versions.push(d.version.clone())
                }
                Some(_) => {}
                None => out.push((d.group.clone(), vec![d.version.clone()])),
            }
        }
        out
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.defs
            .iter()
            .any(|d| d.group == group && d.version == version)
    }

    /// `GET /api`.
    pub fn core_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
        })
    }

    /// `GET /apis`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .group_versions()
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(group, versions)| {
                let gvs: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
                    .collect();
                json!({ "name": group, "versions": gvs, "preferredVersion": gvs[0] })
            })
            .collect();
        json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
    }

    /// `GET /apis/{group}`.
    pub fn group(&self, group: &str) -> Option<Value> {
        self.group_versions().into_iter().find(|(g, _)| g == group).map(|(group, versions)| {
            let gvs: Vec<Value> = versions
                .iter()
                .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
                .collect();
            json!({ "kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0] })
        })
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`.
    pub fn resource_list(&self, group: &str, version: &str) -> Value {
        let mut resources = Vec::new();
        for d in self
            .defs
            .iter()
            .filter(|d| d.group == group && d.version == version)
        {
            resources.push(json!({
                "name": d.plural,
                "singularName": d.kind.to_lowercase(),
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            }));
            if d.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", d.plural),
                    "singularName": "",
                    "namespaced": d.namespaced,
                    "kind": d.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
            if group.is_empty() && d.plural == "serviceaccounts" {
                resources.push(json!({
                    "name": "serviceaccounts/token",
                    "singularName": "",
                    "namespaced": true,
                    "group": "authentication.k8s.io",
                    "version": "v1",
                    "kind": "TokenRequest",
                    "verbs": ["create"],
                }));
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources })
    }
}

/// The types a `CustomResourceDefinition` object declares, so creating a CRD
/// through the API makes its resources servable as a real server would.
pub fn defs_from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let (Some(group), Some(kind), Some(plural)) = (
        spec["group"].as_str(),
        spec["names"]["kind"].as_str(),
        spec["names"]["plural"].as_str(),
    ) else {
        return Vec::new();
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .map(|versions| {
            versions
                .iter()
                .filter_map(|v| {
                    let name = v["name"].as_str()?;
                    Some(ResourceDef {
                        group: group.to_string(),
                        version: name.to_string(),
                        kind: kind.to_string(),
                        plural: plural.to_string(),
                        namespaced,
                        status_subresource: v["subresources"].get("status").is_some(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}
