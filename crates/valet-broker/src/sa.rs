//! The ServiceAccount side of a BucketAccess: annotations written (and the
//! account created) when the role is ready, removed on deletion. Only keys
//! the broker owns are touched; a person's own annotations stay.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;

use crate::crd::{BucketAccess, ValidSpec};
use crate::provision::DesiredRole;
use crate::reconcile::{Ctx, Error, event};
use crate::status::{ANN_CREATED_BY, ANN_OWNER, annotation_changes, service_account_annotations};

pub(crate) async fn annotate_service_account(
    ba: &BucketAccess,
    ctx: &Ctx,
    spec: &ValidSpec,
    role: &DesiredRole,
) -> Result<(), Error> {
    let ns = &role.namespace;
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let region = ctx.cfg.bucket_region(&role.account);
    let want = service_account_annotations(
        &ctx.cfg.annotation_prefix,
        &role.arn,
        spec,
        region,
        &role.bucket_access,
    );
    let Some(sa) = api.get_opt(&spec.service_account).await? else {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(spec.service_account.clone());
        let mut anns: BTreeMap<String, String> = want
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        anns.insert(ANN_CREATED_BY.into(), role.bucket_access.clone());
        sa.metadata.annotations = Some(anns);
        api.create(&PostParams::default(), &sa).await?;
        let note = format!(
            "created ServiceAccount {ns}/{} for role {}",
            spec.service_account, role.arn
        );
        event(ctx, ba, EventType::Normal, "ServiceAccountCreated", note).await;
        return Ok(());
    };
    let changes = annotation_changes(&sa.annotations().clone(), &want);
    if changes.is_empty() {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": changes}});
    api.patch(
        &spec.service_account,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let keys: Vec<&String> = changes.keys().collect();
    let note = format!(
        "annotated ServiceAccount {ns}/{}: {keys:?}",
        spec.service_account
    );
    event(ctx, ba, EventType::Normal, "ServiceAccountAnnotated", note).await;
    Ok(())
}

/// Removes the annotations this BucketAccess wrote; deletes the
/// ServiceAccount if this BucketAccess created it.
pub(crate) async fn release_service_account(
    ba: &BucketAccess,
    ctx: &Ctx,
    ns: &str,
    name: &str,
    service_account: &str,
) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ns);
    let Some(sa) = api.get_opt(service_account).await? else {
        return Ok(());
    };
    let anns = sa.annotations();
    if anns.get(ANN_OWNER).map(String::as_str) != Some(name) {
        return Ok(());
    }
    let sa_name = sa.name_any();
    if anns.get(ANN_CREATED_BY).map(String::as_str) == Some(name) {
        api.delete(&sa_name, &DeleteParams::default()).await?;
        event(
            ctx,
            ba,
            EventType::Normal,
            "ServiceAccountDeleted",
            format!("deleted ServiceAccount {ns}/{sa_name}"),
        )
        .await;
        return Ok(());
    }
    let prefix = &ctx.cfg.annotation_prefix;
    let ours = [
        format!("{prefix}/{}", valet_core::consts::ANN_ROLE_ARN),
        valet_core::consts::ANN_BUCKET.to_string(),
        valet_core::consts::ANN_BUCKETS.to_string(),
        valet_core::consts::ANN_BUCKET_REGION.to_string(),
        ANN_OWNER.to_string(),
    ];
    let nulls: BTreeMap<&String, Option<String>> = ours
        .iter()
        .filter(|k| anns.contains_key(*k))
        .map(|k| (k, None))
        .collect();
    let patch = json!({"metadata": {"annotations": nulls}});
    api.patch(&sa_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    event(
        ctx,
        ba,
        EventType::Normal,
        "ServiceAccountReleased",
        format!("removed the broker's annotations from {ns}/{sa_name}"),
    )
    .await;
    Ok(())
}
