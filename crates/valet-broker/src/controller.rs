//! `valet broker`: the BucketAccess controller behind a Lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{info, warn};
use valet_trust::OidcHttp;
use valet_trust::aws::AwsClients;

use crate::access_policy::BucketAccessPolicy;
use valet_buckets::crd::{BucketClaim, BucketClass};

use crate::accounts::Accounts;
use crate::claims::{claim_error_policy, reconcile_claim};
use crate::config::BrokerConfig;
use crate::crd::BucketAccess;
use crate::iam::IamProbe;
use crate::lease::LeaseLock;
use crate::metrics::Metrics;
use crate::reconcile::{Ctx, error_policy, reconcile};
use crate::status::ANN_OWNER;
use crate::trust_gate::TrustGate;

pub const CONTROLLER_NAME: &str = "storage-valet-broker";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot discover the OIDC issuer from the API server ({0}): set oidcIssuer in the broker config or --oidc-issuer"
    )]
    Issuer(String),
    #[error("OIDC HTTP client: {0}")]
    Http(String),
}

/// Everything a broker needs besides the Kubernetes client.
pub struct BrokerParts {
    pub cfg: Arc<BrokerConfig>,
    pub issuer: String,
    pub accounts: Arc<Accounts>,
    pub trust: Arc<TrustGate>,
    pub metrics: Arc<Metrics>,
}

impl BrokerParts {
    /// Resolves the issuer, loads AWS credentials (default chain) and the OIDC client.
    pub async fn build(
        client: &kube::Client,
        cfg: BrokerConfig,
        oidc_ca_pem: Option<(&[u8], &str)>,
    ) -> Result<BrokerParts, StartError> {
        let issuer = match &cfg.oidc_issuer {
            Some(i) => i.clone(),
            None => discover_issuer(client).await.map_err(StartError::Issuer)?,
        };
        let http = match oidc_ca_pem {
            Some((pem, origin)) => OidcHttp::with_ca_pem(pem, origin),
            None => OidcHttp::new(Vec::new()),
        }
        .map_err(|e| StartError::Http(e.to_string()))?;
        let aws = AwsClients::load(&cfg.aws_config()).await;
        Ok(BrokerParts::new(cfg, issuer, aws, http))
    }

    /// From parts already made (tests inject credentials and CA roots here).
    pub fn new(cfg: BrokerConfig, issuer: String, aws: AwsClients, http: OidcHttp) -> BrokerParts {
        let cfg = Arc::new(cfg);
        let ttl = Duration::from_secs(cfg.resync_seconds.max(30));
        let trust = Arc::new(TrustGate::new(
            http,
            &issuer,
            &cfg.audience,
            cfg.create_oidc_provider,
            ttl,
        ));
        let probe = Arc::new(IamProbe::default());
        let accounts = Arc::new(Accounts::new(aws, cfg.clone(), probe.clone()));
        let metrics = Arc::new(Metrics::new(probe, accounts.s3_probe().clone()));
        BrokerParts {
            cfg,
            issuer,
            accounts,
            trust,
            metrics,
        }
    }

    pub fn context(&self, client: kube::Client, instance: Option<String>) -> Arc<Ctx> {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance,
        };
        Arc::new(Ctx {
            client: client.clone(),
            cfg: self.cfg.clone(),
            accounts: self.accounts.clone(),
            trust: self.trust.clone(),
            recorder: Recorder::new(client, reporter),
            metrics: self.metrics.clone(),
        })
    }
}

/// The issuer the API server advertises (its `--service-account-issuer`).
pub async fn discover_issuer(client: &kube::Client) -> Result<String, String> {
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client.request_text(req).await.map_err(|e| e.to_string())?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    doc.get("issuer")
        .and_then(|i| i.as_str())
        .map(str::to_string)
        .ok_or_else(|| "the discovery document has no issuer".to_string())
}

