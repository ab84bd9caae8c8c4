//! Link 5, the pure part: does a role's trust policy, as IAM returns it,
//! let this ServiceAccount's token in, and nothing broader?
//!
//! The document is valet-policy's [`PolicyDocument`] (the broker writes and
//! reads the same type) and conditions are judged by valet-policy's
//! evaluator: an operator it does not model, or a key this token's context
//! does not carry (`aws:SourceIp`, tags, another issuer's `sub`), never
//! counts as satisfied. An Allow that rests on one does not admit the
//! token; a Deny with one is taken to apply.

use std::collections::BTreeMap;

use serde_json::json;
use valet_policy::evaluate::{Holds, Request, glob, matches_request, operator_holds};
use valet_policy::{
    ASSUME_WEB_IDENTITY as ACTION, ConditionValues, Effect, PolicyDocument, Principal, Statement,
};

use super::{Findings, Link, LinkResult};

/// What the token presents to STS, and where the provider must live.
#[derive(Debug, Clone)]
pub struct WebIdentity {
    /// `arn:PARTITION:iam::ACCOUNT:oidc-provider/HOST/PATH`, ACCOUNT = the role's.
    pub provider_arn: String,
    /// `HOST/PATH`: the prefix of the condition keys.
    pub provider_url: String,
    pub sub: String,
    pub aud: String,
    pub role_name: String,
}

impl WebIdentity {
    /// The context keys STS derives from this token: `HOST:sub`, `HOST:aud`.
    fn context(&self) -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            (format!("{}:sub", self.provider_url), vec![self.sub.clone()]),
            (format!("{}:aud", self.provider_url), vec![self.aud.clone()]),
        ])
    }
}

/// How one statement's conditions judged the token.
enum Verdict {
    Admit,
    /// Not satisfied, with the first condition that was not.
    Reject(String),
    /// An operator the evaluator does not model: not satisfied for an
    /// Allow, taken to apply for a Deny.
    Unknown(String),
}

