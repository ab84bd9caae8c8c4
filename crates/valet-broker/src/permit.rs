//! Is a BucketAccess allowed by the platform's BucketAccessPolicies? Pure:
//! the controller and `valet broker apply` pass in the policies and the
//! namespace they read, and get the same answer.
//!
//! Deny by default: a grant is allowed only when some entry of some policy
//! matches its namespace, bucket account, bucket, prefix and access level;
//! policies add up. A BucketAccess is permitted only when every one of its
//! grants is: a partly allowed object gets nothing, so that what a pod can
//! reach never depends on which half of a spec a policy happened to cover.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector, SelectorExt};
use valet_policy::evaluate::glob;

use crate::access_policy::{
    BucketAccessPolicy, BucketAccessPolicySpec, NamespaceSelector, PolicyBucket, SelectorOperator,
};
use crate::crd::Access;

/// The placeholder a prefix template may use.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

/// The namespace of a BucketAccess, as the policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One grant to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub bucket: String,
    /// The BucketClass of a claimed bucket (matched by `bucketClass` entries).
    pub bucket_class: Option<String>,
    /// `""` is the whole bucket.
    pub prefix: String,
    pub access: Access,
}

impl fmt::Display for GrantRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.prefix.is_empty() {
            "(whole bucket)"
        } else {
            &self.prefix
        };
        write!(
            f,
            "bucket {} prefix {prefix} access {}",
            self.bucket,
            access_word(self.access)
        )?;
        if let Some(class) = &self.bucket_class {
            write!(f, " (BucketClass {class})")?;
        }
        Ok(())
    }
}

pub fn access_word(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::Readwrite => "readwrite",
    }
}

/// Every grant is allowed; by these policies (sorted, deduplicated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permitted {
    pub policies: Vec<String>,
}

/// Some grants are allowed by no policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", not_permitted_message(.namespace, .account, .denied))]
pub struct NotPermitted {
    pub namespace: String,
    pub account: String,
    pub denied: Vec<GrantRequest>,
}

fn not_permitted_message(namespace: &str, account: &str, denied: &[GrantRequest]) -> String {
    let grants: Vec<String> = denied.iter().map(ToString::to_string).collect();
    format!(
        "no BucketAccessPolicy allows namespace {namespace} {} in bucket account {account}: ask the platform team for a BucketAccessPolicy that does (kubectl get bucketaccesspolicies)",
        grants.join("; ")
    )
}

/// Judges every grant of one BucketAccess.
pub fn decide(
    policies: &[BucketAccessPolicy],
    default_account: Option<&str>,
    namespace: &NamespaceInfo,
    account: &str,
    grants: &[GrantRequest],
) -> Result<Permitted, NotPermitted> {
    let mut by = Vec::new();
    let mut denied = Vec::new();
    for grant in grants {
        let allowing = policies
            .iter()
            .find(|p| allows(&p.spec, default_account, namespace, account, grant).is_some());
        match allowing {
            Some(p) => by.push(p.metadata.name.clone().unwrap_or_default()),
            None => denied.push(grant.clone()),
        }
    }
    if !denied.is_empty() {
        return Err(NotPermitted {
            namespace: namespace.name.clone(),
            account: account.to_string(),
            denied,
        });
    }
    by.sort();
    by.dedup();
    Ok(Permitted { policies: by })
}

/// The entry of `spec` that allows `grant`, if any.
pub fn allows<'a>(
    spec: &'a BucketAccessPolicySpec,
    default_account: Option<&str>,
    namespace: &NamespaceInfo,
    account: &str,
    grant: &GrantRequest,
) -> Option<&'a PolicyBucket> {
    let policy_account = spec.bucket_account.as_deref().or(default_account)?;
    if policy_account != account || !selects(spec, namespace) {
        return None;
    }
    spec.buckets.iter().find(|b| {
        bucket_matches(b, grant)
            && prefix_allowed(b, namespace, grant)
            && covers(b.max_access, grant.access)
    })
}

/// Both namespace conditions that are given must hold; neither given selects nothing.
fn selects(spec: &BucketAccessPolicySpec, ns: &NamespaceInfo) -> bool {
    if spec.namespaces.is_none() && spec.namespace_selector.is_none() {
        return false;
    }
    let by_name = spec
        .namespaces
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| glob(n, &ns.name)));
    let by_label = spec
        .namespace_selector
        .as_ref()
        .is_none_or(|sel| selector(sel).is_some_and(|s| s.matches(&ns.labels)));
    by_name && by_label
}

/// A selector that does not parse selects nothing.
fn selector(sel: &NamespaceSelector) -> Option<Selector> {
    let label_selector = LabelSelector {
        match_labels: (!sel.match_labels.is_empty()).then(|| sel.match_labels.clone()),
        match_expressions: Some(
            sel.match_expressions
                .iter()
                .map(|r| LabelSelectorRequirement {
                    key: r.key.clone(),
                    operator: operator_word(r.operator).to_string(),
                    values: (!r.values.is_empty()).then(|| r.values.clone()),
                })
                .collect(),
        ),
    };
    Selector::try_from(label_selector).ok()
}