/// Runs the controller until `shutdown` resolves. Reconciles nothing unless
/// this replica holds the Lease; stops reconciling as soon as it loses it,
/// or cannot renew it within the renew deadline.
pub async fn run_with_lease(
    ctx: Arc<Ctx>,
    lock: LeaseLock,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let health = &ctx.metrics.health;
    health.set_election_period(lock.duration());
    loop {
        // Follower: retry until the Lease is ours.
        let acquired_at = loop {
            let attempt = Instant::now();
            match tokio::time::timeout(lock.renew_deadline(), lock.try_acquire()).await {
                Ok(Ok(true)) => {
                    health.beat(true);
                    break attempt;
                }
                Ok(Ok(false)) => health.beat(true),
                Ok(Err(error)) => {
                    health.beat(false);
                    warn!(%error, "cannot read the lease; retrying");
                }
                Err(_) => {
                    health.beat(false);
                    warn!(timeout = ?lock.renew_deadline(), "the lease API did not answer; retrying");
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(lock.renew_interval()) => {}
            }
        };
        info!(identity = %lock.identity(), "leading: reconciling BucketAccess objects");
        ctx.metrics.leader.set(1);
        health.set_leading(true);
        let controller = run(ctx.clone());
        tokio::pin!(controller);
        let renew = keep_lease(&lock, acquired_at, health);
        tokio::pin!(renew);
        tokio::select! {
            _ = &mut shutdown => {
                ctx.metrics.leader.set(0);
                health.set_leading(false);
                match tokio::time::timeout(lock.renew_deadline(), lock.release()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => warn!(%error, "cannot release the lease"),
                    Err(_) => warn!("cannot release the lease: the API did not answer"),
                }
                return;
            }
            reason = &mut renew => {
                // Dropping the controller here cancels every reconcile in flight.
                ctx.metrics.leader.set(0);
                health.set_leading(false);
                warn!(identity = %lock.identity(), reason, "stepped down: stopped reconciling");
            }
            _ = &mut controller => return,
        }
    }
}

/// Renews until the Lease is refused or not renewed within the renew
/// deadline; returns why. A failed renewal is retried until the deadline:
/// one API error is not a lost Lease, a renewal not done in time is.
async fn keep_lease(
    lock: &LeaseLock,
    mut renewed_at: Instant,
    health: &crate::health::Health,
) -> &'static str {
    const LATE: &str = "the lease was not renewed within the renew deadline";
    loop {
        tokio::time::sleep_until(renewed_at + lock.renew_interval()).await;
        loop {
            let deadline = renewed_at + lock.renew_deadline();
            let attempt = Instant::now();
            if attempt >= deadline {
                return LATE;
            }
            match tokio::time::timeout_at(deadline, lock.try_acquire()).await {
                Ok(Ok(true)) => {
                    health.beat(true);
                    renewed_at = attempt;
                    break;
                }
                Ok(Ok(false)) => {
                    health.beat(true);
                    return "another replica holds the lease";
                }
                Ok(Err(error)) => {
                    health.beat(false);
                    warn!(%error, "lease renewal failed; retrying within the renew deadline");
                }
                Err(_) => {
                    health.beat(false);
                    return LATE;
                }
            }
            tokio::time::sleep_until((Instant::now() + lock.retry_period()).min(deadline)).await;
        }
    }
}

/// The controllers themselves (no Lease): BucketClaims, and every BucketAccess, plus the
/// ServiceAccounts they annotate (an edited annotation is repaired at once),
/// the BucketAccessPolicies (any change re-judges every BucketAccess) and
/// the Namespaces (relabelling re-judges the namespace's BucketAccesses), so
/// a grant no longer allowed is revoked at once, not at the next resync.
pub async fn run(ctx: Arc<Ctx>) {
    futures::join!(run_access(ctx.clone()), run_claims(ctx));
}

/// Every BucketClaim, plus the BucketClasses (any change re-judges every
/// claim) and the Namespaces (relabelling re-judges who may claim there).
async fn run_claims(ctx: Arc<Ctx>) {
    let client = ctx.client.clone();
    let concurrency = ctx.cfg.concurrency;
    let claims: Api<BucketClaim> = Api::all(client.clone());
    let classes: Api<BucketClass> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client);
    let controller = Controller::new(claims, watcher::Config::default());
    let every = controller.store();
    let in_namespace = controller.store();
    controller
        .watches(classes, watcher::Config::default(), move |_| {
            refs_where(&every, |_| true)
        })
        .watches(
            namespaces,
            watcher::Config::default(),
            move |ns: Namespace| {
                let name = ns.name_any();
                refs_where(&in_namespace, |o| {
                    o.namespace().as_deref() == Some(name.as_str())
                })
            },
        )
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(reconcile_claim, claim_error_policy, ctx)
        .for_each(|res| async move {
            if let Err(error) = res {
                warn!(%error, "claim reconcile error");
            }
        })
        .await;
}

/// The objects in a controller's store that `keep` selects, for a watch's mapper.
fn refs_where<K>(
    store: &kube::runtime::reflector::Store<K>,
    keep: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| keep(o))
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}

async fn run_access(ctx: Arc<Ctx>) {
    let client = ctx.client.clone();
    let concurrency = ctx.cfg.concurrency;
    let bas: Api<BucketAccess> = Api::all(client.clone());
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    let policies: Api<BucketAccessPolicy> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client);
    let controller = Controller::new(bas, watcher::Config::default());
    let synced = controller.store();
    let every = controller.store();
    let in_namespace = controller.store();
    let by_claim = controller.store();
    let work = controller
        .watches(policies, watcher::Config::default(), move |_| {
            refs_where(&every, |_| true)
        })
        .watches(
            namespaces,
            watcher::Config::default(),
            move |ns: Namespace| {
                let name = ns.name_any();
                refs_where(&in_namespace, |o| {
                    o.namespace().as_deref() == Some(name.as_str())
                })
            },
        )
        .watches(
            Api::<BucketClaim>::all(ctx.client.clone()),
            watcher::Config::default(),
            move |claim: BucketClaim| {
                let ns = claim.namespace();
                let name = claim.name_any();
                refs_where(&by_claim, |ba| {
                    ba.namespace() == ns
                        && (ba.spec.buckets.iter())
                            .any(|g| g.bucket_claim_name.as_deref() == Some(name.as_str()))
                })
            },
        )
        .watches(sas, watcher::Config::default(), |sa: ServiceAccount| {
            let ns = sa.namespace()?;
            let owner = sa.annotations().get(ANN_OWNER)?;
            Some(ObjectRef::<BucketAccess>::new(owner).within(&ns))
        })
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(error) = res {
                warn!(%error, "reconcile error");
            }
        });
    let ready = async {
        if synced.wait_until_ready().await.is_ok() {
            ctx.metrics.health.set_synced();
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = work => {}
        _ = ready => {}
    }
}