/// Link 5 for a parsed policy.
pub fn analyse(policy: &PolicyDocument, want: &WebIdentity) -> LinkResult {
    let mut f = Findings::new(Link::RoleTrust);
    let mut admitting: Vec<(usize, SubScope, bool, bool)> = Vec::new();
    let mut rejections = Vec::new();
    let mut foreign = Vec::new();
    for (i, st) in policy.statement.iter().enumerate() {
        let label = match &st.sid {
            Some(sid) if !sid.is_empty() => format!("statement {i} ({sid})"),
            _ => format!("statement {i}"),
        };
        if !allows_action(st) {
            continue;
        }
        let any_principal = match principal_match(st.principal.as_ref(), want) {
            PrincipalMatch::None => continue,
            PrincipalMatch::Foreign(arns) => {
                foreign.push(format!("{label} names {}", arns.join(", ")));
                continue;
            }
            PrincipalMatch::Any => true,
            PrincipalMatch::Exact => false,
        };
        let verdict = conditions(st, want);
        let deny = st.effect == Effect::Deny;
        match (verdict, deny) {
            (Verdict::Admit | Verdict::Unknown(_), true) => f.fail(
                format!(
                    "{label} denies sts:AssumeRoleWithWebIdentity to {}",
                    want.sub
                ),
                format!(
                    "remove {label} from the trust policy of role {}",
                    want.role_name
                ),
            ),
            (Verdict::Admit, false) => {
                let scope = sub_scope(st, want);
                let has_aud = condition_values(st, &format!("{}:aud", want.provider_url)).is_some();
                admitting.push((i, scope, has_aud, any_principal));
            }
            (Verdict::Reject(why) | Verdict::Unknown(why), false) => {
                rejections.push(format!("{label}: {why}"))
            }
            (Verdict::Reject(_), true) => {}
        }
    }
    let add = fix_statement(want);
    if admitting.is_empty() {
        let mut reason = format!(
            "no statement of role {}'s trust policy allows {ACTION} for {} with sub {}",
            want.role_name, want.provider_arn, want.sub
        );
        if !rejections.is_empty() {
            reason.push_str(&format!(" ({})", rejections.join("; ")));
        }
        if !foreign.is_empty() {
            reason.push_str(&format!(
                " ({}: STS only honours the provider in the role's own account)",
                foreign.join("; ")
            ));
        }
        f.fail(reason, add);
        return f.finish("");
    }
    // Judge the tightest admitting statement: that is what the pod relies on.
    admitting.sort_by_key(|(_, scope, has_aud, any)| (scope.rank(), !has_aud, *any));
    let (i, scope, has_aud, any_principal) = &admitting[0];
    if *any_principal {
        f.warn(
            format!("statement {i} trusts Principal \"*\""),
            format!(
                "name the provider in statement {i}: \"Principal\": {{\"Federated\": \"{}\"}}",
                want.provider_arn
            ),
        );
    }
    match scope {
        SubScope::Exact => {}
        SubScope::Unconditioned => f.warn(
            format!("statement {i} has no {}:sub condition: every ServiceAccount of the cluster can assume role {}", want.provider_url, want.role_name),
            format!("add to statement {i}: {}", sub_condition(want)),
        ),
        SubScope::Wildcard(pattern) => f.warn(
            format!("statement {i} admits sub by StringLike {pattern:?}, which also admits {}", wildcard_scope(pattern, want)),
            format!("replace it in statement {i} by {}", sub_condition(want)),
        ),
    }
    if !has_aud {
        f.warn(
            format!("statement {i} has no {}:aud condition: tokens minted for any audience are accepted", want.provider_url),
            format!("add to statement {i}: \"StringEquals\": {{\"{}:aud\": \"{}\"}}", want.provider_url, want.aud),
        );
    }
    for note in &foreign {
        f.warn(
            format!("{note}: a provider outside the role's account never matches"),
            format!("change that principal to {}", want.provider_arn),
        );
    }
    let pass = format!(
        "statement {i} allows {ACTION} for {} with sub {} and aud {}",
        want.provider_arn, want.sub, want.aud
    );
    f.finish(pass)
}

fn allows_action(st: &Statement) -> bool {
    let request = Request {
        action: ACTION.into(),
        ..Request::default()
    };
    matches_request(st, &request)
}

enum PrincipalMatch {
    None,
    Any,
    Exact,
    Foreign(Vec<String>),
}

fn principal_match(p: Option<&Principal>, want: &WebIdentity) -> PrincipalMatch {
    let federated: &[String] = match p {
        Some(Principal::Any(s)) if s == "*" => return PrincipalMatch::Any,
        Some(Principal::Typed(map)) => match map.get("Federated") {
            Some(ConditionValues(list)) => list,
            None => return PrincipalMatch::None,
        },
        _ => return PrincipalMatch::None,
    };
    if federated.iter().any(|f| f == &want.provider_arn) {
        return PrincipalMatch::Exact;
    }
    let suffix = format!(":oidc-provider/{}", want.provider_url);
    let foreign: Vec<String> = federated
        .iter()
        .filter(|f| f.ends_with(&suffix))
        .cloned()
        .collect();
    if foreign.is_empty() {
        PrincipalMatch::None
    } else {
        PrincipalMatch::Foreign(foreign)
    }
}

