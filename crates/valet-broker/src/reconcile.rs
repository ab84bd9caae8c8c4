//! Reconciling one BucketAccess: validate, assume into the bucket account,
//! check trust, plan and apply the role, annotate the ServiceAccount,
//! write status and Events. Deletion runs behind a finalizer.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::accounts::Accounts;
use crate::config::BrokerConfig;
use crate::crd::{BucketAccess, ValidSpec};
use crate::guard::{self, Gate};
use crate::provision::{self, DesiredRole, ProvisionError, Removed, Step};
use crate::status::*;
use crate::trust_gate::{PROVIDER_INVALID, TrustGate, TrustVerdict};

pub const FINALIZER: &str = "storage-valet.dev/cleanup";
/// Requeue after a failure a retry can fix (throttling, endpoint down).
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(20);

/// Shared by every reconcile.
pub struct Ctx {
    pub client: kube::Client,
    pub cfg: Arc<BrokerConfig>,
    pub accounts: Arc<Accounts>,
    pub trust: Arc<TrustGate>,
    pub recorder: Recorder,
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("{0}")]
    Retry(String),
}

/// Entry point for the controller.
pub async fn reconcile(ba: Arc<BucketAccess>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = std::time::Instant::now();
    let _in_flight = ctx.metrics.health.reconcile_started(format!(
        "BucketAccess {}/{}",
        ba.namespace().unwrap_or_default(),
        ba.name_any()
    ));
    let result = reconcile_inner(ba, &ctx).await;
    ctx.metrics
        .accesses
        .observe(result.is_ok(), start.elapsed());
    result
}

