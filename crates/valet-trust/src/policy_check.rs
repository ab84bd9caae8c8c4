//! Link 5, the pure part: does a role's trust policy, as IAM returns it,
//! let this ServiceAccount's token in, and nothing broader?
//!
//! Statements and conditions we cannot judge are assumed to hold (they are
//! rare in IRSA trust policies); the parsing lives in [`super::policy_doc`].

use serde_json::{Value, json};

pub use super::policy_doc::{Scalars, Statement, TrustPolicy};
use super::{Findings, Link, LinkResult};

const ACTION: &str = "sts:AssumeRoleWithWebIdentity";

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

/// How one condition block judged the token.
enum Verdict {
    Admit,
    Reject(String),
}

/// Link 5 for a parsed policy.
pub fn analyse(policy: &TrustPolicy, want: &WebIdentity) -> LinkResult {
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
        let deny = st.effect.eq_ignore_ascii_case("Deny");
        match (verdict, deny) {
            (Verdict::Admit, true) => f.fail(
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
            (Verdict::Reject(why), false) => rejections.push(format!("{label}: {why}")),
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
    let matches = |a: &String| glob_match(&a.to_ascii_lowercase(), &ACTION.to_ascii_lowercase());
    match (&st.action, &st.not_action) {
        (Some(actions), _) => actions.iter().any(matches),
        (None, Some(not)) => !not.iter().any(matches),
        (None, None) => false,
    }
}

enum PrincipalMatch {
    None,
    Any,
    Exact,
    Foreign(Vec<String>),
}

fn principal_match(p: Option<&Value>, want: &WebIdentity) -> PrincipalMatch {
    let federated: Vec<String> = match p {
        Some(Value::String(s)) if s == "*" => return PrincipalMatch::Any,
        Some(Value::Object(map)) => match map.get("Federated") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => return PrincipalMatch::None,
        },
        _ => return PrincipalMatch::None,
    };
    if federated.iter().any(|f| f == &want.provider_arn) {
        return PrincipalMatch::Exact;
    }
    let suffix = format!(":oidc-provider/{}", want.provider_url);
    let foreign: Vec<String> = federated
        .into_iter()
        .filter(|f| f.ends_with(&suffix))
        .collect();
    if foreign.is_empty() {
        PrincipalMatch::None
    } else {
        PrincipalMatch::Foreign(foreign)
    }
}

/// Evaluates every condition as STS would for this token's context.
fn conditions(st: &Statement, want: &WebIdentity) -> Verdict {
    let prefix = want.provider_url.to_ascii_lowercase();
    for (op, keys) in &st.condition {
        let (base, if_exists) = split_operator(op);
        for (key, values) in keys {
            let k = key.to_ascii_lowercase();
            let ctx = if k == format!("{prefix}:sub") {
                Some(want.sub.as_str())
            } else if k == format!("{prefix}:aud") {
                Some(want.aud.as_str())
            } else if k.ends_with(":sub") || k.ends_with(":aud") || k.ends_with(":amr") {
                // Another issuer's key: absent from this token's context.
                None
            } else {
                // Keys we cannot see from here (aws:SourceIp, tags...) are
                // assumed to hold; they are rare in IRSA trust policies.
                continue;
            };
            let Some(ctx) = ctx else {
                if if_exists || base.starts_with("StringNot") || base == "Null" {
                    continue;
                }
                return Verdict::Reject(format!(
                    "{op} on {key}, a key this provider's tokens do not have (keys are {}:sub and {}:aud)",
                    want.provider_url, want.provider_url
                ));
            };
            let v = &values.0;
            let ok = match base {
                "StringEquals" => v.iter().any(|x| x == ctx),
                "StringEqualsIgnoreCase" => v.iter().any(|x| x.eq_ignore_ascii_case(ctx)),
                "StringLike" => v.iter().any(|x| glob_match(x, ctx)),
                "StringNotEquals" => !v.iter().any(|x| x == ctx),
                "StringNotEqualsIgnoreCase" => !v.iter().any(|x| x.eq_ignore_ascii_case(ctx)),
                "StringNotLike" => !v.iter().any(|x| glob_match(x, ctx)),
                // Null=false requires presence; our keys are present.
                "Null" => v.iter().all(|x| x == "false"),
                _ => continue,
            };
            if !ok {
                return Verdict::Reject(format!("{op} {key} {v:?} does not admit {ctx:?}"));
            }
        }
    }
    Verdict::Admit
}

/// `ForAnyValue:StringLikeIfExists` -> (`StringLike`, true). The set
/// qualifiers change nothing for the single-valued `sub` and `aud`.
fn split_operator(op: &str) -> (&str, bool) {
    let op = op
        .strip_prefix("ForAnyValue:")
        .or_else(|| op.strip_prefix("ForAllValues:"))
        .unwrap_or(op);
    match op.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (op, false),
    }
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
    for (op, keys) in &st.condition {
        let (base, _) = split_operator(op);
        for (k, values) in keys {
            if k.to_ascii_lowercase() != key {
                continue;
            }
            match base {
                "StringEquals" | "StringEqualsIgnoreCase" => return SubScope::Exact,
                "StringLike" => {
                    let pattern = values.0.iter().find(|p| glob_match(p, &want.sub));
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

fn condition_values<'a>(st: &'a Statement, key: &str) -> Option<&'a Scalars> {
    let key = key.to_ascii_lowercase();
    st.condition
        .values()
        .flat_map(|m| m.iter())
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

/// IAM's `*` (any run) and `?` (one character) match.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
#[path = "policy_check_tests.rs"]
mod tests;