fn operator_word(op: SelectorOperator) -> &'static str {
    match op {
        SelectorOperator::In => "In",
        SelectorOperator::NotIn => "NotIn",
        SelectorOperator::Exists => "Exists",
        SelectorOperator::DoesNotExist => "DoesNotExist",
    }
}

fn bucket_matches(entry: &PolicyBucket, grant: &GrantRequest) -> bool {
    match (&entry.name, &entry.bucket_class) {
        (Some(pattern), _) => glob(pattern, &grant.bucket),
        (None, Some(class)) => grant.bucket_class.as_deref() == Some(class.as_str()),
        (None, None) => false,
    }
}

/// The grant's prefix lies under one of the entry's rendered templates.
fn prefix_allowed(entry: &PolicyBucket, ns: &NamespaceInfo, grant: &GrantRequest) -> bool {
    let Some(templates) = &entry.prefixes else {
        return true;
    };
    templates
        .iter()
        .filter_map(|t| render_prefix(t, &ns.name))
        .any(|allowed| grant.prefix.starts_with(&allowed))
}

/// `{namespace}` replaced; a template with any other placeholder allows nothing.
pub fn render_prefix(template: &str, namespace: &str) -> Option<String> {
    let rendered = template.replace(NAMESPACE_PLACEHOLDER, namespace);
    (!rendered.contains(['{', '}', '*', '?'])).then_some(rendered)
}

/// `max` is at least `want`: readwrite covers both, read and write only themselves.
pub fn covers(max: Access, want: Access) -> bool {
    max == Access::Readwrite || max == want
}

