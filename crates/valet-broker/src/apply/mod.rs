//! `valet broker apply -f FILE... [--dry-run]`: the controller's work for
//! teams without the controller, from files in a pipeline.
//!
//! Every plan is computed (IAM and S3 reads only) and printed before the
//! first write, so a reviewer sees the whole change; `--dry-run` stops
//! there. Buckets claimed in the files are planned first, so a BucketAccess
//! may grant by `bucketClaimName` a bucket this very run creates.
//!
//! The files carry the platform's BucketAccessPolicies, BucketClasses and
//! the Namespaces (for their labels) too: the same rules as in a cluster,
//! judged before any AWS call, so a refused object costs nothing and
//! changes nothing.

mod read;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::{StreamExt, stream};

use valet_buckets::desired::DesiredBucket;
use valet_buckets::plan::Change;
use valet_buckets::reconcile::{apply_planned, plan_bucket};
use valet_buckets::resolve::{resolve, valid_classes};
use valet_buckets::status::{Failure, Outcome};

pub use read::{ClaimSource, Inputs, Source, Sourced, read_sources};
pub use render::render_plan;

use crate::accounts::Accounts;
use crate::claims::{ClaimedBuckets, Classes, defaults_for};
use crate::crd::ValidSpec;
use crate::guard::{grant_requests, permitted_condition};
use crate::permit;
use crate::provision::{self, Plan};
use crate::status::service_account_annotations;
use crate::trust_gate::{TrustGate, TrustVerdict};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML: {source}")]
    Yaml {
        path: String,
        index: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: document {index} is a {kind} but does not parse: {message}")]
    Object {
        path: String,
        index: usize,
        kind: &'static str,
        message: String,
    },
    #[error(
        "{path}: document {index} ({kind}) has unknown field(s) {}: remove or correct them (a field the broker does not know is never ignored)",
        .fields.join(", ")
    )]
    UnknownFields {
        path: String,
        index: usize,
        kind: &'static str,
        fields: Vec<String>,
    },
    #[error("{path}: document {index}: {kind} {name}: {message}")]
    Invalid {
        path: String,
        index: usize,
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("no BucketAccess or BucketClaim objects in the files given")]
    Empty,
}

/// Exit code of `broker apply`: refused input, not permitted, or a trust link failing.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code of `broker apply`: it could not run (a file, the config, AWS).
pub const EXIT_ERROR: u8 = 2;

/// Why an object has no plan. The two exit differently: a refusal is the
/// input's fault (fix the object or the policy), a failure is not (retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ItemError {
    /// Invalid, or not allowed by any policy or class: decided before any AWS
    /// call; or a resource that is not ours.
    #[error("{0}")]
    Refused(String),
    /// AWS could not be read (credentials, the provisioning role, IAM, S3).
    #[error("{0}")]
    Failed(String),
}

/// What happens to one BucketAccess.
pub struct Item {
    pub source: Source,
    pub outcome: Result<Planned, ItemError>,
}

pub struct Planned {
    pub plan: Plan,
    /// Which policies allowed it (the `Permitted` condition's message).
    pub permitted: String,
    pub trust: TrustVerdict,
    /// This run creates or repairs the IAM OIDC provider the trust
    /// verdict found missing or wrong (`createOidcProvider`), and checks
    /// the link again afterwards.
    pub provider_planned: bool,
    pub annotations: Vec<(String, String)>,
}

/// What happens to one BucketClaim's bucket.
pub struct ClaimItem {
    pub source: ClaimSource,
    pub outcome: Result<PlannedBucket, ItemError>,
}

pub struct PlannedBucket {
    pub class: String,
    pub bucket: DesiredBucket,
    /// S3 writes, in order; empty is the steady state.
    pub changes: Vec<Change>,
}

/// The IAM OIDC provider this run creates or repairs in a bucket account.
pub struct ProviderPlan {
    pub arn: String,
    pub audience: String,
    /// What the check found.
    pub found: String,
}

/// Every plan of one run.
pub struct Plans {
    pub claims: Vec<ClaimItem>,
    pub accesses: Vec<Item>,
    /// Bucket account -> the provider planned there.
    pub providers: BTreeMap<String, ProviderPlan>,
}

