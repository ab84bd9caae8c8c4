//! A whole broker around one BucketAccess namespace: in-process API server,
//! in-process HTTPS OIDC issuer, moto for IAM/STS in a fresh bucket account
//! reached through AssumeRole with an external ID.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use valet_broker::config::{BrokerConfig, BucketAccountConfig};
use valet_broker::controller::BrokerParts;
use valet_broker::crd::{BucketAccess, BucketAccessSpec, Condition};
use valet_broker::iam::{Iam, IamCounts};
use valet_broker::reconcile::{Ctx, reconcile};
use valet_testkit::apiserver::{ApiServer, ResourceDef};
use valet_testkit::oidc::OidcIssuer;
use valet_trust::OidcHttp;
use valet_trust::aws::{AwsClients, AwsConfig};

use super::{fast_retry, moto};

pub const NS: &str = "team-a";
pub const EXTERNAL_ID: &str = "valet-ext-7";
/// The BucketAccessPolicy every Env starts with.
pub const ALLOW_ALL: &str = "allow-all-for-tests";
/// Namespace of the broker's Lease in the controller tests.
pub const LEASE_NS: &str = "storage-valet";

pub fn fresh_account() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("3333{:08}", NEXT.fetch_add(1, Ordering::SeqCst))
}

pub fn base_aws_config(iam_endpoint: &str) -> AwsConfig {
    AwsConfig {
        region: Some("eu-west-1".into()),
        iam_endpoint: Some(iam_endpoint.into()),
        sts_endpoint: Some(moto().endpoint()),
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDBROKER",
            "secret",
            None,
            None,
            "test",
        ))),
    }
}

pub struct Env {
    pub api: ApiServer,
    pub oidc: OidcIssuer,
    pub account: String,
    pub parts: BrokerParts,
    pub ctx: Arc<Ctx>,
}

impl Env {
    pub async fn new(cluster: &str) -> Env {
        Env::with(cluster, |_| {}).await
    }

    /// `tweak` edits the broker config before the broker is built.
    pub async fn with(cluster: &str, tweak: impl FnOnce(&mut BrokerConfig)) -> Env {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let api = ApiServer::start().await;
        api.register(
            ResourceDef::namespaced(
                "storage-valet.dev",
                "v1alpha1",
                "BucketAccess",
                "bucketaccesses",
            )
            .with_status(),
        );
        api.register(ResourceDef::cluster(
            "storage-valet.dev",
            "v1alpha1",
            "BucketAccessPolicy",
            "bucketaccesspolicies",
        ));
        api.register(ResourceDef::cluster(
            "storage-valet.dev",
            "v1alpha1",
            "BucketClass",
            "bucketclasses",
        ));
        api.register(
            ResourceDef::namespaced(
                "storage-valet.dev",
                "v1alpha1",
                "BucketClaim",
                "bucketclaims",
            )
            .with_status(),
        );
        // Tests of provisioning run under a policy that allows everything;
        // the guardrail tests delete it and write their own.
        let allow_all: valet_broker::access_policy::BucketAccessPolicySpec =
            serde_json::from_value(serde_json::json!({"namespaces": ["*"],
                "buckets": [{"name": "*", "maxAccess": "readwrite"}]}))
            .expect("policy");
        Api::<valet_broker::access_policy::BucketAccessPolicy>::all(api.client())
            .create(
                &PostParams::default(),
                &valet_broker::access_policy::BucketAccessPolicy::new(ALLOW_ALL, allow_all),
            )
            .await
            .expect("create the allow-all policy");
        let oidc = OidcIssuer::start().await.expect("OIDC issuer");
        oidc.attach(&api);
        let account = fresh_account();
        let mut cfg = BrokerConfig::new(cluster, "eu-west-1");
        cfg.oidc_issuer = Some(oidc.url());
        cfg.default_bucket_account = Some(account.clone());
        cfg.create_oidc_provider = true;
        cfg.retry = fast_retry();
        cfg.bucket_accounts.insert(
            account.clone(),
            BucketAccountConfig {
                provisioning_role_arn: Some(format!(
                    "arn:aws:iam::{account}:role/valet-provisioner"
                )),
                external_id: Some(EXTERNAL_ID.into()),
                permissions_boundary_arn: None,
                region: None,
            },
        );
        cfg.endpoints.iam = Some(moto().endpoint());
        cfg.endpoints.sts = Some(moto().endpoint());
        cfg.endpoints.s3 = Some(moto().endpoint());
        tweak(&mut cfg);
        cfg.validate().expect("valid test config");
        let aws = AwsClients::load(&base_aws_config(
            cfg.endpoints.iam.as_deref().unwrap_or_default(),
        ))
        .await;
        let http = OidcHttp::with_ca_pem(oidc.ca_pem().as_bytes(), "test issuer CA").expect("CA");
        let issuer = oidc.url();
        let parts = BrokerParts::new(cfg, issuer, aws, http);
        let ctx = parts.context(api.client(), Some("test".into()));
        Env {
            api,
            oidc,
            account,
            parts,
            ctx,
        }
    }

