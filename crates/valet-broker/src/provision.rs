//! One ServiceAccount's role in one bucket account: the desired state
//! (pure), a plan that only reads IAM, and its execution. Both the
//! controller and `valet broker apply` go through here, so `--dry-run`
//! prints exactly what the controller would do.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::BrokerConfig;
use crate::crd::ValidSpec;
use crate::iam::{Iam, IamError, RoleInfo};
use crate::naming::{NamingError, role_name, role_path};
use valet_policy::{
    PolicyDocument, PolicyError, oidc_provider_arn, partition_for_region, trust_policy,
};

use crate::policy::access_policy;

/// Name of the inline policy the broker owns on each role.
pub const INLINE_POLICY_NAME: &str = "storage-valet-access";
/// Ownership tags: a role is ours only when all of them match.
pub const TAG_MANAGED_BY: &str = "storage-valet.dev/managed-by";
pub const MANAGED_BY: &str = "storage-valet";
pub const TAG_CLUSTER: &str = "storage-valet.dev/cluster";
pub const TAG_NAMESPACE: &str = "storage-valet.dev/namespace";
pub const TAG_SERVICE_ACCOUNT: &str = "storage-valet.dev/serviceaccount";
/// Which BucketAccess manages the role; a second one for the same
/// ServiceAccount is a conflict, not a co-owner.
pub const TAG_BUCKET_ACCESS: &str = "storage-valet.dev/bucketaccess";

/// Everything the role should be.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRole {
    pub account: String,
    pub name: String,
    pub path: String,
    pub arn: String,
    pub trust: PolicyDocument,
    pub access: PolicyDocument,
    pub tags: BTreeMap<String, String>,
    /// The permissions boundary of the bucket account, when configured.
    pub boundary: Option<String>,
    pub namespace: String,
    pub service_account: String,
    pub bucket_access: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error("no bucket account: set spec.bucketAccount or the broker's defaultBucketAccount")]
    NoAccount,
    #[error(
        "role {arn} exists but is not ours ({why}); it is left untouched: delete or rename it, or change the broker's rolePath/roleNamePattern"
    )]
    Foreign { arn: String, why: String },
    #[error(
        "role {arn} is managed by BucketAccess {owner:?} for the same ServiceAccount; merge the two into one BucketAccess"
    )]
    Conflict { arn: String, owner: String },
    #[error(
        "role {arn} waits for the cluster's IAM OIDC provider in the bucket account (IAM refuses a trust policy naming a missing provider): see the TrustValid condition, or set createOidcProvider"
    )]
    WaitingForProvider { arn: String },
    #[error(transparent)]
    Iam(#[from] IamError),
}

impl ProvisionError {
    pub fn reason(&self) -> &'static str {
        match self {
            ProvisionError::Policy(PolicyError::TooLarge { .. }) => "PolicyTooLarge",
            ProvisionError::Policy(_) => "InvalidPolicy",
            ProvisionError::Naming(_) => "InvalidConfig",
            ProvisionError::NoAccount => "NoBucketAccount",
            ProvisionError::Foreign { .. } => "ForeignRole",
            ProvisionError::Conflict { .. } => "RoleConflict",
            ProvisionError::WaitingForProvider { .. } => "WaitingForOidcProvider",
            ProvisionError::Iam(e) => e.reason(),
        }
    }
    /// Errors a retry can fix by itself (the rest wait for a spec or IAM change).
    pub fn transient(&self) -> bool {
        matches!(self, ProvisionError::Iam(_))
    }
}

/// The bucket account a spec resolves to.
pub fn bucket_account<'a>(
    cfg: &'a BrokerConfig,
    spec: &'a ValidSpec,
) -> Result<&'a str, ProvisionError> {
    spec.bucket_account
        .as_deref()
        .or(cfg.default_bucket_account.as_deref())
        .ok_or(ProvisionError::NoAccount)
}