impl Item {
    /// Planned, but a link of the trust chain fails that this run does not repair.
    pub fn trust_failed(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|p| !p.trust.ok && !p.provider_planned)
    }
}

impl Plans {
    fn errors(&self) -> impl Iterator<Item = &ItemError> {
        let claims = self.claims.iter().filter_map(|c| c.outcome.as_ref().err());
        let accesses = self
            .accesses
            .iter()
            .filter_map(|i| i.outcome.as_ref().err());
        claims.chain(accesses)
    }

    /// Whether any object was refused or could not be planned.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// The exit code of a whole apply: 2 when anything could not run, else
    /// 1 when anything was refused or a trust link fails, else 0.
    pub fn exit_code(&self, execute_failed: bool) -> u8 {
        let failed = self.errors().any(|e| matches!(e, ItemError::Failed(_)));
        let refused = self.errors().any(|e| matches!(e, ItemError::Refused(_)))
            || self.accesses.iter().any(Item::trust_failed);
        if failed || execute_failed {
            EXIT_ERROR
        } else if refused {
            EXIT_REFUSED
        } else {
            0
        }
    }
}

/// Computes every plan (IAM and S3 reads only; none for a refused object),
/// `concurrency` objects at a time (the config's, as the controller),
/// keeping the files' order.
pub async fn plan_all(inputs: &Inputs, accounts: &Accounts, gate: &TrustGate) -> Plans {
    let n = usize::from(accounts.config().concurrency.max(1));
    let classes = &valid_classes(&inputs.classes);
    let claims: Vec<ClaimItem> = stream::iter(&inputs.claims)
        .map(|source| async move {
            ClaimItem {
                source: source.clone(),
                outcome: plan_claim(source, inputs, classes, accounts).await,
            }
        })
        .buffered(n)
        .collect()
        .await;
    let accesses = stream::iter(&inputs.accesses)
        .map(|source| {
            let claims = &claims;
            async move {
                Item {
                    source: source.clone(),
                    outcome: plan_access(source, inputs, claims, accounts, gate).await,
                }
            }
        })
        .buffered(n)
        .collect()
        .await;
    let mut plans = Plans {
        claims,
        accesses,
        providers: BTreeMap::new(),
    };
    if accounts.config().create_oidc_provider {
        plan_providers(&mut plans, gate);
    }
    plans
}

async fn plan_claim(
    source: &ClaimSource,
    inputs: &Inputs,
    classes: &Classes,
    accounts: &Accounts,
) -> Result<PlannedBucket, ItemError> {
    let claim = &source.object;
    let defaults = defaults_for(accounts.config(), classes, claim);
    // Judged before the first AWS call: a refused claim touches nothing.
    let bucket = resolve(claim, classes, &inputs.labels(&source.namespace), &defaults)
        .map_err(|e| ItemError::Refused(format!("refused: {e}")))?;
    let s3 = accounts
        .s3(&bucket.account, &bucket.region)
        .await
        .map_err(|e| ItemError::Failed(e.to_string()))?;
    // Someone else's bucket under the name, or ours in another region: the
    // input must change. The rest is S3 failing.
    let changes = plan_bucket(&s3, &bucket)
        .await
        .map_err(|e| match e.failure {
            Failure::Refused => ItemError::Refused(e.message),
            Failure::Transient | Failure::Error => ItemError::Failed(e.message),
        })?;
    Ok(PlannedBucket {
        class: claim.spec.bucket_class_name.clone(),
        bucket,
        changes,
    })
}

