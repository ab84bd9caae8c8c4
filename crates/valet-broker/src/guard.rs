//! The platform's guardrails on one BucketAccess, before any AWS call:
//! the BucketAccessPolicies, `spec.suspended`, and a ServiceAccount whose
//! role the broker did not write.
//!
//! Policies and the namespace are read from the API server at each
//! reconcile rather than from a watch cache: a grant must not be decided on
//! a stale copy (the watches only trigger the reconcile), and a list of a
//! few dozen policies per reconcile is cheap next to the IAM calls it guards.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;

use crate::access_policy::BucketAccessPolicy;
use crate::crd::{BucketAccess, ValidSpec};
use crate::permit::{self, GrantRequest, NamespaceInfo, Permitted};
use crate::provision::{self, DesiredRole, INLINE_POLICY_NAME};
use crate::reconcile::{Ctx, Error, event};
use crate::status::{ANN_OWNER, Cond, PERMITTED};

pub const NOT_PERMITTED: &str = "NotPermitted";
pub const SUSPENDED: &str = "Suspended";
pub const SERVICE_ACCOUNT_NOT_OURS: &str = "ServiceAccountNotOurs";

/// What the guardrails decided.
pub(crate) enum Gate {
    /// Go on; the `Permitted` condition to publish.
    Open(Cond),
    /// Grant nothing: the `Permitted` condition, and why (reason, message).
    Closed {
        permitted: Cond,
        reason: &'static str,
        message: String,
    },
}

/// The grants of a spec, as the policies judge them.
pub fn grant_requests(spec: &ValidSpec) -> Vec<GrantRequest> {
    spec.buckets
        .iter()
        .map(|g| GrantRequest {
            bucket: g.name.clone(),
            bucket_class: g.bucket_class.clone(),
            prefix: g.prefix.clone().unwrap_or_default(),
            access: g.access,
        })
        .collect()
}

/// The `Permitted` condition (and whether it holds) for a decision.
pub fn permitted_condition(decision: &Result<Permitted, permit::NotPermitted>) -> Cond {
    match decision {
        Ok(p) => Cond::new(
            PERMITTED,
            Some(true),
            "Permitted",
            format!("allowed by BucketAccessPolicy {}", p.policies.join(", ")),
        ),
        Err(np) => Cond::new(PERMITTED, Some(false), NOT_PERMITTED, np.to_string()),
    }
}

/// Policies and suspension, for `spec` in the bucket account `account`.
pub(crate) async fn check(
    ba: &BucketAccess,
    ctx: &Ctx,
    spec: &ValidSpec,
    account: &str,
) -> Result<Gate, Error> {
    let ns = ba.namespace().unwrap_or_default();
    let labels = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(&ns)
        .await?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    let policies = Api::<BucketAccessPolicy>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let info = NamespaceInfo { name: ns, labels };
    let decision = permit::decide(
        &policies,
        ctx.cfg.default_bucket_account.as_deref(),
        &info,
        account,
        &grant_requests(spec),
    );
    let permitted = permitted_condition(&decision);
    Ok(match decision {
        Err(np) => Gate::Closed {
            permitted,
            reason: NOT_PERMITTED,
            message: np.to_string(),
        },
        Ok(_) if spec.suspended => Gate::Closed {
            permitted,
            reason: SUSPENDED,
            message: "spec.suspended is true: the role is kept without S3 access; set spec.suspended to false to restore it".into(),
        },
        Ok(_) => Gate::Open(permitted),
    })
}

/// Why the broker must leave the ServiceAccount alone: it carries a role-arn
/// annotation the broker did not write for this BucketAccess.
pub(crate) async fn foreign_service_account(
    ctx: &Ctx,
    ns: &str,
    bucket_access: &str,
    service_account: &str,
    role_arn: &str,
) -> Result<Option<String>, Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let Some(sa) = api.get_opt(service_account).await? else {
        return Ok(None);
    };
    let key = format!(
        "{}/{}",
        ctx.cfg.annotation_prefix,
        valet_core::consts::ANN_ROLE_ARN
    );
    let anns = sa.annotations();
    let Some(current) = anns.get(&key) else {
        return Ok(None);
    };
    let ours = anns.get(ANN_OWNER).map(String::as_str) == Some(bucket_access);
    if ours || current == role_arn {
        return Ok(None);
    }
    Ok(Some(format!(
        "ServiceAccount {ns}/{service_account} already has {key}={current}, which the broker did not write: it is left alone. Remove the annotation (kubectl -n {ns} annotate serviceaccount {service_account} {key}-) or set spec.serviceAccountName to another ServiceAccount"
    )))
}

/// Takes every S3 permission from the role (its inline policy), keeping the
/// role, its trust and the ServiceAccount annotation, so that access comes
/// back with one PutRolePolicy. Only a role this BucketAccess provisioned is
/// touched (its status names it and its tags prove it).
pub(crate) async fn revoke(
    ba: &BucketAccess,
    ctx: &Ctx,
    role: &DesiredRole,
    message: &str,
) -> Result<(), Error> {
    let provisioned = ba.status.as_ref().and_then(|s| s.role_arn.as_deref()) == Some(&role.arn);
    if !provisioned {
        return Ok(());
    }
    let clients = ctx
        .accounts
        .get(&role.account)
        .await
        .map_err(|e| Error::Retry(e.to_string()))?;
    match provision::revoke_access(&clients.iam, role).await {
        Ok(true) => {
            let note = format!(
                "{message}. Revoked: deleted inline policy {INLINE_POLICY_NAME} of role {}; the role and the ServiceAccount annotation stay",
                role.arn
            );
            event(ctx, ba, EventType::Warning, "AccessRevoked", note).await;
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) if e.transient() => Err(Error::Retry(e.to_string())),
        Err(e) => {
            event(ctx, ba, EventType::Warning, e.reason(), e.to_string()).await;
            Ok(())
        }
    }
}
