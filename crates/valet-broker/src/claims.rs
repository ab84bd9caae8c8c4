//! Reconciling one BucketClaim: who may claim (the class's namespaces and
//! selector, deny by default), the bucket made or repaired in the class's
//! bucket account through the provisioning role, status and Events; on
//! deletion, the class's `deletionPolicy` behind a finalizer.
//!
//! The decision (`resolve`) and the S3 pass (`reconcile_bucket`) live in
//! `valet-buckets` and are shared with `valet broker apply`; this module
//! adds only the Kubernetes side.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use serde_json::json;
use tracing::{info, warn};
use valet_buckets::class::{ClassError, ValidClass};
use valet_buckets::crd::{BucketClaim, BucketClaimStatus, BucketClass, DeletionPolicy};
use valet_buckets::desired::{DesiredBucket, partition, tls_only_policy};
use valet_buckets::reconcile::{Released, reconcile_bucket, release_bucket};
use valet_buckets::resolve::{Defaults, resolve, valid_classes};
use valet_buckets::s3::{DeleteError, Deleted};
use valet_buckets::status::{BucketError, Failure, Outcome, PROVISIONED, READY, claim_status};

use crate::config::BrokerConfig;
use crate::reconcile::{
    Ctx, Error, FINALIZER, RETRY_AFTER, ensure_first_finalizer, event, now, resync_after,
};

/// Every BucketClass by name, checked once.
pub(crate) type Classes = BTreeMap<String, Result<ValidClass, ClassError>>;

/// Entry point for the claim controller.
pub async fn reconcile_claim(claim: Arc<BucketClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let result = reconcile_claim_inner(claim, &ctx).await;
    ctx.metrics.claims.observe(result.is_ok(), start.elapsed());
    result
}

