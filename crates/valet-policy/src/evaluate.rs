//! Evaluates a trust policy against a web-identity request the way STS
//! does for `AssumeRoleWithWebIdentity`, so that tests (and the broker) can
//! prove a policy admits one ServiceAccount's token and nothing else; moto
//! does not evaluate trust policies.
//!
//! Deliberately partial: operators we do not model never match, so an
//! unknown construct can only make us say "denied", never "allowed".

use std::collections::BTreeMap;

use crate::{ConditionValues, Effect, PolicyDocument, Principal, Statement, issuer_host_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    ImplicitDeny,
    ExplicitDeny,
}

/// A web-identity request: the provider it names and the context keys STS
/// derives from the token (`HOST:sub`, `HOST:aud`, ...).
#[derive(Debug, Clone)]
pub struct WebIdentityRequest {
    pub action: String,
    pub provider_arn: String,
    pub context: BTreeMap<String, Vec<String>>,
}

impl WebIdentityRequest {
    /// Builds the request from a token's claims (`sub`, `aud` as string or list).
    pub fn from_claims(provider_arn: &str, issuer: &str, claims: &serde_json::Value) -> Self {
        let host = issuer_host_path(issuer);
        let mut context = BTreeMap::new();
        for claim in ["sub", "aud", "amr", "azp"] {
            let values: Vec<String> = match claims.get(claim) {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => continue,
            };
            context.insert(format!("{host}:{claim}"), values);
        }
        WebIdentityRequest {
            action: crate::ASSUME_WEB_IDENTITY.into(),
            provider_arn: provider_arn.into(),
            context,
        }
    }
}

pub fn evaluate(doc: &PolicyDocument, req: &WebIdentityRequest) -> Decision {
    let mut allowed = false;
    for s in &doc.statement {
        if !applies(s, req) {
            continue;
        }
        match s.effect {
            Effect::Deny => return Decision::ExplicitDeny,
            Effect::Allow => allowed = true,
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    }
}

fn applies(s: &Statement, req: &WebIdentityRequest) -> bool {
    let action = s
        .action
        .iter()
        .any(|a| glob(&a.to_ascii_lowercase(), &req.action.to_ascii_lowercase()));
    let principal = match &s.principal {
        Some(Principal::Any(p)) => p == "*",
        Some(Principal::Typed(m)) => m
            .get("Federated")
            .is_some_and(|v| v.0.iter().any(|p| p == "*" || p == &req.provider_arn)),
        None => false,
    };
    action
        && principal
        && s.condition
            .as_ref()
            .is_none_or(|c| conditions_hold(c, &req.context))
}

fn conditions_hold(
    conditions: &BTreeMap<String, BTreeMap<String, ConditionValues>>,
    context: &BTreeMap<String, Vec<String>>,
) -> bool {
    conditions.iter().all(|(op, keys)| {
        keys.iter().all(|(key, wanted)| {
            // Condition keys are case-insensitive in IAM.
            let present = context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_slice());
            operator_holds(op, present, &wanted.0)
        })
    })
}

fn operator_holds(op: &str, present: Option<&[String]>, wanted: &[String]) -> bool {
    let (set_op, rest) = match op.split_once(':') {
        Some((q @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(q), rest),
        Some(_) => return false,
        None => (None, op),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let Some(values) = present.filter(|v| !v.is_empty()) else {
        // A missing key fails positive operators and passes negated ones.
        return if_exists || set_op == Some("ForAllValues") || base.starts_with("StringNot");
    };
    let matches_one = |v: &str| -> Option<bool> {
        Some(match base {
            "StringEquals" => wanted.iter().any(|w| w == v),
            "StringNotEquals" => !wanted.iter().any(|w| w == v),
            "StringEqualsIgnoreCase" => wanted.iter().any(|w| w.eq_ignore_ascii_case(v)),
            "StringNotEqualsIgnoreCase" => !wanted.iter().any(|w| w.eq_ignore_ascii_case(v)),
            "StringLike" => wanted.iter().any(|w| glob(w, v)),
            "StringNotLike" => !wanted.iter().any(|w| glob(w, v)),
            _ => return None,
        })
    };
    let results: Option<Vec<bool>> = values.iter().map(|v| matches_one(v)).collect();
    let Some(results) = results else { return false };
    match set_op {
        Some("ForAllValues") => results.iter().all(|b| *b),
        // Single-valued operators on a multi-valued key (a token's aud list)
        // behave like ForAnyValue in STS.
        _ => results.iter().any(|b| *b),
    }
}

/// IAM's `*` / `?` wildcards, nothing else.
pub fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = vi;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