/// Problems that make (part of) a policy match nothing; `broker apply` refuses
/// such a file, the controller reports them in an Event and skips the part.
pub fn check_policy(spec: &BucketAccessPolicySpec) -> Result<(), String> {
    if spec.namespaces.is_none() && spec.namespace_selector.is_none() {
        return Err("spec: give namespaces (names or globs) or a namespaceSelector ({} selects every namespace)".into());
    }
    if let Some(sel) = &spec.namespace_selector
        && selector(sel).is_none()
    {
        return Err("spec.namespaceSelector: a matchExpressions entry is invalid (In and NotIn need values, Exists and DoesNotExist take none)".into());
    }
    if let Some(a) = &spec.bucket_account
        && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "spec.bucketAccount {a:?} is not a 12-digit AWS account id"
        ));
    }
    if spec.buckets.is_empty() {
        return Err("spec.buckets is empty: list at least one bucket or bucketClass".into());
    }
    for (i, b) in spec.buckets.iter().enumerate() {
        if b.name.is_some() == b.bucket_class.is_some() {
            return Err(format!(
                "spec.buckets[{i}]: give exactly one of name and bucketClass"
            ));
        }
        for (j, t) in b.prefixes.iter().flatten().enumerate() {
            if render_prefix(t, "ns").is_none() {
                return Err(format!(
                    "spec.buckets[{i}].prefixes[{j}] {t:?}: only the placeholder {NAMESPACE_PLACEHOLDER} is known, and no wildcards (a grant's prefix must start with the rendered template)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, spec: serde_json::Value) -> BucketAccessPolicy {
        let spec: BucketAccessPolicySpec = serde_json::from_value(spec).expect("policy spec");
        check_policy(&spec).expect("valid policy");
        BucketAccessPolicy::new(name, spec)
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn grant(bucket: &str, prefix: &str, access: Access) -> GrantRequest {
        GrantRequest {
            bucket: bucket.into(),
            bucket_class: None,
            prefix: prefix.into(),
            access,
        }
    }

    const ACCT: &str = "222222222222";

    fn team_buckets() -> BucketAccessPolicy {
        policy(
            "team-buckets",
            serde_json::json!({"namespaces": ["team-*"], "bucketAccount": ACCT,
                "buckets": [{"name": "team-a-bucket", "prefixes": ["{namespace}/"], "maxAccess": "readwrite"}]}),
        )
    }

    #[test]
    fn a_team_gets_its_prefix_and_not_another_teams() {
        let p = [team_buckets()];
        let ok = decide(
            &p,
            None,
            &ns("team-a", &[]),
            ACCT,
            &[grant("team-a-bucket", "team-a/", Access::Readwrite)],
        );
        assert_eq!(ok.unwrap().policies, ["team-buckets"]);
        let refused = decide(
            &p,
            None,
            &ns("team-b", &[]),
            ACCT,
            &[grant("team-a-bucket", "team-a/", Access::Readwrite)],
        )
        .unwrap_err();
        let msg = refused.to_string();
        for part in [
            "namespace team-b",
            "bucket team-a-bucket",
            "prefix team-a/",
            "access readwrite",
        ] {
            assert!(msg.contains(part), "{msg}");
        }
        // The whole bucket is not under team-a/; another account is not this policy's.
        assert!(
            decide(
                &p,
                None,
                &ns("team-a", &[]),
                ACCT,
                &[grant("team-a-bucket", "", Access::Read)]
            )
            .is_err()
        );
        assert!(
            decide(
                &p,
                None,
                &ns("team-a", &[]),
                "333333333333",
                &[grant("team-a-bucket", "team-a/", Access::Read)]
            )
            .is_err()
        );
        // No policy at all: nothing is allowed.
        assert!(
            decide(
                &[],
                Some(ACCT),
                &ns("team-a", &[]),
                ACCT,
                &[grant("team-a-bucket", "team-a/", Access::Read)]
            )
            .is_err()
        );
    }

    #[test]
    fn max_access_globs_and_policies_add_up() {
        let readers = policy(
            "readers",
            serde_json::json!({"namespaces": ["analytics"], "buckets": [{"name": "acme-*", "maxAccess": "read"}]}),
        );
        let writers = policy(
            "writers",
            serde_json::json!({"namespaces": ["analytics"], "buckets": [{"name": "acme-uploads", "maxAccess": "write"}]}),
        );
        let a = ns("analytics", &[]);
        // The policy's account defaults to the broker's default bucket account.
        let read = grant("acme-media", "", Access::Read);
        assert!(
            decide(
                std::slice::from_ref(&readers),
                Some(ACCT),
                &a,
                ACCT,
                std::slice::from_ref(&read)
            )
            .is_ok()
        );
        assert!(
            decide(
                std::slice::from_ref(&readers),
                None,
                &a,
                ACCT,
                std::slice::from_ref(&read)
            )
            .is_err()
        );
        let over = grant("acme-media", "", Access::Readwrite);
        assert!(
            decide(
                std::slice::from_ref(&readers),
                Some(ACCT),
                &a,
                ACCT,
                &[over]
            )
            .is_err()
        );
        let both = [read, grant("acme-uploads", "", Access::Write)];
        assert!(decide(std::slice::from_ref(&readers), Some(ACCT), &a, ACCT, &both).is_err());
        let ok = decide(&[readers, writers], Some(ACCT), &a, ACCT, &both).unwrap();
        assert_eq!(ok.policies, ["readers", "writers"]);
    }

    #[test]
    fn label_selectors_follow_relabelling() {
        let tenants = policy(
            "tenants",
            serde_json::json!({"namespaceSelector": {"matchLabels": {"tenant": "true"}},
                "buckets": [{"name": "shared", "prefixes": ["{namespace}/", "public/"], "maxAccess": "readwrite"}]}),
        );
        let p = [tenants];
        let g = [grant("shared", "blue/data/", Access::Write)];
        assert!(decide(&p, Some(ACCT), &ns("blue", &[("tenant", "true")]), ACCT, &g).is_ok());
        assert!(
            decide(
                &p,
                Some(ACCT),
                &ns("blue", &[("tenant", "false")]),
                ACCT,
                &g
            )
            .is_err()
        );
        assert!(
            decide(
                &p,
                Some(ACCT),
                &ns("blue", &[]),
                ACCT,
                &[grant("shared", "public/x", Access::Read)]
            )
            .is_err()
        );
        assert!(decide(&p, Some(ACCT), &ns("red", &[("tenant", "true")]), ACCT, &g).is_err());
    }

    #[test]
    fn bucket_class_entries_match_claimed_buckets_only() {
        let p = [policy(
            "claims",
            serde_json::json!({"namespaces": ["*"], "buckets": [{"bucketClass": "standard", "maxAccess": "readwrite"}]}),
        )];
        let mut claimed = grant("prod-team-a-media-1a2b", "", Access::Readwrite);
        assert!(decide(&p, Some(ACCT), &ns("team-a", &[]), ACCT, &[claimed.clone()]).is_err());
        claimed.bucket_class = Some("standard".into());
        assert!(decide(&p, Some(ACCT), &ns("team-a", &[]), ACCT, &[claimed]).is_ok());
    }

    #[test]
    fn policies_that_match_nothing_are_refused_with_the_field() {
        let bad = |v: serde_json::Value| {
            let spec: BucketAccessPolicySpec = serde_json::from_value(v).unwrap();
            check_policy(&spec).unwrap_err()
        };
        assert!(
            bad(serde_json::json!({"buckets": [{"name": "x", "maxAccess": "read"}]}))
                .contains("namespaces")
        );
        assert!(bad(serde_json::json!({"namespaces": ["a"], "buckets": [{"name": "x", "prefixes": ["{ns}/"], "maxAccess": "read"}]}))
            .contains("spec.buckets[0].prefixes[0]"));
        assert!(
            bad(serde_json::json!({"namespaces": ["a"], "buckets": [{"maxAccess": "read"}]}))
                .contains("exactly one")
        );
        let typo = serde_json::from_value::<BucketAccessPolicySpec>(
            serde_json::json!({"namespaces": ["a"], "buckets": [{"name": "x", "maxAcess": "read"}]}),
        );
        assert!(typo.is_err());
    }
}
