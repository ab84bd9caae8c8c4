//! `valet broker iam-policy`: the least-privilege identity policy of the
//! broker's provisioning role in one bucket account (pure).
//!
//! AWS's delegated-administration pattern: role writes only under the
//! broker's role path and only with `iam:PermissionsBoundary` equal to the
//! account's boundary, so whoever takes over the broker can never mint a
//! role stronger than the boundary; removing the boundary is denied; no
//! `iam:PassRole`; every resource names the account (no wildcard account).

use std::collections::BTreeMap;

use valet_policy::{
    ConditionValues, Effect, POLICY_VERSION, PolicyDocument, Statement, partition_for_region,
};

use crate::config::BrokerConfig;
use crate::naming::{NamingError, role_path};

/// The condition key IAM sets to the boundary a request attaches.
pub const BOUNDARY_KEY: &str = "iam:PermissionsBoundary";

/// Role writes that carry the boundary (IAM evaluates `iam:PermissionsBoundary` on them).
pub const BOUNDED_WRITES: &[&str] = &[
    "iam:CreateRole",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
];

/// Reads and writes on the broker's own roles that IAM does not condition on a boundary.
pub const ROLE_CALLS: &[&str] = &[
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:TagRole",
    "iam:DeleteRole",
    // `valet audit`: the roles under the path and their ownership tags.
    "iam:ListRoles",
    "iam:ListRoleTags",
];

pub const PROVIDER_READS: &[&str] = &["iam:GetOpenIDConnectProvider"];

/// Only with `createOidcProvider`.
pub const PROVIDER_WRITES: &[&str] = &[
    "iam:CreateOpenIDConnectProvider",
    "iam:AddClientIDToOpenIDConnectProvider",
    "iam:UpdateOpenIDConnectProviderThumbprint",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IamPolicyError {
    #[error(
        "no bucket account: pass --bucket-account ID, or set defaultBucketAccount in the broker config"
    )]
    NoAccount,
    #[error(
        "bucket account {0} is not in the broker config: add bucketAccounts.\"{0}\" with its permissionsBoundaryArn"
    )]
    Unknown(String),
    #[error(
        "bucketAccounts.\"{0}\" has no permissionsBoundaryArn: the provisioning role may only create roles with a boundary (set bucketAccounts.\"{0}\".permissionsBoundaryArn)"
    )]
    NoBoundary(String),
    #[error(transparent)]
    Naming(#[from] NamingError),
}

/// The ARN pattern of every role the broker manages in `account`.
pub fn managed_roles(partition: &str, account: &str, path: &str) -> String {
    format!("arn:{partition}:iam::{account}:role{path}*")
}

/// The buckets BucketClaims may make, by name: `{cluster}-*`, the default
/// `nameTemplate`'s prefix (a class with another template needs its own
/// prefix added to the provisioning role).
pub fn claimed_buckets(partition: &str, cluster: &str) -> String {
    format!("arn:{partition}:s3:::{cluster}-*")
}

