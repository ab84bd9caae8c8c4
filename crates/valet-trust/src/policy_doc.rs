//! Trust policy documents as IAM returns them, parsed tolerantly: `Statement`
//! object or array, `Principal` `"*"` or a map of string-or-array, `Action`
//! string or array, condition values of any scalar type. Unknown fields are
//! ignored: [`super::policy_check`] judges what it understands and says so.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct TrustPolicy {
    #[serde(deserialize_with = "one_or_many")]
    pub statement: Vec<Statement>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    #[serde(default)]
    pub sid: Option<String>,
    pub effect: String,
    #[serde(default)]
    pub principal: Option<Value>,
    #[serde(default, deserialize_with = "opt_strings")]
    pub action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_strings")]
    pub not_action: Option<Vec<String>>,
    /// operator -> key -> values (scalars kept as strings).
    #[serde(default)]
    pub condition: BTreeMap<String, BTreeMap<String, Scalars>>,
}

#[derive(Debug, Clone, Default)]
pub struct Scalars(pub Vec<String>);

impl<'de> Deserialize<'de> for Scalars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let scalar = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Ok(Scalars(match &v {
            Value::Array(a) => a.iter().map(scalar).collect(),
            other => vec![scalar(other)],
        }))
    }
}

fn one_or_many<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(t) => vec![t],
    })
}

fn opt_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    one_or_many::<D, String>(d).map(Some)
}

impl TrustPolicy {
    /// Parses `AssumeRolePolicyDocument` from GetRole (URL-encoded JSON) or
    /// plain JSON.
    pub fn parse(document: &str) -> Result<TrustPolicy, String> {
        let decoded = if document.trim_start().starts_with('{') {
            document.to_string()
        } else {
            urlencoding::decode(document)
                .map_err(|e| format!("not URL-encoded UTF-8: {e}"))?
                .into_owned()
        };
        serde_json::from_str(&decoded).map_err(|e| e.to_string())
    }
}
