//! The one policy evaluator: trust policies (STS's
//! `AssumeRoleWithWebIdentity`) and identity policies (an IAM call on a
//! resource with context keys), so that tests, the trust checker and
//! `valet broker iam-policy` can prove what a policy admits; moto evaluates
//! neither.
//!
//! Deliberately partial: a condition operator we do not model is never
//! counted as satisfied. It keeps an Allow from applying and lets a Deny
//! apply, so an unknown construct can only make us say "denied".

use std::collections::BTreeMap;

use crate::{Effect, PolicyDocument, Principal, Statement, issuer_host_path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    ImplicitDeny,
    ExplicitDeny,
}

/// One request as IAM or STS evaluates it: the action, the resource (none
/// for a trust policy), the principal (for trust and resource policies:
/// its type, e.g. `Federated`, and its ARN) and the context keys.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub action: String,
    pub resource: Option<String>,
    pub principal: Option<(String, String)>,
    pub context: BTreeMap<String, Vec<String>>,
}

/// The request STS evaluates for `AssumeRoleWithWebIdentity`.
pub type WebIdentityRequest = Request;

impl Request {
    /// An identity-policy request: `action` on `resource`.
    pub fn call(action: &str, resource: &str) -> Request {
        Request {
            action: action.into(),
            resource: Some(resource.into()),
            ..Request::default()
        }
    }

    /// Adds a context key (`iam:PermissionsBoundary`, `aws:SourceIp`, ...).
    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
        self
    }

    /// A web-identity request from a token's claims (`sub`, `aud` as string
    /// or list): the provider it names and the context keys STS derives
    /// (`HOST:sub`, `HOST:aud`, ...).
    pub fn from_claims(provider_arn: &str, issuer: &str, claims: &serde_json::Value) -> Request {
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
        Request {
            action: crate::ASSUME_WEB_IDENTITY.into(),
            resource: None,
            principal: Some(("Federated".into(), provider_arn.into())),
            context,
        }
    }
}

/// How a statement's conditions judge a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    Yes,
    No,
    /// An operator this evaluator does not model. It never lets a request
    /// through: an Allow with it does not apply, a Deny with it does.
    Unknown,
}

/// IAM's evaluation: an explicit Deny wins, then any Allow, else implicit deny.
pub fn evaluate(doc: &PolicyDocument, req: &Request) -> Decision {
    let mut allowed = false;
    for s in &doc.statement {
        if !matches_request(s, req) {
            continue;
        }
        let holds = conditions(s, &req.context);
        match s.effect {
            Effect::Deny if holds != Holds::No => return Decision::ExplicitDeny,
            Effect::Allow if holds == Holds::Yes => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    }
}

/// Action, resource and principal match (conditions aside).
pub fn matches_request(s: &Statement, req: &Request) -> bool {
    let action = |list: &[String]| {
        list.iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &req.action.to_ascii_lowercase()))
    };
    let action_ok = match (&s.not_action, s.action.is_empty()) {
        (Some(not), true) => !action(not),
        (_, false) => action(&s.action),
        (None, true) => false,
    };
    let resource = |list: &[String], r: &str| list.iter().any(|p| glob(p, r));
    let resource_ok = match (&req.resource, &s.resource, &s.not_resource) {
        (None, _, _) => true,
        (Some(r), Some(list), _) => resource(list, r),
        (Some(r), None, Some(not)) => !resource(not, r),
        (Some(_), None, None) => false,
    };
    let principal_ok = match (&req.principal, &s.principal, &s.not_principal) {
        (None, _, _) => true,
        (Some(p), Some(want), _) => principal_matches(want, p),
        (Some(p), None, Some(not)) => !principal_matches(not, p),
        (Some(_), None, None) => false,
    };
    action_ok && resource_ok && principal_ok
}

fn principal_matches(want: &Principal, (kind, id): &(String, String)) -> bool {
    match want {
        Principal::Any(p) => p == "*",
        Principal::Typed(m) => m
            .get(kind)
            .is_some_and(|v| v.0.iter().any(|p| p == "*" || p == id)),
    }
}

/// All of a statement's conditions, as IAM combines them (AND across
/// operators and keys).
pub fn conditions(s: &Statement, context: &BTreeMap<String, Vec<String>>) -> Holds {
    let mut result = Holds::Yes;
    for (op, keys) in s.condition.iter().flatten() {
        for (key, wanted) in keys {
            // Condition keys are case-insensitive in IAM.
            let present = context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_slice());
            match operator_holds(op, present, &wanted.0) {
                Holds::No => return Holds::No,
                Holds::Unknown => result = Holds::Unknown,
                Holds::Yes => {}
            }
        }
    }
    result
}

/// One operator on one key.
pub fn operator_holds(op: &str, present: Option<&[String]>, wanted: &[String]) -> Holds {
    let (set_op, rest) = match op.split_once(':') {
        Some((q @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(q), rest),
        Some(_) => return Holds::Unknown,
        None => (None, op),
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let known = matches!(
        base,
        "StringEquals"
            | "StringNotEquals"
            | "StringEqualsIgnoreCase"
            | "StringNotEqualsIgnoreCase"
            | "StringLike"
            | "StringNotLike"
            | "Null"
            | "Bool"
    );
    if !known {
        return Holds::Unknown;
    }
    let yes = |b: bool| if b { Holds::Yes } else { Holds::No };
    let values = present.filter(|v| !v.is_empty());
    if base == "Null" {
        // Null=true: the key is absent; Null=false: present.
        return yes(wanted.iter().all(|w| (w == "true") == values.is_none()));
    }
    let Some(values) = values else {
        // A missing key fails positive operators and passes negated ones.
        return yes(if_exists || set_op == Some("ForAllValues") || base.starts_with("StringNot"));
    };
    let matches_one = |v: &str| match base {
        "StringEquals" => wanted.iter().any(|w| w == v),
        "StringNotEquals" => !wanted.iter().any(|w| w == v),
        "StringEqualsIgnoreCase" => wanted.iter().any(|w| w.eq_ignore_ascii_case(v)),
        "StringNotEqualsIgnoreCase" => !wanted.iter().any(|w| w.eq_ignore_ascii_case(v)),
        "StringLike" => wanted.iter().any(|w| glob(w, v)),
        "StringNotLike" => !wanted.iter().any(|w| glob(w, v)),
        "Bool" => wanted.iter().any(|w| w.eq_ignore_ascii_case(v)),
        _ => false,
    };
    yes(match set_op {
        Some("ForAllValues") => values.iter().all(|v| matches_one(v)),
        // Single-valued operators on a multi-valued key (a token's aud list)
        // behave like ForAnyValue in STS.
        _ => values.iter().any(|v| matches_one(v)),
    })
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
