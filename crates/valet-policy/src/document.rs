//! IAM policy documents as typed values: trust policies and identity
//! (access) policies. Pure: no I/O, no clock.
//!
//! One tolerant parser for every policy we read: the documents the broker
//! writes, trust policies as IAM returns them (`Statement` object or array,
//! `Action` string or array, condition values of any scalar type) and the
//! negated forms (`NotAction`, `NotResource`, `NotPrincipal`). Documents
//! read back from IAM are compared in [`PolicyDocument::normalized`] form,
//! so that `"Action": "x"` and `"Action": ["x"]`, or statements in another
//! order, are not "drift", while anything we did not write (a `NotAction`,
//! an extra statement) is.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const POLICY_VERSION: &str = "2012-10-17";
/// IAM's default quota for a trust policy, in characters without whitespace.
pub const MAX_TRUST_POLICY: usize = 2048;
/// IAM's limit for all inline policies of a role together.
pub const MAX_INLINE_POLICIES: usize = 10_240;
/// The action a web-identity trust policy allows.
pub const ASSUME_WEB_IDENTITY: &str = "sts:AssumeRoleWithWebIdentity";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    #[serde(default)]
    pub version: String,
    #[serde(with = "one_or_many")]
    pub statement: Vec<Statement>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// Empty when the statement uses `NotAction`.
    #[serde(default, with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub action: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub resource: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_principal: Option<Principal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub not_action: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_one_or_many"
    )]
    pub not_resource: Option<Vec<String>>,
    /// operator -> condition key -> values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<BTreeMap<String, BTreeMap<String, ConditionValues>>>,
}

impl Statement {
    /// A statement with only an effect and actions; set the other fields as needed.
    pub fn new(effect: Effect, action: &[&str]) -> Statement {
        Statement {
            sid: None,
            effect,
            principal: None,
            action: action.iter().map(|a| a.to_string()).collect(),
            resource: None,
            not_principal: None,
            not_action: None,
            not_resource: None,
            condition: None,
        }
    }
}

/// `"*"` or `{"Federated": [...], "AWS": [...], ...}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(untagged)]
pub enum Principal {
    Any(String),
    Typed(BTreeMap<String, ConditionValues>),
}

/// One or several strings; IAM accepts booleans and numbers as values too.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConditionValues(pub Vec<String>);

impl Serialize for ConditionValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        one_or_many::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for ConditionValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            S(String),
            B(bool),
            N(serde_json::Number),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Values {
            One(Scalar),
            Many(Vec<Scalar>),
        }
        let text = |s: Scalar| match s {
            Scalar::S(s) => s,
            Scalar::B(b) => b.to_string(),
            Scalar::N(n) => n.to_string(),
        };
        Ok(ConditionValues(match Values::deserialize(d)? {
            Values::One(s) => vec![text(s)],
            Values::Many(v) => v.into_iter().map(text).collect(),
        }))
    }
}

impl ConditionValues {
    pub fn one(v: impl Into<String>) -> Self {
        ConditionValues(vec![v.into()])
    }
}

mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany<T> {
            Many(Vec<T>),
            One(T),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        })
    }
}

mod opt_one_or_many {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::one_or_many::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        super::one_or_many::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "the {kind} policy is {len} characters; IAM allows {max} (grant fewer buckets or shorter prefixes)"
    )]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("policy document is not a JSON policy we understand: {0}")]
    Parse(String),
}

impl PolicyDocument {
    /// Parses a policy as IAM returns it (URL-encoded JSON) or as plain JSON.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let decoded = if text.trim_start().starts_with('{') {
            text.to_string()
        } else {
            urlencoding::decode(text)
                .map_err(|e| PolicyError::Parse(e.to_string()))?
                .into_owned()
        };
        serde_json::from_str(&decoded).map_err(|e| PolicyError::Parse(e.to_string()))
    }

    /// Compact JSON, the form we send and whose length IAM counts.
    pub fn to_json(&self) -> String {
        // Serializing plain strings and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Same meaning, canonical order: for comparing what IAM holds with what we want.
    pub fn normalized(&self) -> PolicyDocument {
        let mut doc = self.clone();
        for s in &mut doc.statement {
            s.action.sort();
            s.action.dedup();
            for list in [&mut s.resource, &mut s.not_action, &mut s.not_resource]
                .into_iter()
                .flatten()
            {
                list.sort();
                list.dedup();
            }
            if let Some(Principal::Typed(m)) = &mut s.principal {
                m.values_mut().for_each(|v| v.0.sort());
            }
            if let Some(c) = &mut s.condition {
                c.values_mut()
                    .flat_map(|m| m.values_mut())
                    .for_each(|v| v.0.sort());
            }
            // Sids are labels; a console edit that drops them changes nothing.
            s.sid = None;
        }
        doc.statement.sort();
        doc
    }

    pub fn same_as(&self, other: &PolicyDocument) -> bool {
        self.normalized() == other.normalized()
    }

    /// Refuses a document longer than `max` characters (IAM's quotas).
    pub fn check_size(&self, kind: &'static str, max: usize) -> Result<(), PolicyError> {
        let len = self.to_json().len();
        if len > max {
            return Err(PolicyError::TooLarge { kind, len, max });
        }
        Ok(())
    }
}

/// The partition of a region: `aws`, `aws-cn`, `aws-us-gov`, ...
pub fn partition_for_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else if region.starts_with("us-isof-") {
        "aws-iso-f"
    } else {
        "aws"
    }
}

/// The issuer as IAM names providers and condition keys: no scheme, no trailing slash.
pub fn issuer_host_path(issuer: &str) -> &str {
    issuer
        .strip_prefix("https://")
        .unwrap_or(issuer)
        .trim_end_matches('/')
}

pub fn oidc_provider_arn(partition: &str, account: &str, issuer: &str) -> String {
    format!(
        "arn:{partition}:iam::{account}:oidc-provider/{}",
        issuer_host_path(issuer)
    )
}

/// The `sub` claim of a ServiceAccount token.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// Trust for exactly one ServiceAccount and one audience, through the
/// cluster's OIDC provider in the bucket account.
pub fn trust_policy(
    provider_arn: &str,
    issuer: &str,
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> Result<PolicyDocument, PolicyError> {
    let host = issuer_host_path(issuer);
    let equals = BTreeMap::from([
        (
            format!("{host}:sub"),
            ConditionValues::one(service_account_subject(namespace, service_account)),
        ),
        (format!("{host}:aud"), ConditionValues::one(audience)),
    ]);
    let doc = PolicyDocument {
        version: POLICY_VERSION.into(),
        statement: vec![Statement {
            principal: Some(Principal::Typed(BTreeMap::from([(
                "Federated".to_string(),
                ConditionValues::one(provider_arn),
            )]))),
            condition: Some(BTreeMap::from([("StringEquals".to_string(), equals)])),
            ..Statement::new(Effect::Allow, &[ASSUME_WEB_IDENTITY])
        }],
    };
    doc.check_size("trust", MAX_TRUST_POLICY)?;
    Ok(doc)
}