async fn reconcile_inner(ba: Arc<BucketAccess>, ctx: &Ctx) -> Result<Action, Error> {
    let ns = ba.namespace().unwrap_or_default();
    let api: Api<BucketAccess> = Api::namespaced(ctx.client.clone(), &ns);
    let ba = ensure_first_finalizer(&api, ba).await?;
    finalizer(&api, FINALIZER, ba, |event| async {
        match event {
            finalizer::Event::Apply(ba) => apply(&ba, ctx).await,
            finalizer::Event::Cleanup(ba) => cleanup(&ba, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Adds the finalizer to an object that has none. kube's helper does this
/// with a JSON patch `test` of a missing path against `null`, which some
/// API server implementations reject; a `test` of the resourceVersion
/// gives the same protection against a concurrent writer.
pub(crate) async fn ensure_first_finalizer<K>(api: &Api<K>, obj: Arc<K>) -> Result<Arc<K>, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if obj.meta().deletion_timestamp.is_some() || !obj.finalizers().is_empty() {
        return Ok(obj);
    }
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": obj.resource_version()},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
    ]))
    .map_err(|e| Error::Retry(e.to_string()))?;
    let updated = api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    Ok(Arc::new(updated))
}

/// The controller's error policy: errors already became conditions; wait and retry.
pub fn error_policy(ba: Arc<BucketAccess>, err: &Error, _: Arc<Ctx>) -> Action {
    warn!(ns = %ba.namespace().unwrap_or_default(), name = %ba.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(RETRY_AFTER)
}

/// RFC 3339 to the second, as Kubernetes writes `metav1.Time`.
pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The resync period plus up to a fifth more, fixed per object: objects
/// created together (a GitOps sync) do not all hit IAM in the same second
/// of every period.
pub(crate) fn resync_after<K: Resource>(obj: &K, base: u64) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().uid.as_deref().unwrap_or_default().hash(&mut h);
    obj.name_any().hash(&mut h);
    let spread = (base / 5).max(1);
    Duration::from_secs(base + h.finish() % spread)
}

async fn apply(ba: &BucketAccess, ctx: &Ctx) -> Result<Action, Error> {
    let ns = ba.namespace().unwrap_or_default();
    let name = ba.name_any();
    let resync = Action::requeue(resync_after(ba, ctx.cfg.resync_seconds));

    let spec = match ba.spec.validate() {
        Ok(s) => s,
        Err(e) => {
            // Nothing to call AWS about until the spec changes.
            let msg = e.to_string();
            let conds = blocked("InvalidSpec", &msg);
            publish_status(ba, ctx, None, &conds, Some(("InvalidSpec", &msg))).await?;
            return Ok(Action::await_change());
        }
    };
    let spec = match crate::claims::resolve_grants(ctx, &ns, spec).await? {
        Ok(s) => s,
        Err((reason, msg)) => {
            // The claim's watch brings this object back when the claim changes.
            let conds = blocked(reason, &msg);
            publish_status(ba, ctx, None, &conds, Some((reason, &msg))).await?;
            return Ok(resync);
        }
    };
    let role = match provision::desired_role(&ctx.cfg, ctx.trust.issuer(), &ns, &name, &spec) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            let conds = blocked(e.reason(), &msg);
            publish_status(ba, ctx, None, &conds, Some((e.reason(), &msg))).await?;
            return Ok(Action::await_change());
        }
    };
    // Guardrails first: nothing refused here reaches AWS.
    let permitted = match guard::check(ba, ctx, &spec, &role.account).await? {
        Gate::Open(c) => c,
        Gate::Closed {
            permitted,
            reason,
            message,
        } => {
            guard::revoke(ba, ctx, &role, &message).await?;
            let kept = ba.status.as_ref().and_then(|s| s.role_arn.as_deref()) == Some(&role.arn);
            let role_cond = if kept {
                Cond::new(
                    ROLE_PROVISIONED,
                    Some(true),
                    "AccessRevoked",
                    format!("role {} is kept without S3 access", role.arn),
                )
            } else {
                Cond::new(ROLE_PROVISIONED, Some(false), reason, message.clone())
            };
            let conds = [
                permitted,
                Cond::new(TRUST_VALID, None, reason, message.clone()),
                role_cond,
                Cond::new(READY, Some(false), reason, message.clone()),
            ];
            publish_status(ba, ctx, None, &conds, Some((reason, &message))).await?;
            return Ok(resync);
        }
    };
    if let Some(msg) =
        guard::foreign_service_account(ctx, &ns, &name, &spec.service_account, &role.arn).await?
    {
        let reason = guard::SERVICE_ACCOUNT_NOT_OURS;
        let mut conds = blocked(reason, &msg).to_vec();
        conds.insert(0, permitted);
        publish_status(ba, ctx, None, &conds, Some((reason, &msg))).await?;
        return Ok(resync);
    }
    let was_revoked = ba
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .is_some_and(|c| c.reason == guard::NOT_PERMITTED || c.reason == guard::SUSPENDED);
    let clients = match ctx.accounts.get(&role.account).await {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            let mut conds = blocked(e.reason(), &msg).to_vec();
            conds.insert(0, permitted);
            publish_status(ba, ctx, None, &conds, Some((e.reason(), &msg))).await?;
            return Ok(Action::requeue(RETRY_AFTER));
        }
    };
    let trust = ctx.trust.check(&clients, &role).await;
    let trust_cond = Cond::new(
        TRUST_VALID,
        Some(trust.ok),
        trust.reason.clone(),
        trust.message.clone(),
    );

    // IAM refuses a trust policy that names a missing provider, so role
    // creation and trust updates wait for it; narrowing the access policy does not.
    let provider_ok = trust.ok || trust.reason != PROVIDER_INVALID;
    if let Err(e) = provision_role(
        ba,
        ctx,
        &clients.iam,
        role.clone(),
        provider_ok,
        was_revoked,
    )
    .await
    {
        let msg = e.to_string();
        let conds = [
            permitted.clone(),
            trust_cond,
            Cond::new(ROLE_PROVISIONED, Some(false), e.reason(), msg.clone()),
            Cond::new(READY, Some(false), e.reason(), msg.clone()),
        ];
        publish_status(ba, ctx, None, &conds, Some((e.reason(), &msg))).await?;
        return Ok(if e.transient() {
            Action::requeue(RETRY_AFTER)
        } else {
            resync
        });
    }
    let role_cond = Cond::new(
        ROLE_PROVISIONED,
        Some(true),
        "RoleReady",
        format!(
            "role {} has the trust and access policies for {ns}/{}",
            role.arn, spec.service_account
        ),
    );
    crate::retire::retire_previous_role(ba, ctx, &role).await?;
    let ready = if trust.ok {
        crate::sa::annotate_service_account(ba, ctx, &spec, &role).await?;
        Cond::new(
            READY,
            Some(true),
            "Ready",
            format!(
                "pods using ServiceAccount {ns}/{} get role {}",
                spec.service_account, role.arn
            ),
        )
    } else {
        // A role whose trust chain is broken is not handed to pods.
        Cond::new(
            READY,
            Some(false),
            trust.reason.clone(),
            not_handed_out(&trust),
        )
    };
    let warn_event = (!trust.ok).then_some((trust.reason.as_str(), trust.message.as_str()));
    publish_status(
        ba,
        ctx,
        Some(role.arn.clone()),
        &[permitted, trust_cond, role_cond, ready],
        warn_event,
    )
    .await?;
    Ok(if trust.ok {
        resync
    } else {
        Action::requeue(RETRY_AFTER.max(Duration::from_secs(60)))
    })
}

fn not_handed_out(trust: &TrustVerdict) -> String {
    format!(
        "the ServiceAccount is not annotated until the trust chain is valid: {}",
        trust.message
    )
}

/// All three conditions False for a problem found before any AWS call.
fn blocked(reason: &str, msg: &str) -> [Cond; 3] {
    [
        Cond::new(TRUST_VALID, None, reason, msg),
        Cond::new(ROLE_PROVISIONED, Some(false), reason, msg),
        Cond::new(READY, Some(false), reason, msg),
    ]
}