/// Points grants by `bucketClaimName` at the buckets of claims planned in
/// the same run (pipeline mode has no cluster to look other claims up in).
fn resolve_claimed(
    spec: &mut ValidSpec,
    namespace: &str,
    claims: &[ClaimItem],
) -> Result<(), ItemError> {
    let mut claimed = ClaimedBuckets::default();
    for index in 0..spec.buckets.len() {
        let Some(claim) = spec.buckets[index].claim.clone() else {
            continue;
        };
        let where_ = format!("spec.buckets[{index}].bucketClaimName {claim}");
        let Some(item) = claims
            .iter()
            .find(|c| c.source.namespace == namespace && c.source.name() == claim)
        else {
            return Err(ItemError::Refused(format!(
                "{where_}: no BucketClaim {namespace}/{claim} in the files (pipeline mode grants only buckets claimed in the same run: add the claim's file with -f)"
            )));
        };
        // The claim's own error is printed with it, above: not said twice.
        let planned = item.outcome.as_ref().map_err(|e| {
            let why = format!(
                "{where_}: BucketClaim {namespace}/{claim} has no bucket (see its error above)"
            );
            match e {
                ItemError::Refused(_) => ItemError::Refused(why),
                ItemError::Failed(_) => ItemError::Failed(why),
            }
        })?;
        claimed
            .add(
                &mut spec.buckets[index],
                spec.bucket_account.as_deref(),
                &where_,
                &planned.class,
                &planned.bucket,
            )
            .map_err(|(_, message)| ItemError::Refused(message))?;
    }
    claimed.finish(spec);
    Ok(())
}

async fn plan_access(
    source: &Source,
    inputs: &Inputs,
    claims: &[ClaimItem],
    accounts: &Accounts,
    gate: &TrustGate,
) -> Result<Planned, ItemError> {
    let cfg = accounts.config();
    let refused = |e: &dyn std::fmt::Display| ItemError::Refused(e.to_string());
    let failed = |e: &dyn std::fmt::Display| ItemError::Failed(e.to_string());
    let name = source.name().to_string();
    let mut spec = source.object.spec.validate().map_err(|e| refused(&e))?;
    resolve_claimed(&mut spec, &source.namespace, claims)?;
    let role = provision::desired_role(cfg, gate.issuer(), &source.namespace, &name, &spec)
        .map_err(|e| refused(&e))?;
    // Judged before the first AWS call: a refused object touches nothing.
    let decision = permit::decide(
        &inputs.policies,
        cfg.default_bucket_account.as_deref(),
        &inputs.namespace(&source.namespace),
        &role.account,
        &grant_requests(&spec),
    );
    let permitted = permitted_condition(&decision).message;
    decision.map_err(|e| ItemError::Refused(format!("refused: {e}")))?;
    let clients = accounts.get(&role.account).await.map_err(|e| failed(&e))?;
    let trust = gate.check(&clients, &role).await;
    let region = cfg.bucket_region(&role.account);
    let annotations =
        service_account_annotations(&cfg.annotation_prefix, &role.arn, &spec, region, &name)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
    let plan = if spec.suspended {
        provision::plan_revoke(&clients.iam, role).await
    } else {
        provision::plan(&clients.iam, role).await
    }
    // IAM failing is not the input's fault; a foreign or conflicting role is.
    .map_err(|e| {
        if e.transient() {
            failed(&e)
        } else {
            refused(&e)
        }
    })?;
    Ok(Planned {
        plan,
        permitted,
        trust,
        provider_planned: false,
        annotations,
    })
}

/// With `createOidcProvider`, a provider link that fails (missing, or
/// without the audience or thumbprint) is a change this run makes, shown in
/// the plan; the link is checked again once it is made.
fn plan_providers(plans: &mut Plans, gate: &TrustGate) {
    for planned in plans
        .accesses
        .iter_mut()
        .filter_map(|i| i.outcome.as_mut().ok())
    {
        if planned.trust.ok || planned.trust.reason != crate::trust_gate::PROVIDER_INVALID {
            continue;
        }
        planned.provider_planned = true;
        let role = &planned.plan.role;
        plans
            .providers
            .entry(role.account.clone())
            .or_insert_with(|| ProviderPlan {
                arn: gate.provider_arn(role),
                audience: gate.audience().to_string(),
                // Without the fix: making it is this plan's change.
                found: planned.trust.problem.clone(),
            });
    }
}

