//! The lean view of a Pod that the mutation needs.
//!
//! The webhook sits in every pod creation of a cluster, so it reads only the
//! fields that decide the patch; serde skips the rest of the (possibly large)
//! object without building it. Fields that are absent are `None`, not empty:
//! JSON Patch must `add` a missing array but append to an existing one.

use serde::{Deserialize, Serialize};

use crate::text::{Str, StrMap};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodView<'a> {
    #[serde(default, borrow)]
    pub metadata: MetaView<'a>,
    #[serde(default, borrow)]
    pub spec: PodSpecView<'a>,
}

/// The pod's metadata that the mutation reads (not `managedFields`,
/// `ownerReferences`, ...: serde skips those without building them).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetaView<'a> {
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub name: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Str<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub labels: Option<StrMap<'a>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<StrMap<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView<'a> {
    #[serde(default, borrow)]
    pub service_account_name: Option<Str<'a>>,
    /// Deprecated alias of `serviceAccountName`, still filled by old clients.
    #[serde(default, borrow)]
    pub service_account: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub node_selector: Option<StrMap<'a>>,
    #[serde(default, borrow)]
    pub volumes: Option<Vec<VolumeView<'a>>>,
    #[serde(default, borrow)]
    pub containers: Option<Vec<ContainerView<'a>>>,
    #[serde(default, borrow)]
    pub init_containers: Option<Vec<ContainerView<'a>>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    #[serde(default, borrow)]
    pub name: Str<'a>,
    #[serde(default, borrow)]
    pub env: Option<Vec<Named<'a>>>,
    #[serde(default, borrow)]
    pub volume_mounts: Option<Vec<Named<'a>>>,
}

/// A volume: its name, and if it is a projected ServiceAccount token, for
/// which audience (a volume of the webhook's name that is something else
/// means the name is taken, and injecting env would point at the wrong file).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct VolumeView<'a> {
    #[serde(default, borrow)]
    pub name: Str<'a>,
    #[serde(default, borrow)]
    pub projected: Option<ProjectedView<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ProjectedView<'a> {
    #[serde(default, borrow)]
    pub sources: Option<Vec<ProjectionView<'a>>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionView<'a> {
    #[serde(default, borrow)]
    pub service_account_token: Option<TokenProjectionView<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TokenProjectionView<'a> {
    #[serde(default, borrow)]
    pub audience: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub path: Option<Str<'a>>,
}

impl VolumeView<'_> {
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
pub struct Named<'a> {
    #[serde(default, borrow)]
    pub name: Str<'a>,
}

impl PodView<'_> {
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
        self.metadata.annotations.as_ref()?.get(key)
    }

    pub fn is_windows(&self) -> bool {
        self.spec.node_selector.as_ref().is_some_and(|sel| {
            crate::consts::OS_SELECTORS
                .iter()
                .any(|k| sel.get(k) == Some("windows"))
        })
    }
}

impl ContainerView<'_> {
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
