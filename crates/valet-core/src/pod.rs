//! The lean view of a Pod that the mutation needs.
//!
//! The webhook sits in every pod creation of a cluster, so it reads only the
//! fields that decide the patch; the rest of the (possibly large) object is
//! skipped without being built. Fields that are absent are `None`, not
//! empty: JSON Patch must `add` a missing array but append to an existing
//! one. These serde derives are the one decoder of the webhook (JSON),
//! `valet mutate` (YAML) and the tests.
//!
//! Strings are [`Str`]: a `Cow<'a, str>` borrowed from the body when the
//! JSON string has no escapes, owned when it has (a
//! `last-applied-configuration` annotation, say). It is a newtype because
//! serde's own `Cow` impl never borrows once wrapped in `Option`, `Vec` or a
//! map (serde-rs/serde#1497), which is where most of these strings are.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

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

/// A JSON string, borrowed from the input when it can be.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Str<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

impl From<String> for Str<'_> {
    fn from(s: String) -> Self {
        Str(Cow::Owned(s))
    }
}

impl Serialize for Str<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Str<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Str(Cow::Owned(v)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

/// A Kubernetes `map[string]string` (labels, annotations, node selector) as
/// the pairs in document order: a pod has a handful of entries, and a short
/// vector is cheaper to build and search than a tree. As in Go, the last of
/// duplicated keys wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrMap<'a>(pub Vec<(Str<'a>, Str<'a>)>);

impl StrMap<'_> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a, K: Into<Str<'a>>, V: Into<Str<'a>>> FromIterator<(K, V)> for StrMap<'a> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        StrMap(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Serialize for StrMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = StrMap<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings to strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(access.size_hint().unwrap_or(4).min(64));
        while let Some(pair) = access.next_entry()? {
            pairs.push(pair);
        }
        Ok(StrMap(pairs))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StrMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod str_tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_owns_escaped_ones() {
        let body = br#"{"a": "plain", "b": "with \"quotes\""}"#;
        let map: StrMap<'_> = serde_json::from_slice(body).unwrap();
        assert!(matches!(map.0[0].1.0, Cow::Borrowed("plain")));
        assert!(matches!(&map.0[1].1.0, Cow::Owned(s) if s == "with \"quotes\""));
        assert_eq!(map.get("b"), Some("with \"quotes\""));
        assert_eq!(map.get("c"), None);
    }

    #[test]
    fn last_duplicate_key_wins_and_yaml_works() {
        let map: StrMap<'_> = serde_json::from_str(r#"{"k": "1", "k": "2"}"#).unwrap();
        assert_eq!(map.get("k"), Some("2"));
        let yaml = "k: v\nother: \"x\"\n";
        let map: StrMap<'_> = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(map.get("other"), Some("x"));
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"k":"v","other":"x"}"#
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_str::<StrMap<'_>>(r#"{"k": 1}"#).is_err());
        assert!(serde_json::from_str::<Str<'_>>("[]").is_err());
    }
}
