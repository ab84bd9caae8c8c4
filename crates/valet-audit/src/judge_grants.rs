//! Grants no BucketAccessPolicy allows, and broker roles no BucketAccess
//! explains. Pure: the broker's own permit logic (`valet_broker::permit`)
//! judges the grants, so the audit and the broker cannot disagree.

use std::collections::{BTreeMap, BTreeSet};

use valet_broker::guard::grant_requests;
use valet_broker::permit::{self, NamespaceInfo};
use valet_broker::provision::{INLINE_POLICY_NAME, TAG_BUCKET_ACCESS, TAG_NAMESPACE};
use valet_core::arn::RoleArn;

use crate::facts::{BucketAccessFacts, Facts};
use crate::judge::{Finding, Kind, Severity};

fn account_of(arn: &str) -> Option<String> {
    RoleArn::parse(arn).ok().map(|a| a.account_id().to_string())
}

/// The broker's default bucket account, as its BucketAccesses show it: one
/// that names no account and has a role got the default.
fn default_account(bas: &[BucketAccessFacts]) -> Option<String> {
    bas.iter()
        .filter(|b| b.spec.as_ref().is_some_and(|s| s.bucket_account.is_none()))
        .find_map(|b| b.role_arn.as_deref().and_then(account_of))
}

/// BucketAccesses whose grants no policy allows.
pub fn outside_policies(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(policies) = &facts.policies else {
        return;
    };
    let default = default_account(&facts.bucket_accesses);
    for ba in &facts.bucket_accesses {
        let Some(spec) = &ba.spec else { continue };
        let account = spec
            .bucket_account
            .clone()
            .or_else(|| ba.role_arn.as_deref().and_then(account_of))
            .or_else(|| default.clone());
        let Some(account) = account else { continue };
        let namespace = NamespaceInfo {
            name: ba.namespace.clone(),
            labels: facts
                .namespace_labels
                .get(&ba.namespace)
                .cloned()
                .unwrap_or_default(),
        };
        let decision = permit::decide(
            policies,
            default.as_deref(),
            &namespace,
            &account,
            &grant_requests(spec),
        );
        if let Err(not_permitted) = decision {
            out.push(Finding {
                severity: Severity::Error,
                kind: Kind::OutsidePolicy,
                namespace: ba.namespace.clone(),
                object: format!("bucketaccess/{}", ba.name),
                reason: not_permitted.to_string(),
                fix: format!(
                    "narrow spec.buckets of kubectl -n {} edit bucketaccess {}, or have the platform team allow it in a BucketAccessPolicy",
                    ba.namespace, ba.name
                ),
            });
        }
    }
}

/// Broker roles (by their tags) that no BucketAccess accounts for.
pub fn unexplained_roles(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(roles) = &facts.roles else { return };
    let by_arn: BTreeSet<&str> = facts
        .bucket_accesses
        .iter()
        .filter_map(|b| b.role_arn.as_deref())
        .collect();
    let by_name: BTreeMap<(&str, &str), ()> = facts
        .bucket_accesses
        .iter()
        .map(|b| ((b.namespace.as_str(), b.name.as_str()), ()))
        .collect();
    for role in roles {
        let tag = |k: &str| role.tags.get(k).map(String::as_str).unwrap_or_default();
        let (ns, ba) = (tag(TAG_NAMESPACE), tag(TAG_BUCKET_ACCESS));
        if by_arn.contains(role.arn.as_str()) || by_name.contains_key(&(ns, ba)) {
            continue;
        }
        out.push(Finding {
            severity: Severity::Warning,
            kind: Kind::UnexplainedRole,
            namespace: ns.to_string(),
            object: format!("role/{}", role.name),
            reason: format!(
                "role {} in bucket account {} carries the broker's tags for BucketAccess {ns}/{ba}, which does not exist: the role keeps whatever its inline policy grants",
                role.arn, role.account
            ),
            fix: format!(
                "recreate BucketAccess {ns}/{ba} if it is still wanted, else delete the role: aws iam delete-role-policy --role-name {} --policy-name {INLINE_POLICY_NAME} && aws iam delete-role --role-name {}",
                role.name, role.name
            ),
        });
    }
}
