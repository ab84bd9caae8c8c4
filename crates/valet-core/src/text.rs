//! Strings and string maps that borrow from the request body.
//!
//! The webhook reads a few dozen strings out of every AdmissionReview. When a
//! JSON string has no escapes its bytes in the body are already the text, so
//! [`Str`] points at them instead of allocating; a string with escapes (a
//! `last-applied-configuration` annotation, say) is decoded into an owned
//! copy. Parsing from YAML or a `serde_json::Value` always gives owned text.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

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
mod tests {
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