    /// A second broker replica on the same cluster and config (its own clients and counters).
    pub async fn replica(&self, identity: &str) -> (BrokerParts, Arc<Ctx>) {
        let cfg = (*self.parts.cfg).clone();
        let aws = AwsClients::load(&base_aws_config(
            cfg.endpoints.iam.as_deref().unwrap_or_default(),
        ))
        .await;
        let http =
            OidcHttp::with_ca_pem(self.oidc.ca_pem().as_bytes(), "test issuer CA").expect("CA");
        let parts = BrokerParts::new(cfg, self.oidc.url(), aws, http);
        let ctx = parts.context(self.api.client(), Some(identity.into()));
        (parts, ctx)
    }

    pub fn bas(&self) -> Api<BucketAccess> {
        Api::namespaced(self.api.client(), NS)
    }

    pub fn sas(&self) -> Api<ServiceAccount> {
        Api::namespaced(self.api.client(), NS)
    }

    pub async fn create(&self, name: &str, spec: BucketAccessSpec) -> BucketAccess {
        let ba = BucketAccess::new(name, spec);
        self.bas()
            .create(&PostParams::default(), &ba)
            .await
            .expect("create BucketAccess")
    }

    /// Who holds the broker's Lease (in `LEASE_NS`), if anyone.
    pub async fn lease_holder(&self) -> Option<String> {
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.api.client(), LEASE_NS);
        leases
            .get_opt("broker")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    }

    /// `Some` once BucketAccess `name` is Ready=True (for `wait_for`).
    pub async fn ready(&self, name: &str) -> Option<()> {
        let ba = self.get(name).await?;
        let ok = ba
            .status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ok.then_some(())
    }

    pub async fn get(&self, name: &str) -> Option<BucketAccess> {
        self.bas().get_opt(name).await.expect("get BucketAccess")
    }

    /// One reconcile of the stored object, as the controller would run it.
    pub async fn reconcile(&self, name: &str) -> Action {
        let ba = self.get(name).await.expect("BucketAccess exists");
        reconcile(Arc::new(ba), self.ctx.clone())
            .await
            .expect("reconcile returns an Action")
    }

    /// One pass (which also adds the finalizer), as the first reconcile of a new object.
    pub async fn settle(&self, name: &str) -> BucketAccess {
        self.reconcile(name).await;
        self.get(name).await.expect("still exists")
    }

    /// IAM in the bucket account, through the broker's own (counting) clients.
    pub async fn iam(&self) -> Iam {
        self.parts
            .accounts
            .get(&self.account)
            .await
            .expect("bucket account")
            .iam
            .clone()
    }

    pub fn counts(&self) -> IamCounts {
        self.parts.accounts.probe().counts()
    }

    /// Event reasons recorded for `name` so far.
    pub fn event_reasons(&self, name: &str) -> Vec<String> {
        self.api
            .list("events.k8s.io/v1", "Event")
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name)
            .filter_map(|e| e["reason"].as_str().map(String::from))
            .collect()
    }
}

pub fn condition<'a>(ba: &'a BucketAccess, type_: &str) -> &'a Condition {
    ba.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", ba.status))
}

/// Polls `check` until it holds (no fixed sleeps: the wait ends as soon as it does).
pub async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