async fn provision_role(
    ba: &BucketAccess,
    ctx: &Ctx,
    iam: &crate::iam::Iam,
    role: DesiredRole,
    provider_ok: bool,
    was_revoked: bool,
) -> Result<(), ProvisionError> {
    let mut plan = provision::plan(iam, role).await?;
    let held_back = !provider_ok
        && plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CreateRole | Step::UpdateTrust));
    if held_back {
        plan.steps
            .retain(|s| *s == Step::PutAccessPolicy && plan.existed);
    }
    let waiting = || ProvisionError::WaitingForProvider {
        arn: plan.role.arn.clone(),
    };
    if plan.steps.is_empty() {
        return if held_back { Err(waiting()) } else { Ok(()) };
    }
    provision::execute(iam, &plan).await?;
    let steps: Vec<String> = plan.steps.iter().map(Step::to_string).collect();
    let restored = was_revoked && plan.steps.contains(&Step::PutAccessPolicy);
    let (reason, note) = if restored {
        (
            "AccessRestored",
            format!(
                "access allowed again: role {} got its inline access policy back",
                plan.role.arn
            ),
        )
    } else if plan.existed {
        (
            "DriftRepaired",
            format!(
                "role {} had drifted; repaired: {}",
                plan.role.arn,
                steps.join(", ")
            ),
        )
    } else {
        (
            "RoleCreated",
            format!(
                "created role {} with its inline access policy",
                plan.role.arn
            ),
        )
    };
    info!(ns = %plan.role.namespace, name = %plan.role.bucket_access, role = %plan.role.arn, ?steps, reason, "role changed");
    event(ctx, ba, EventType::Normal, reason, note).await;
    if held_back { Err(waiting()) } else { Ok(()) }
}

/// Writes status when it differs; publishes a Warning event when a failing
/// condition is new (not on every retry).
async fn publish_status(
    ba: &BucketAccess,
    ctx: &Ctx,
    role_arn: Option<String>,
    conds: &[Cond],
    warning: Option<(&str, &str)>,
) -> Result<(), Error> {
    let next = next_status(
        ba.status.as_ref(),
        role_arn,
        conds,
        ba.metadata.generation,
        &now(),
    );
    if ba.status.as_ref() == Some(&next) {
        return Ok(());
    }
    if let Some((reason, msg)) = warning {
        let was = ba
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
        if was.is_none_or(|c| c.reason != reason) {
            event(ctx, ba, EventType::Warning, reason, msg.to_string()).await;
        }
    }
    let api: Api<BucketAccess> =
        Api::namespaced(ctx.client.clone(), &ba.namespace().unwrap_or_default());
    let patch = json!({"status": next});
    api.patch_status(
        &ba.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Events are best effort: a failed Event must not fail the reconcile.
pub(crate) async fn event<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!(%error, name = %obj.name_any(), reason, "cannot publish Event");
    }
}

async fn cleanup(ba: &BucketAccess, ctx: &Ctx) -> Result<Action, Error> {
    let ns = ba.namespace().unwrap_or_default();
    let name = ba.name_any();
    // Deletion needs only the ServiceAccount and account: a spec that no
    // longer validates must not strand its role.
    let spec = ValidSpec {
        service_account: ba.spec.service_account_name.clone(),
        bucket_account: ba.spec.bucket_account.clone(),
        buckets: Vec::new(),
        suspended: ba.spec.suspended,
        region: None,
    };
    match provision::desired_role(&ctx.cfg, ctx.trust.issuer(), &ns, &name, &spec) {
        Ok(role) => remove_role(ba, ctx, &role).await?,
        Err(e) => {
            let note = format!("no IAM cleanup: {e}");
            event(ctx, ba, EventType::Warning, "CleanupSkipped", note).await;
        }
    }
    crate::sa::release_service_account(ba, ctx, &ns, &name, &ba.spec.service_account_name).await?;
    Ok(Action::await_change())
}

async fn remove_role(ba: &BucketAccess, ctx: &Ctx, role: &DesiredRole) -> Result<(), Error> {
    let clients = ctx
        .accounts
        .get(&role.account)
        .await
        .map_err(|e| Error::Retry(e.to_string()))?;
    match provision::deprovision(&clients.iam, role).await {
        Ok(Removed::Deleted) => {
            let note = format!("deleted role {} and its inline policy", role.arn);
            event(ctx, ba, EventType::Normal, "RoleDeleted", note).await;
        }
        Ok(Removed::AlreadyGone) => {}
        // Not ours: never touched, and no reason to block the deletion.
        Err(e @ (ProvisionError::Foreign { .. } | ProvisionError::Conflict { .. })) => {
            event(ctx, ba, EventType::Warning, e.reason(), e.to_string()).await;
        }
        Err(e) => {
            let msg = e.to_string();
            let conds = [Cond::new(
                READY,
                Some(false),
                "DeletionFailed",
                format!("cannot delete the role yet: {msg}"),
            )];
            publish_status(ba, ctx, None, &conds, Some(("DeletionFailed", &msg))).await?;
            return Err(Error::Retry(msg));
        }
    }
    Ok(())
}