async fn reconcile_claim_inner(claim: Arc<BucketClaim>, ctx: &Arc<Ctx>) -> Result<Action, Error> {
    let ns = claim.namespace().unwrap_or_default();
    // A claim reconcile that hangs (an S3 call that never returns) fails
    // liveness like a stuck BucketAccess one.
    let _in_flight = ctx
        .metrics
        .health
        .reconcile_started(format!("BucketClaim {ns}/{}", claim.name_any()));
    let api: Api<BucketClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claim = ensure_first_finalizer(&api, claim).await?;
    finalizer(&api, FINALIZER, claim, |event| async {
        match event {
            finalizer::Event::Apply(c) => apply(&c, ctx).await,
            finalizer::Event::Cleanup(c) => cleanup(&c, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Errors already became conditions; wait and retry.
pub fn claim_error_policy(claim: Arc<BucketClaim>, err: &Error, _: Arc<Ctx>) -> Action {
    warn!(ns = %claim.namespace().unwrap_or_default(), name = %claim.name_any(), error = %err, "claim reconcile failed; retrying");
    Action::requeue(RETRY_AFTER)
}

/// The broker's defaults for a claim's class: its default bucket account,
/// and the region configured for the account the bucket will be in.
pub fn defaults_for(cfg: &BrokerConfig, classes: &Classes, claim: &BucketClaim) -> Defaults {
    let account = classes
        .get(&claim.spec.bucket_class_name)
        .and_then(|c| c.as_ref().ok())
        .and_then(|c| c.bucket_account.clone())
        .or_else(|| cfg.default_bucket_account.clone());
    let region = account
        .as_deref()
        .map(|a| cfg.bucket_region(a))
        .unwrap_or(&cfg.region);
    Defaults {
        cluster: cfg.cluster_name.clone(),
        bucket_account: cfg.default_bucket_account.clone(),
        region: region.to_string(),
    }
}

/// A bucket keeps the name it was made with: a later change of the class's
/// template must not make the claim a second bucket.
pub fn keep_provisioned_name(desired: &mut DesiredBucket, status: Option<&BucketClaimStatus>) {
    let Some(status) = status else { return };
    let provisioned = status
        .conditions
        .iter()
        .any(|c| c.type_ == PROVISIONED && c.status == "True");
    let Some(name) = status.bucket_name.as_ref().filter(|_| provisioned) else {
        return;
    };
    if *name == desired.name {
        return;
    }
    desired.name.clone_from(name);
    desired.arn = format!("arn:{}:s3:::{name}", partition(&desired.region));
    desired.settings.policy = Some(tls_only_policy(&desired.arn));
}

async fn classes(ctx: &Ctx) -> Result<Classes, Error> {
    let list = Api::<BucketClass>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    Ok(valid_classes(&list))
}

async fn apply(claim: &BucketClaim, ctx: &Ctx) -> Result<Action, Error> {
    let ns = claim.namespace().unwrap_or_default();
    let resync = Action::requeue(resync_after(claim, ctx.cfg.resync_seconds));
    // Read at each reconcile, not from a watch cache: who may claim must
    // not be decided on a stale copy (the watches only trigger the reconcile).
    let classes = classes(ctx).await?;
    let labels = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(&ns)
        .await?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    let defaults = defaults_for(&ctx.cfg, &classes, claim);
    let outcome = match resolve(claim, &classes, &labels, &defaults) {
        // Refused or misconfigured: the class, the namespace's labels or
        // the claim must change first (all three are watched).
        Err(e) => Outcome::Failed {
            bucket: None,
            error: BucketError::new(Failure::Refused, e.reason(), e),
        },
        Ok(mut desired) => {
            keep_provisioned_name(&mut desired, claim.status.as_ref());
            match ctx.accounts.s3(&desired.account, &desired.region).await {
                Err(e) => Outcome::Failed {
                    bucket: Some(desired),
                    error: BucketError::new(e.failure(), e.reason(), e),
                },
                Ok(s3) => reconcile_bucket(&s3, &desired).await,
            }
        }
    };
    let next = match &outcome {
        Outcome::Failed { error, .. } if error.failure == Failure::Transient => {
            Action::requeue(RETRY_AFTER)
        }
        _ => resync,
    };
    announce(claim, ctx, &outcome).await;
    let status = claim_status(
        claim.status.as_ref(),
        &outcome,
        claim.metadata.generation,
        &now(),
    );
    publish(claim, ctx, &status).await?;
    Ok(next)
}

/// One Event per change: created, repaired (naming the settings), or a
/// failure whose reason is new (not one per retry).
async fn announce(claim: &BucketClaim, ctx: &Ctx, outcome: &Outcome) {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    match outcome {
        Outcome::Provisioned {
            bucket, created, ..
        } if *created => {
            info!(%ns, %name, bucket = %bucket.name, account = %bucket.account, "bucket created");
            let note = format!(
                "created bucket {} in account {} ({}) with the class's settings",
                bucket.name, bucket.account, bucket.region
            );
            event(ctx, claim, EventType::Normal, "BucketCreated", note).await;
        }
        Outcome::Provisioned {
            bucket, repaired, ..
        } if !repaired.is_empty() => {
            info!(%ns, %name, bucket = %bucket.name, ?repaired, "bucket drift repaired");
            let note = format!(
                "bucket {} had drifted; restored: {}",
                bucket.name,
                repaired.join(", ")
            );
            event(ctx, claim, EventType::Warning, "DriftRepaired", note).await;
        }
        Outcome::Provisioned { .. } => {}
        Outcome::Failed { error, .. } => {
            let was = claim
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
            if was.is_none_or(|c| c.reason != error.reason) {
                let note = error.message.clone();
                event(ctx, claim, EventType::Warning, error.reason, note).await;
            }
        }
    }
}

/// Writes status only when it differs (steady state writes nothing).
async fn publish(claim: &BucketClaim, ctx: &Ctx, next: &BucketClaimStatus) -> Result<(), Error> {
    if claim.status.as_ref() == Some(next) {
        return Ok(());
    }
    let api: Api<BucketClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    api.patch_status(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": next})),
    )
    .await?;
    Ok(())
}

/// Honours the class's `deletionPolicy`. Returning `Ok` removes the
/// finalizer; an error keeps it (and the claim) until the next attempt.
async fn cleanup(claim: &BucketClaim, ctx: &Ctx) -> Result<Action, Error> {
    let Some(bucket) = claim.status.as_ref().and_then(|s| s.bucket_name.clone()) else {
        // Nothing was ever made for this claim.
        return Ok(Action::await_change());
    };
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let classes = classes(ctx).await?;
    let class_name = &claim.spec.bucket_class_name;
    let class = match classes.get(class_name) {
        Some(Ok(c)) => c,
        _ => {
            let note = format!(
                "BucketClass {class_name} is gone or invalid, so its deletionPolicy is unknown: bucket {bucket} is retained"
            );
            event(ctx, claim, EventType::Warning, "BucketRetained", note).await;
            return Ok(Action::await_change());
        }
    };
    if class.deletion_policy == DeletionPolicy::Retain {
        let note = format!("deletionPolicy Retain: bucket {bucket} stays (only the claim goes)");
        event(ctx, claim, EventType::Normal, "BucketRetained", note).await;
        return Ok(Action::await_change());
    }
    let defaults = defaults_for(&ctx.cfg, &classes, claim);
    let Some(account) = class
        .bucket_account
        .clone()
        .or(defaults.bucket_account.clone())
    else {
        let note =
            format!("no bucket account for BucketClass {class_name}: bucket {bucket} is retained");
        event(ctx, claim, EventType::Warning, "BucketRetained", note).await;
        return Ok(Action::await_change());
    };
    let region = claim
        .status
        .as_ref()
        .and_then(|s| s.region.clone())
        .unwrap_or(defaults.region);
    let mut desired = DesiredBucket::new(class, &defaults.cluster, &ns, &name, &account, &region);
    keep_provisioned_name(&mut desired, claim.status.as_ref());
    let s3 = ctx
        .accounts
        .s3(&account, &region)
        .await
        .map_err(|e| Error::Retry(e.to_string()))?;
    match release_bucket(&s3, &desired, DeletionPolicy::Delete).await {
        Ok(Released::Deleted(Deleted::Removed)) => {
            info!(%ns, %name, bucket = %desired.name, "bucket deleted");
            let note = format!(
                "deletionPolicy Delete: deleted empty bucket {}",
                desired.name
            );
            event(ctx, claim, EventType::Normal, "BucketDeleted", note).await;
            Ok(Action::await_change())
        }
        Ok(_) => Ok(Action::await_change()),
        // Not ours: never touched, and no reason to keep the claim.
        Err(e @ DeleteError::NotOwned { .. }) => {
            event(ctx, claim, EventType::Warning, e.reason(), e.to_string()).await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let reason = e.reason();
            let message = e.to_string();
            let mut status = claim.status.clone().unwrap_or_default();
            let now = now();
            for c in status.conditions.iter_mut().filter(|c| c.type_ == READY) {
                if c.reason != reason {
                    c.last_transition_time.clone_from(&now);
                }
                c.status = "False".into();
                c.reason = reason.into();
                c.message = format!("the claim is being deleted and its bucket is kept: {message}");
            }
            if claim.status.as_ref() != Some(&status) {
                event(ctx, claim, EventType::Warning, reason, message.clone()).await;
                publish(claim, ctx, &status).await?;
            }
            Err(Error::Retry(message))
        }
    }
}

/// A grant by claim waits for its claim (the BucketAccess's conditions say so).
pub const CLAIM_NOT_READY: &str = "BucketClaimNotReady";
pub const CLAIM_IN_OTHER_ACCOUNT: &str = "BucketClaimInOtherAccount";
pub const CLAIM_IN_OTHER_REGION: &str = "BucketClaimInOtherRegion";

/// Why a spec's grants by claim cannot be used yet: (reason, message).
pub type Waiting = (&'static str, String);

/// Fills in each grant by `bucketClaimName` from its claim: the bucket, the
/// claim's class (for `bucketClass` policy entries) and the bucket account
/// (which becomes the spec's when it names none). The claim must be Ready,
/// and is judged again here (its class must still exist and allow the
/// namespace), so a grant never rests on a status alone.
pub(crate) async fn resolve_grants(
    ctx: &Ctx,
    ns: &str,
    mut spec: crate::crd::ValidSpec,
) -> Result<Result<crate::crd::ValidSpec, Waiting>, Error> {
    if spec.buckets.iter().all(|g| g.claim.is_none()) {
        return Ok(Ok(spec));
    }
    let api: Api<BucketClaim> = Api::namespaced(ctx.client.clone(), ns);
    let classes = classes(ctx).await?;
    let labels = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(ns)
        .await?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    let mut claimed = ClaimedBuckets::default();
    for index in 0..spec.buckets.len() {
        let Some(claim_name) = spec.buckets[index].claim.clone() else {
            continue;
        };
        let where_ = format!("spec.buckets[{index}].bucketClaimName {claim_name}");
        let Some(claim) = api.get_opt(&claim_name).await? else {
            return Ok(Err((
                CLAIM_NOT_READY,
                format!(
                    "{where_}: BucketClaim {ns}/{claim_name} does not exist (create it, or fix the name)"
                ),
            )));
        };
        let ready = valet_buckets::status::is_ready(claim.status.as_ref()).is_some();
        let desired = resolve(
            &claim,
            &classes,
            &labels,
            &defaults_for(&ctx.cfg, &classes, &claim),
        );
        let mut desired = match desired {
            Ok(d) if ready => d,
            Ok(_) => {
                let why = claim
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
                    .map(|c| format!("{}: {}", c.reason, c.message))
                    .unwrap_or_else(|| "not reconciled yet".into());
                return Ok(Err((
                    CLAIM_NOT_READY,
                    format!(
                        "{where_}: BucketClaim {ns}/{claim_name} is not Ready ({why}); access waits for it"
                    ),
                )));
            }
            Err(e) => {
                return Ok(Err((CLAIM_NOT_READY, format!("{where_}: {e}"))));
            }
        };
        keep_provisioned_name(&mut desired, claim.status.as_ref());
        if let Err(waiting) = claimed.add(
            &mut spec.buckets[index],
            spec.bucket_account.as_deref(),
            &where_,
            &claim.spec.bucket_class_name,
            &desired,
        ) {
            return Ok(Err(waiting));
        }
    }
    claimed.finish(&mut spec);
    Ok(Ok(spec))
}

/// Where the buckets granted by claim are: one BucketAccess grants in one
/// account, and its ServiceAccount names one bucket region. Pure, shared by
/// the controller and `valet broker apply`.
#[derive(Debug, Default)]
pub(crate) struct ClaimedBuckets {
    account: Option<String>,
    region: Option<String>,
}

impl ClaimedBuckets {
    /// Points `grant` (by claim, described by `where_`) at the claim's bucket.
    pub(crate) fn add(
        &mut self,
        grant: &mut crate::crd::ValidGrant,
        spec_account: Option<&str>,
        where_: &str,
        class: &str,
        bucket: &DesiredBucket,
    ) -> Result<(), Waiting> {
        let wanted = spec_account.or(self.account.as_deref());
        if let Some(acct) = wanted.filter(|a| *a != bucket.account) {
            return Err((
                CLAIM_IN_OTHER_ACCOUNT,
                format!(
                    "{where_}: the claim's bucket is in account {}, this BucketAccess grants in {acct} (one BucketAccess grants in one account: split it, or drop spec.bucketAccount)",
                    bucket.account
                ),
            ));
        }
        if let Some(region) = self.region.as_deref().filter(|r| *r != bucket.region) {
            return Err((
                CLAIM_IN_OTHER_REGION,
                format!(
                    "{where_}: the claim's bucket is in region {}, another claimed bucket of this BucketAccess in {region}, and a ServiceAccount names one bucket region (split it into one BucketAccess per region)",
                    bucket.region
                ),
            ));
        }
        self.account = Some(bucket.account.clone());
        self.region = Some(bucket.region.clone());
        grant.name.clone_from(&bucket.name);
        grant.bucket_class = Some(class.to_string());
        Ok(())
    }

    /// The spec's account (when it names none) and bucket region.
    pub(crate) fn finish(self, spec: &mut crate::crd::ValidSpec) {
        if spec.bucket_account.is_none() {
            spec.bucket_account = self.account;
        }
        if self.region.is_some() {
            spec.region = self.region;
        }
    }
}