/// Makes the planned OIDC providers through `creator` (a gate allowed to
/// create them), then checks each waiting trust link again: a repaired link
/// no longer counts against the run, one still failing does. One line per
/// check.
pub async fn make_providers(
    plans: &mut Plans,
    accounts: &Accounts,
    creator: &TrustGate,
) -> Vec<String> {
    let mut out = Vec::new();
    for planned in plans
        .accesses
        .iter_mut()
        .filter_map(|i| i.outcome.as_mut().ok())
        .filter(|p| p.provider_planned)
    {
        // No longer waiting, whatever comes of it: without the account's
        // clients the provider is not made and the failing link counts
        // against the run, with a line saying why.
        planned.provider_planned = false;
        let clients = match accounts.get(&planned.plan.role.account).await {
            Ok(clients) => clients,
            Err(e) => {
                out.push(format!("trust still FAIL: {e}"));
                continue;
            }
        };
        let v = creator.check(&clients, &planned.plan.role).await;
        let word = if v.ok { "repaired" } else { "still FAIL" };
        out.push(format!("trust {word}: {}", v.message));
        planned.trust = v;
    }
    out
}

/// Runs the plans: buckets first (a grant may name one), then roles,
/// `concurrency` at a time. Returns one line per object, in the files' order.
pub async fn execute_all(plans: &Plans, accounts: &Accounts) -> Vec<Result<String, String>> {
    let n = usize::from(accounts.config().concurrency.max(1));
    let claims = plans
        .claims
        .iter()
        .filter_map(|i| Some((&i.source, i.outcome.as_ref().ok()?)));
    let mut out: Vec<_> = stream::iter(claims)
        .map(|(source, p)| execute_claim(source, p, accounts))
        .buffered(n)
        .collect()
        .await;
    let roles = plans
        .accesses
        .iter()
        .filter_map(|i| i.outcome.as_ref().ok());
    let roles: Vec<_> = stream::iter(roles)
        .map(|p| execute_role(p, accounts))
        .buffered(n)
        .collect()
        .await;
    out.extend(roles);
    out
}

async fn execute_claim(
    source: &ClaimSource,
    p: &PlannedBucket,
    accounts: &Accounts,
) -> Result<String, String> {
    let b = &p.bucket;
    let what = format!("BucketClaim {}/{}", source.namespace, source.name());
    let s3 = accounts
        .s3(&b.account, &b.region)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    match apply_planned(&s3, b, &p.changes).await {
        Outcome::Provisioned { .. } => Ok(format!(
            "{what}: bucket {} in {} ({} change(s))",
            b.name,
            b.region,
            p.changes.len()
        )),
        Outcome::Failed { error, .. } => Err(format!("{what}: {error}")),
    }
}

async fn execute_role(p: &Planned, accounts: &Accounts) -> Result<String, String> {
    let role = &p.plan.role;
    let what = format!("BucketAccess {}/{}", role.namespace, role.bucket_access);
    let clients = accounts
        .get(&role.account)
        .await
        .map_err(|e| e.to_string())?;
    provision::execute(&clients.iam, &p.plan)
        .await
        .map(|_| format!("{what}: {} ({} change(s))", role.arn, p.plan.steps.len()))
        .map_err(|e| format!("{what}: {e}"))
}

/// Writes one ServiceAccount manifest per planned BucketAccess into `dir`
/// (`NAMESPACE.NAME.yaml`), annotated as the controller would annotate it,
/// for a cluster whose ServiceAccounts come from Git. Returns the paths.
pub fn write_service_accounts(plans: &Plans, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for p in plans
        .accesses
        .iter()
        .filter_map(|i| i.outcome.as_ref().ok())
    {
        let role = &p.plan.role;
        let mut sa = k8s_openapi::api::core::v1::ServiceAccount::default();
        sa.metadata.name = Some(role.service_account.clone());
        sa.metadata.namespace = Some(role.namespace.clone());
        sa.metadata.annotations = Some(p.annotations.iter().cloned().collect());
        // k8s-openapi writes apiVersion and kind itself.
        let yaml = serde_yaml_ng::to_string(&sa).map_err(std::io::Error::other)?;
        let path = dir.join(format!("{}.{}.yaml", role.namespace, role.service_account));
        std::fs::write(&path, yaml)?;
        written.push(path);
    }
    Ok(written)
}
