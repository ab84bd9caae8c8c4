//! The lean view of a Pod that the mutation needs.
//!
//! The webhook sits in every pod creation of a cluster, so it reads only the
//! fields that decide the patch; serde skips the rest of the (possibly large)
//! object without building it. Fields that are absent are `None`, not empty:
//! JSON Patch must `add` a missing array but append to an existing one.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpecView,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`, still filled by old clients.
    pub service_account: Option<String>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub volumes: Option<Vec<VolumeView>>,
    pub containers: Option<Vec<ContainerView>>,
    pub init_containers: Option<Vec<ContainerView>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    #[serde(default)]
    pub name: String,
    pub env: Option<Vec<Named>>,
    pub volume_mounts: Option<Vec<Named>>,
}

/// A volume: its name, and if it is a projected ServiceAccount token, for
/// which audience (a volume of the webhook's name that is something else
/// means the name is taken, and injecting env would point at the wrong file).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct VolumeView {
    #[serde(default)]
    pub name: String,
    pub projected: Option<ProjectedView>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ProjectedView {
    pub sources: Option<Vec<ProjectionView>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionView {
    pub service_account_token: Option<TokenProjectionView>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TokenProjectionView {
    pub audience: Option<String>,
    pub path: Option<String>,
}

impl VolumeView {
    /// The audiences of the ServiceAccount tokens this volume projects.
    pub fn token_audiences(&self) -> impl Iterator<Item = &str> {
        self.projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.service_account_token.as_ref())
            .map(|t| t.audience.as_deref().unwrap_or(""))
    }
}

/// Any list entry of which only the name matters (env var, volume, mount).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Named {
    #[serde(default)]
    pub name: String,
}

impl PodView {
    /// The ServiceAccount the pod runs as (`default` when unset, as the
    /// API server's ServiceAccount admission sets it).
    pub fn service_account(&self) -> &str {
        self.spec
            .service_account_name
            .as_deref()
            .or(self.spec.service_account.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }

    /// `name`, else `generateName`, for messages and logs.
    pub fn display_name(&self) -> &str {
        self.metadata
            .name
            .as_deref()
            .or(self.metadata.generate_name.as_deref())
            .unwrap_or("<unnamed>")
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    pub fn is_windows(&self) -> bool {
        self.spec.node_selector.as_ref().is_some_and(|sel| {
            crate::consts::OS_SELECTORS
                .iter()
                .any(|k| sel.get(*k).map(String::as_str) == Some("windows"))
        })
    }
}

impl ContainerView {
    pub fn has_env(&self, name: &str) -> bool {
        self.env
            .as_ref()
            .is_some_and(|e| e.iter().any(|v| v.name == name))
    }
    pub fn has_mount(&self, name: &str) -> bool {
        self.volume_mounts
            .as_ref()
            .is_some_and(|m| m.iter().any(|v| v.name == name))
    }
}

// The view is a Pod to kube's admission types, so `AdmissionReview<PodView>`
// decodes a real review while reading only what we need.
impl k8s_openapi::Resource for PodView {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodView {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
