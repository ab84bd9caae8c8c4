//! Reading `broker apply`'s files: every kind of ours, plus Namespaces for
//! their labels; other kinds are skipped. Unknown fields are refused with
//! their path, as a cluster's schema would refuse them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde::Deserialize;
use valet_buckets::class::ValidClass;
use valet_buckets::crd::{BucketClaim, BucketClass};

use super::ApplyError;
use crate::access_policy::BucketAccessPolicy;
use crate::crd::BucketAccess;
use crate::permit::{self, NamespaceInfo};

/// One namespaced object read from a file, and where it came from.
#[derive(Debug, Clone)]
pub struct Sourced<K> {
    /// `FILE#INDEX`, for the plan.
    pub origin: String,
    pub namespace: String,
    pub object: K,
}

/// One BucketAccess read from a file.
pub type Source = Sourced<BucketAccess>;
/// One BucketClaim read from a file.
pub type ClaimSource = Sourced<BucketClaim>;

impl<K: kube::Resource> Sourced<K> {
    pub fn name(&self) -> &str {
        self.object.meta().name.as_deref().unwrap_or("")
    }
}

/// What the files hold.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub accesses: Vec<Source>,
    pub claims: Vec<ClaimSource>,
    pub policies: Vec<BucketAccessPolicy>,
    pub classes: Vec<BucketClass>,
    /// Namespace name -> labels, from `kind: Namespace` documents.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Inputs {
    pub(crate) fn namespace(&self, name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.to_string(),
            labels: self.labels(name),
        }
    }

    pub(crate) fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// The kinds `broker apply` reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Access,
    Policy,
    Class,
    Claim,
    Namespace,
}

impl Kind {
    fn of(meta: &TypeMeta) -> Option<Kind> {
        let ours = meta.api_version.starts_with("storage-valet.dev/");
        Some(match (meta.kind.as_str(), ours) {
            ("BucketAccess", true) => Kind::Access,
            ("BucketAccessPolicy", true) => Kind::Policy,
            ("BucketClass", true) => Kind::Class,
            ("BucketClaim", true) => Kind::Claim,
            ("Namespace", false) if meta.api_version == "v1" => Kind::Namespace,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Access => "BucketAccess",
            Kind::Policy => "BucketAccessPolicy",
            Kind::Class => "BucketClass",
            Kind::Claim => "BucketClaim",
            Kind::Namespace => "Namespace",
        }
    }

    /// The unknown fields of `json`, by the kind's own schema.
    fn unknown_fields(self, json: &serde_json::Value) -> Vec<String> {
        let by_crd = |crd: serde_json::Value| crate::strict::unknown_fields(&crd, json);
        match self {
            Kind::Access => by_crd(crd_json::<BucketAccess>()),
            Kind::Policy => by_crd(crd_json::<BucketAccessPolicy>()),
            Kind::Class => by_crd(crd_json::<BucketClass>()),
            Kind::Claim => by_crd(crd_json::<BucketClaim>()),
            Kind::Namespace => crate::strict::unknown_meta_fields(json, NAMESPACE_TOP_LEVEL),
        }
    }
}

/// The top-level keys of a Namespace document.
const NAMESPACE_TOP_LEVEL: &[&str] = &["apiVersion", "kind", "spec", "status"];

fn crd_json<K: CustomResourceExt>() -> serde_json::Value {
    serde_json::to_value(K::crd()).unwrap_or_default()
}

/// Reads every document of ours from the files (`-` = stdin).
pub fn read_sources(files: &[PathBuf]) -> Result<Inputs, ApplyError> {
    let mut out = Inputs::default();
    for file in files {
        let shown = file.display().to_string();
        let text = read(file).map_err(|source| ApplyError::Read {
            path: shown.clone(),
            source,
        })?;
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value =
                serde_yaml_ng::Value::deserialize(doc).map_err(|source| ApplyError::Yaml {
                    path: shown.clone(),
                    index,
                    source,
                })?;
            if value.is_null() {
                continue;
            }
            let Some(kind) = serde_yaml_ng::from_value(value.clone())
                .ok()
                .as_ref()
                .and_then(Kind::of)
            else {
                continue;
            };
            let at = At {
                path: &shown,
                index,
                kind,
            };
            let json = serde_json::to_value(&value).map_err(|e| at.object(e))?;
            let fields = kind.unknown_fields(&json);
            if !fields.is_empty() {
                return Err(ApplyError::UnknownFields {
                    path: shown.clone(),
                    index,
                    kind: kind.name(),
                    fields,
                });
            }
            at.add(json, &mut out)?;
        }
    }
    if out.accesses.is_empty() && out.claims.is_empty() {
        return Err(ApplyError::Empty);
    }
    Ok(out)
}

/// Where a document is, for its errors.
struct At<'a> {
    path: &'a str,
    index: usize,
    kind: Kind,
}

impl At<'_> {
    fn object(&self, e: impl std::fmt::Display) -> ApplyError {
        ApplyError::Object {
            path: self.path.to_string(),
            index: self.index,
            kind: self.kind.name(),
            message: e.to_string(),
        }
    }

    fn invalid(&self, name: Option<&String>, message: String) -> ApplyError {
        ApplyError::Invalid {
            path: self.path.to_string(),
            index: self.index,
            kind: self.kind.name(),
            name: name.cloned().unwrap_or_default(),
            message,
        }
    }

    /// A namespaced object of ours, with where it came from (no namespace
    /// is `default`, as kubectl reads it).
    fn sourced<K>(&self, json: serde_json::Value) -> Result<Sourced<K>, ApplyError>
    where
        K: kube::Resource + serde::de::DeserializeOwned,
    {
        let object: K = serde_json::from_value(json).map_err(|e| self.object(e))?;
        Ok(Sourced {
            origin: format!("{}#{}", self.path, self.index),
            namespace: object
                .meta()
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            object,
        })
    }

    fn add(&self, json: serde_json::Value, out: &mut Inputs) -> Result<(), ApplyError> {
        match self.kind {
            Kind::Access => out.accesses.push(self.sourced(json)?),
            Kind::Claim => out.claims.push(self.sourced(json)?),
            Kind::Policy => {
                let policy: BucketAccessPolicy =
                    serde_json::from_value(json).map_err(|e| self.object(e))?;
                permit::check_policy(&policy.spec)
                    .map_err(|m| self.invalid(policy.metadata.name.as_ref(), m))?;
                out.policies.push(policy);
            }
            Kind::Class => {
                let class: BucketClass =
                    serde_json::from_value(json).map_err(|e| self.object(e))?;
                let name = class.metadata.name.clone().unwrap_or_default();
                ValidClass::new(&name, &class.spec)
                    .map_err(|e| self.invalid(Some(&name), e.to_string()))?;
                out.classes.push(class);
            }
            Kind::Namespace => {
                let ns: k8s_openapi::api::core::v1::Namespace =
                    serde_json::from_value(json).map_err(|e| self.object(e))?;
                let name = ns.metadata.name.clone().unwrap_or_default();
                out.namespaces
                    .insert(name, ns.metadata.labels.unwrap_or_default());
            }
        }
        Ok(())
    }
}

fn read(file: &Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
    }
}