/// The provisioning role's policy for `account` (the default bucket account when `None`).
pub fn provisioning_policy(
    cfg: &BrokerConfig,
    account: Option<&str>,
) -> Result<(String, PolicyDocument), IamPolicyError> {
    let account = account
        .or(cfg.default_bucket_account.as_deref())
        .ok_or(IamPolicyError::NoAccount)?;
    let known = cfg.default_bucket_account.as_deref() == Some(account)
        || cfg.bucket_accounts.contains_key(account);
    if !known {
        return Err(IamPolicyError::Unknown(account.to_string()));
    }
    let boundary = cfg
        .account(account)
        .and_then(|a| a.permissions_boundary_arn.clone())
        .ok_or_else(|| IamPolicyError::NoBoundary(account.to_string()))?;
    let partition = partition_for_region(cfg.bucket_region(account));
    let path = role_path(&cfg.role_path, &cfg.cluster_name)?;
    let roles = managed_roles(partition, account, &path);
    let statement = |sid: &str, effect, actions: &[&str], resource: String, condition| Statement {
        sid: Some(sid.to_string()),
        resource: Some(vec![resource]),
        condition,
        ..Statement::new(effect, actions)
    };
    let with_boundary = BTreeMap::from([(
        "StringEquals".to_string(),
        BTreeMap::from([(BOUNDARY_KEY.to_string(), ConditionValues::one(&boundary))]),
    )]);
    let providers = format!("arn:{partition}:iam::{account}:oidc-provider/*");
    let mut provider_calls: Vec<&str> = PROVIDER_READS.to_vec();
    if cfg.create_oidc_provider {
        provider_calls.extend_from_slice(PROVIDER_WRITES);
    }
    let doc = PolicyDocument {
        version: POLICY_VERSION.into(),
        statement: vec![
            statement(
                "RoleWritesOnlyWithTheBoundary",
                Effect::Allow,
                BOUNDED_WRITES,
                roles.clone(),
                Some(with_boundary),
            ),
            statement(
                "OwnRolesUnderThePath",
                Effect::Allow,
                ROLE_CALLS,
                roles.clone(),
                None,
            ),
            statement(
                "NeverRemoveTheBoundary",
                Effect::Deny,
                &["iam:DeleteRolePermissionsBoundary"],
                format!("arn:{partition}:iam::{account}:role/*"),
                None,
            ),
            statement(
                "ClusterOidcProvider",
                Effect::Allow,
                &provider_calls,
                providers,
                None,
            ),
            // S3 cannot condition bucket-level calls on the bucket's own tags
            // (aws:ResourceTag is not evaluated for them), so claimed buckets
            // are scoped by name: the default nameTemplate starts with the
            // cluster name; the broker checks the ownership tags before any change.
            statement(
                "ClaimedBucketsByName",
                Effect::Allow,
                &valet_buckets::iam_policy::BUCKET_ACTIONS,
                claimed_buckets(partition, &cfg.cluster_name),
                None,
            ),
        ],
    };
    Ok((account.to_string(), doc))
}