/// Every condition, judged by valet-policy's evaluator against this
/// token's context, one key at a time so that a rejection names the
/// condition that failed.
fn conditions(st: &Statement, want: &WebIdentity) -> Verdict {
    let context = want.context();
    let mut unknown = None;
    for (op, keys) in st.condition.iter().flatten() {
        for (key, values) in keys {
            let present = context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_slice());
            match operator_holds(op, present, &values.0) {
                Holds::Yes => {}
                Holds::No => {
                    return Verdict::Reject(match present {
                        None => format!(
                            "{op} on {key}, a key this token does not carry (STS sees {}:sub and {}:aud), is not satisfied",
                            want.provider_url, want.provider_url
                        ),
                        Some(ctx) => format!(
                            "{op} {key} {:?} does not admit {:?}",
                            values.0,
                            ctx.join(", ")
                        ),
                    });
                }
                Holds::Unknown => {
                    unknown.get_or_insert_with(|| {
                        format!("condition operator {op} on {key} is not one this check models, so it is not counted as satisfied")
                    });
                }
            }
        }
    }
    match unknown {
        Some(why) => Verdict::Unknown(why),
        None => Verdict::Admit,
    }
}

/// `ForAnyValue:StringLikeIfExists` -> `StringLike`. The set qualifiers
/// change nothing for the single-valued `sub`.
fn base_operator(op: &str) -> &str {
    let op = op
        .strip_prefix("ForAnyValue:")
        .or_else(|| op.strip_prefix("ForAllValues:"))
        .unwrap_or(op);
    op.strip_suffix("IfExists").unwrap_or(op)
}

/// How narrowly an admitting statement pins `sub`.
enum SubScope {
    Exact,
    Wildcard(String),
    Unconditioned,
}

impl SubScope {
    fn rank(&self) -> u8 {
        match self {
            SubScope::Exact => 0,
            SubScope::Wildcard(_) => 1,
            SubScope::Unconditioned => 2,
        }
    }
}

fn sub_scope(st: &Statement, want: &WebIdentity) -> SubScope {
    let key = format!("{}:sub", want.provider_url).to_ascii_lowercase();
    let mut scope = SubScope::Unconditioned;
    for (op, keys) in st.condition.iter().flatten() {
        let base = base_operator(op);
        for (k, values) in keys {
            if k.to_ascii_lowercase() != key {
                continue;
            }
            match base {
                "StringEquals" | "StringEqualsIgnoreCase" => return SubScope::Exact,
                "StringLike" => {
                    let pattern = values.0.iter().find(|p| glob(p, &want.sub));
                    match pattern {
                        Some(p) if !p.contains(['*', '?']) => return SubScope::Exact,
                        Some(p) => scope = SubScope::Wildcard(p.clone()),
                        None => {}
                    }
                }
                _ => {}
            }
        }
    }
    scope
}

fn condition_values<'a>(st: &'a Statement, key: &str) -> Option<&'a ConditionValues> {
    let key = key.to_ascii_lowercase();
    st.condition
        .iter()
        .flatten()
        .flat_map(|(_, m)| m.iter())
        .find(|(k, _)| k.to_ascii_lowercase() == key)
        .map(|(_, v)| v)
}

fn wildcard_scope(pattern: &str, want: &WebIdentity) -> &'static str {
    let ns_prefix = want
        .sub
        .rsplit_once(':')
        .map(|(p, _)| format!("{p}:"))
        .unwrap_or_default();
    if pattern.starts_with(&ns_prefix) {
        "other ServiceAccounts of the same namespace"
    } else {
        "ServiceAccounts of other namespaces"
    }
}

fn sub_condition(want: &WebIdentity) -> String {
    format!(
        "\"StringEquals\": {{\"{}:sub\": \"{}\"}}",
        want.provider_url, want.sub
    )
}

/// The statement to add, as `aws iam update-assume-role-policy` takes it.
fn fix_statement(want: &WebIdentity) -> String {
    let st = json!({
        "Effect": "Allow",
        "Principal": { "Federated": want.provider_arn },
        "Action": ACTION,
        "Condition": { "StringEquals": {
            format!("{}:sub", want.provider_url): want.sub,
            format!("{}:aud", want.provider_url): want.aud,
        }},
    });
    format!(
        "add this statement to role {}'s trust policy (aws iam update-assume-role-policy --role-name {} --policy-document file://trust.json): {st}",
        want.role_name, want.role_name
    )
}

#[cfg(test)]
#[path = "policy_check_tests.rs"]
mod tests;