/// The desired role for `namespace/spec.service_account` (pure).
pub fn desired_role(
    cfg: &BrokerConfig,
    issuer: &str,
    namespace: &str,
    bucket_access: &str,
    spec: &ValidSpec,
) -> Result<DesiredRole, ProvisionError> {
    let account = bucket_account(cfg, spec)?.to_string();
    let boundary = cfg
        .account(&account)
        .and_then(|a| a.permissions_boundary_arn.clone());
    let partition = partition_for_region(cfg.bucket_region(&account));
    let sa = &spec.service_account;
    let name = role_name(&cfg.role_name_pattern, &cfg.cluster_name, namespace, sa);
    let path = role_path(&cfg.role_path, &cfg.cluster_name)?;
    let provider = oidc_provider_arn(partition, &account, issuer);
    let trust = trust_policy(&provider, issuer, namespace, sa, &cfg.audience)?;
    let access = access_policy(partition, &spec.buckets)?;
    let tags = BTreeMap::from([
        (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (TAG_CLUSTER.to_string(), cfg.cluster_name.clone()),
        (TAG_NAMESPACE.to_string(), namespace.to_string()),
        (TAG_SERVICE_ACCOUNT.to_string(), truncate_tag(sa)),
        (TAG_BUCKET_ACCESS.to_string(), truncate_tag(bucket_access)),
    ]);
    Ok(DesiredRole {
        arn: format!("arn:{partition}:iam::{account}:role{path}{name}"),
        account,
        name,
        path,
        trust,
        access,
        tags,
        boundary,
        namespace: namespace.to_string(),
        service_account: sa.clone(),
        bucket_access: bucket_access.to_string(),
    })
}

/// IAM tag values hold at most 256 characters; names longer than that are
/// compared on the same truncation, so ownership still holds.
fn truncate_tag(v: &str) -> String {
    v.chars().take(256).collect()
}

/// One change to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateRole,
    UpdateTrust,
    PutBoundary,
    PutAccessPolicy,
    /// `spec.suspended`: the inline access policy goes, the role stays.
    RevokeAccess,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::CreateRole => "create role (trust policy, tags)",
            Step::UpdateTrust => "update trust policy",
            Step::PutBoundary => "put permissions boundary",
            Step::PutAccessPolicy => "put inline access policy",
            Step::RevokeAccess => {
                "delete inline access policy (suspended: the role keeps no S3 access)"
            }
        })
    }
}

/// What must change; empty `steps` is the steady state.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub role: DesiredRole,
    pub steps: Vec<Step>,
    /// The role already existed (so any step is drift repair).
    pub existed: bool,
    /// The documents IAM holds now, for the plan's diffs.
    pub found: Found,
}

/// A role's policy documents as IAM holds them (`None`: absent, or not
/// readable as a policy, which the plan replaces), kept from the reads the
/// plan made anyway, for `broker apply`'s diffs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    pub trust: Option<PolicyDocument>,
    pub access: Option<PolicyDocument>,
}

impl Found {
    fn of<E>(
        trust: Result<PolicyDocument, String>,
        access: Option<Result<PolicyDocument, E>>,
    ) -> Found {
        Found {
            trust: trust.ok(),
            access: access.and_then(Result::ok),
        }
    }
}

/// Proves the role is ours by path and every ownership tag.
pub fn check_owner(role: &DesiredRole, found: &RoleInfo) -> Result<(), ProvisionError> {
    let foreign = |why: String| ProvisionError::Foreign {
        arn: found.arn.clone(),
        why,
    };
    if found.path != role.path {
        return Err(foreign(format!(
            "its path is {} instead of {}",
            found.path, role.path
        )));
    }
    for key in [
        TAG_MANAGED_BY,
        TAG_CLUSTER,
        TAG_NAMESPACE,
        TAG_SERVICE_ACCOUNT,
    ] {
        let want = role.tags.get(key);
        let have = found.tags.get(key);
        if have != want {
            return Err(foreign(match have {
                None => format!("tag {key} is missing"),
                Some(v) => format!(
                    "tag {key} is {v:?}, not {:?}",
                    want.map(String::as_str).unwrap_or("")
                ),
            }));
        }
    }
    let owner = found.tags.get(TAG_BUCKET_ACCESS);
    if owner != role.tags.get(TAG_BUCKET_ACCESS) {
        return Err(ProvisionError::Conflict {
            arn: found.arn.clone(),
            owner: owner.cloned().unwrap_or_default(),
        });
    }
    Ok(())
}