/// Pretty JSON, as `aws iam put-role-policy --policy-document file://...` takes it.
pub fn render(doc: &PolicyDocument) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use valet_policy::evaluate::{Decision, Request, evaluate};

    use super::*;
    use crate::config::BucketAccountConfig;

    const ACCT: &str = "222222222222";
    const BOUNDARY: &str = "arn:aws:iam::222222222222:policy/storage-valet-boundary";

    fn config() -> BrokerConfig {
        let mut cfg = BrokerConfig::new("prod", "eu-west-1");
        cfg.default_bucket_account = Some(ACCT.into());
        cfg.bucket_accounts.insert(
            ACCT.into(),
            BucketAccountConfig {
                permissions_boundary_arn: Some(BOUNDARY.into()),
                ..BucketAccountConfig::default()
            },
        );
        cfg
    }

    #[test]
    fn allows_exactly_the_calls_the_broker_makes() {
        let (account, doc) = provisioning_policy(&config(), None).unwrap();
        assert_eq!(account, ACCT);
        let ours = "arn:aws:iam::222222222222:role/storage-valet/prod/prod-team-a-app-0123456789";
        let bounded = |action: &str, resource: &str| {
            evaluate(
                &doc,
                &Request::call(action, resource).with(BOUNDARY_KEY, BOUNDARY),
            )
        };
        for action in BOUNDED_WRITES {
            assert_eq!(bounded(action, ours), Decision::Allowed, "{action}");
            // Without the boundary, or with another one: refused.
            assert_eq!(
                evaluate(&doc, &Request::call(action, ours)),
                Decision::ImplicitDeny,
                "{action}"
            );
            let other = Request::call(action, ours)
                .with(BOUNDARY_KEY, "arn:aws:iam::222222222222:policy/admin");
            assert_eq!(evaluate(&doc, &other), Decision::ImplicitDeny, "{action}");
        }
        for action in ROLE_CALLS {
            assert_eq!(
                evaluate(&doc, &Request::call(action, ours)),
                Decision::Allowed,
                "{action}"
            );
        }
        let provider = "arn:aws:iam::222222222222:oidc-provider/oidc.example.com/id/1";
        assert_eq!(
            evaluate(
                &doc,
                &Request::call("iam:GetOpenIDConnectProvider", provider)
            ),
            Decision::Allowed
        );
        // createOidcProvider is off: no provider writes.
        assert_eq!(
            evaluate(
                &doc,
                &Request::call("iam:CreateOpenIDConnectProvider", provider)
            ),
            Decision::ImplicitDeny
        );
        let mut cfg = config();
        cfg.create_oidc_provider = true;
        let (_, with_create) = provisioning_policy(&cfg, Some(ACCT)).unwrap();
        assert_eq!(
            evaluate(
                &with_create,
                &Request::call("iam:CreateOpenIDConnectProvider", provider)
            ),
            Decision::Allowed
        );
    }

    #[test]
    fn allows_the_s3_calls_of_a_claim_only_on_the_clusters_bucket_names() {
        let (_, doc) = provisioning_policy(&config(), Some(ACCT)).unwrap();
        let ours = "arn:aws:s3:::prod-team-a-media";
        for action in valet_buckets::iam_policy::BUCKET_ACTIONS {
            assert_eq!(
                evaluate(&doc, &Request::call(action, ours)),
                Decision::Allowed,
                "{action}"
            );
            for foreign in ["arn:aws:s3:::acme-finance", "arn:aws:s3:::dev-team-a-media"] {
                assert_eq!(
                    evaluate(&doc, &Request::call(action, foreign)),
                    Decision::ImplicitDeny,
                    "{action} on {foreign}"
                );
            }
        }
        // Nothing a reconcile does not call: no ACLs, no objects.
        for action in ["s3:PutBucketAcl", "s3:GetObject", "s3:PutObject"] {
            assert_eq!(
                evaluate(&doc, &Request::call(action, ours)),
                Decision::ImplicitDeny,
                "{action}"
            );
        }
    }

    #[test]
    fn refuses_roles_outside_the_path_passrole_and_boundary_removal() {
        let (_, doc) = provisioning_policy(&config(), Some(ACCT)).unwrap();
        let outside = "arn:aws:iam::222222222222:role/admin";
        let other_cluster = "arn:aws:iam::222222222222:role/storage-valet/dev/x";
        let other_account = "arn:aws:iam::333333333333:role/storage-valet/prod/x";
        for role in [outside, other_cluster, other_account] {
            let create = Request::call("iam:CreateRole", role).with(BOUNDARY_KEY, BOUNDARY);
            assert_eq!(evaluate(&doc, &create), Decision::ImplicitDeny, "{role}");
            assert_eq!(
                evaluate(&doc, &Request::call("iam:DeleteRole", role)),
                Decision::ImplicitDeny,
                "{role}"
            );
            // The audit's listing is path-scoped too.
            for action in ["iam:ListRoles", "iam:ListRoleTags"] {
                assert_eq!(
                    evaluate(&doc, &Request::call(action, role)),
                    Decision::ImplicitDeny,
                    "{action} {role}"
                );
            }
        }
        let ours = "arn:aws:iam::222222222222:role/storage-valet/prod/x";
        assert_eq!(
            evaluate(&doc, &Request::call("iam:PassRole", ours)),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(
                &doc,
                &Request::call("iam:AttachRolePolicy", ours).with(BOUNDARY_KEY, BOUNDARY)
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(
                &doc,
                &Request::call("iam:DeleteRolePermissionsBoundary", ours)
            ),
            Decision::ExplicitDeny
        );
        let text = doc.to_json();
        assert!(
            !text.contains("::*:") && !text.contains("\"*\""),
            "no wildcard account or resource: {text}"
        );
        assert!(!text.contains("PassRole"), "{text}");
    }

    #[test]
    fn an_account_without_a_boundary_gets_no_policy() {
        let mut cfg = config();
        cfg.bucket_accounts.clear();
        cfg.bucket_accounts
            .insert(ACCT.into(), BucketAccountConfig::default());
        let err = provisioning_policy(&cfg, None).unwrap_err().to_string();
        assert!(err.contains("permissionsBoundaryArn"), "{err}");
        let err = provisioning_policy(&cfg, Some("444444444444"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the broker config"), "{err}");
    }
}
