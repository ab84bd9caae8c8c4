//! A BucketAccess whose ServiceAccount or bucket account changed leaves its
//! previous role behind; the next successful reconcile removes it (when its
//! tags prove this BucketAccess owns it) and releases the old
//! ServiceAccount, so an edit never strands a role that still grants access.

use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::info;
use valet_core::arn::RoleArn;

use crate::crd::{BucketAccess, ValidSpec};
use crate::provision::{
    self, DesiredRole, Removed, TAG_BUCKET_ACCESS, TAG_NAMESPACE, TAG_SERVICE_ACCOUNT,
};
use crate::reconcile::{Ctx, Error, event};

/// Removes the role in `status.roleArn` when it is no longer `current`.
pub(crate) async fn retire_previous_role(
    ba: &BucketAccess,
    ctx: &Ctx,
    current: &DesiredRole,
) -> Result<(), Error> {
    let Some(old) = ba.status.as_ref().and_then(|s| s.role_arn.as_deref()) else {
        return Ok(());
    };
    if old == current.arn {
        return Ok(());
    }
    let Ok(old) = RoleArn::parse(old) else {
        return Ok(());
    };
    let clients = ctx
        .accounts
        .get(old.account_id())
        .await
        .map_err(|e| Error::Retry(format!("cannot reach the previous role {old}: {e}")))?;
    let found = clients
        .iam
        .get_role(old.role_name())
        .await
        .map_err(|e| Error::Retry(e.to_string()))?;
    let Some(found) = found else { return Ok(()) };
    let ns = ba.namespace().unwrap_or_default();
    let name = ba.name_any();
    let tag = |k: &str| found.tags.get(k).cloned().unwrap_or_default();
    if tag(TAG_BUCKET_ACCESS) != name || tag(TAG_NAMESPACE) != ns {
        return Ok(());
    }
    let old_sa = tag(TAG_SERVICE_ACCOUNT);
    let spec = ValidSpec {
        service_account: old_sa.clone(),
        bucket_account: Some(old.account_id().to_string()),
        buckets: Vec::new(),
        suspended: false,
        region: None,
    };
    let Ok(previous) = provision::desired_role(&ctx.cfg, ctx.trust.issuer(), &ns, &name, &spec)
    else {
        return Ok(());
    };
    // Same name and path as the broker would give it today, plus every
    // ownership tag (checked by deprovision): otherwise it is not ours to delete.
    if previous.name != old.role_name() {
        return Ok(());
    }
    match provision::deprovision(&clients.iam, &previous).await {
        Ok(Removed::Deleted) => {
            info!(%ns, %name, role = %old, "previous role deleted");
            let note = format!("deleted previous role {old} (now {})", current.arn);
            event(ctx, ba, EventType::Normal, "PreviousRoleDeleted", note).await;
        }
        Ok(Removed::AlreadyGone) => {}
        Err(e) if e.transient() => return Err(Error::Retry(e.to_string())),
        Err(_) => return Ok(()),
    }
    if old_sa != current.service_account {
        crate::sa::release_service_account(ba, ctx, &ns, &name, &old_sa).await?;
    }
    Ok(())
}