/// Reads IAM (GetRole, GetRolePolicy) and lists what differs. Never writes.
pub async fn plan(iam: &Iam, role: DesiredRole) -> Result<Plan, ProvisionError> {
    let Some(found) = iam.get_role(&role.name).await? else {
        return Ok(Plan {
            role,
            steps: vec![Step::CreateRole, Step::PutAccessPolicy],
            existed: false,
            found: Found::default(),
        });
    };
    check_owner(&role, &found)?;
    let mut steps = Vec::new();
    if !found.trust.as_ref().is_ok_and(|t| t.same_as(&role.trust)) {
        steps.push(Step::UpdateTrust);
    }
    // A boundary someone removed or replaced comes back; without one
    // configured, whatever the account's admins set is left alone.
    if role.boundary.is_some() && found.boundary != role.boundary {
        steps.push(Step::PutBoundary);
    }
    let policy = iam.get_role_policy(&role.name, INLINE_POLICY_NAME).await?;
    if !matches!(&policy, Some(Ok(doc)) if doc.same_as(&role.access)) {
        steps.push(Step::PutAccessPolicy);
    }
    Ok(Plan {
        role,
        steps,
        existed: true,
        found: Found::of(found.trust, policy),
    })
}

/// The plan of a suspended BucketAccess: only the inline policy's removal
/// (a role that does not exist yet is not created). Never writes.
pub async fn plan_revoke(iam: &Iam, role: DesiredRole) -> Result<Plan, ProvisionError> {
    let Some(found) = iam.get_role(&role.name).await? else {
        return Ok(Plan {
            role,
            steps: Vec::new(),
            existed: false,
            found: Found::default(),
        });
    };
    check_owner(&role, &found)?;
    let policy = iam.get_role_policy(&role.name, INLINE_POLICY_NAME).await?;
    Ok(Plan {
        steps: if policy.is_some() {
            vec![Step::RevokeAccess]
        } else {
            Vec::new()
        },
        existed: true,
        found: Found::of(found.trust, policy),
        role,
    })
}

/// Makes the plan's changes, in order.
pub async fn execute(iam: &Iam, plan: &Plan) -> Result<(), ProvisionError> {
    let role = &plan.role;
    for step in &plan.steps {
        match step {
            Step::CreateRole => {
                let description = format!(
                    "storage-valet: S3 access for {}/{} (BucketAccess {})",
                    role.namespace, role.service_account, role.bucket_access
                );
                iam.create_role(
                    &role.name,
                    &role.path,
                    &role.trust,
                    &role.tags,
                    &description,
                    role.boundary.as_deref(),
                )
                .await?;
            }
            Step::UpdateTrust => iam.update_trust(&role.name, &role.trust).await?,
            Step::PutBoundary => {
                if let Some(arn) = &role.boundary {
                    iam.put_boundary(&role.name, arn).await?
                }
            }
            Step::PutAccessPolicy => {
                iam.put_role_policy(&role.name, INLINE_POLICY_NAME, &role.access)
                    .await?
            }
            Step::RevokeAccess => {
                iam.delete_role_policy(&role.name, INLINE_POLICY_NAME)
                    .await?
            }
        }
    }
    Ok(())
}

/// Deletes the role's inline access policy (the role keeps no S3 access),
/// only when the role is ours; `true` when there was one to delete.
pub async fn revoke_access(iam: &Iam, role: &DesiredRole) -> Result<bool, ProvisionError> {
    let Some(found) = iam.get_role(&role.name).await? else {
        return Ok(false);
    };
    check_owner(role, &found)?;
    if iam
        .get_role_policy(&role.name, INLINE_POLICY_NAME)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    iam.delete_role_policy(&role.name, INLINE_POLICY_NAME)
        .await?;
    Ok(true)
}

/// What deletion found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Deleted,
    AlreadyGone,
}

/// Deletes our inline policy and the role, only when the role is ours.
pub async fn deprovision(iam: &Iam, role: &DesiredRole) -> Result<Removed, ProvisionError> {
    let Some(found) = iam.get_role(&role.name).await? else {
        return Ok(Removed::AlreadyGone);
    };
    check_owner(role, &found)?;
    iam.delete_role_policy(&role.name, INLINE_POLICY_NAME)
        .await?;
    iam.delete_role(&role.name).await?;
    Ok(Removed::Deleted)
}
