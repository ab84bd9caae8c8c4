//! Fixtures for the trust-chain tests: a per-test HTTPS OIDC issuer, one
//! moto server per test binary, and a fresh bucket account per test (moto
//! isolates accounts), reached by AssumeRole from moto's default account as
//! the broker reaches a real bucket account.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use serde_json::{Value, json};
use valet_core::arn::RoleArn;
use valet_testkit::moto::Moto;
use valet_testkit::oidc::OidcIssuer;
use valet_trust::aws::{AwsClients, AwsConfig};
use valet_trust::{
    ChainInput, Link, LinkResult, OidcHttp, SecretToken, Status, TokenSource, TrustChecker,
    TrustReport,
};

pub const NS: &str = "team-a";
pub const SA: &str = "media-app";
pub const AUD: &str = "sts.amazonaws.com";
/// moto's default account: the "cluster" account of these tests.
pub const CLUSTER_ACCOUNT: &str = "123456789012";

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start().expect("start moto_server (pip install 'moto[server]')"))
}

/// A bucket account no other test in this binary uses.
pub fn fresh_account() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!("2222{:08}", NEXT.fetch_add(1, Ordering::SeqCst))
}

pub fn aws_config() -> AwsConfig {
    AwsConfig {
        region: Some("eu-west-1".to_string()),
        iam_endpoint: Some(moto().endpoint()),
        sts_endpoint: Some(moto().endpoint()),
        credentials: Some(SharedCredentialsProvider::new(Credentials::new(
            "AKIDCLUSTER",
            "secret",
            None,
            None,
            "test",
        ))),
    }
}

/// One ServiceAccount's chain, with the issuer up and the bucket account
/// reachable; IAM objects are added by each test.
pub struct Chain {
    pub issuer: OidcIssuer,
    pub account: String,
    /// Clients in the cluster (default) account.
    pub cluster: AwsClients,
    /// Clients in the bucket account, through its provisioning role.
    pub bucket: AwsClients,
    pub role: RoleArn,
}

impl Chain {
    pub async fn new() -> Chain {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let issuer = OidcIssuer::start().await.expect("start OIDC issuer");
        let account = fresh_account();
        let cluster = AwsClients::load(&aws_config()).await;
        let bucket = cluster
            .assume_checked(
                &format!("arn:aws:iam::{account}:role/valet-provisioner"),
                Some("ext-1234"),
                "valet-test",
            )
            .await
            .expect("assume the provisioning role in moto");
        let role = RoleArn::parse(&format!(
            "arn:aws:iam::{account}:role/storage-valet/{NS}-{SA}"
        ))
        .expect("role ARN");
        Chain {
            issuer,
            account,
            cluster,
            bucket,
            role,
        }
    }

    /// A chain with every link in place.
    pub async fn healthy() -> Chain {
        let c = Chain::new().await;
        c.create_provider(&c.bucket, &[AUD], &[&c.issuer.ca_thumbprint()])
            .await;
        c.create_role(c.trust_for(
            &c.provider_arn(),
            &format!("system:serviceaccount:{NS}:{SA}"),
        ))
        .await;
        c
    }

    pub fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            self.account,
            self.issuer.provider_url()
        )
    }

    pub async fn create_provider(
        &self,
        clients: &AwsClients,
        client_ids: &[&str],
        thumbprints: &[&str],
    ) {
        clients
            .iam()
            .create_open_id_connect_provider()
            .url(self.issuer.url())
            .set_client_id_list(Some(client_ids.iter().map(|s| s.to_string()).collect()))
            .set_thumbprint_list(Some(thumbprints.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .expect("create OIDC provider in moto");
    }

    pub fn trust_for(&self, provider_arn: &str, sub: &str) -> Value {
        self.trust_with(
            provider_arn,
            json!({"StringEquals": {
                format!("{}:sub", self.issuer.provider_url()): sub,
                format!("{}:aud", self.issuer.provider_url()): AUD,
            }}),
        )
    }

    pub fn trust_with(&self, provider_arn: &str, condition: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]})
    }

    pub async fn create_role(&self, trust: Value) {
        self.bucket
            .iam()
            .create_role()
            .role_name(self.role.role_name())
            .path(self.role.path())
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("create role in moto");
    }

    pub fn http(&self) -> OidcHttp {
        OidcHttp::with_ca_pem(self.issuer.ca_pem().as_bytes(), "test issuer CA").expect("TLS roots")
    }

    pub fn checker(&self) -> TrustChecker {
        TrustChecker::new(self.http(), Ok(self.bucket.clone()))
    }

    pub fn token(&self) -> SecretToken {
        SecretToken::new(
            self.issuer
                .mint(NS, SA, &[AUD], Duration::from_secs(3600))
                .expect("mint"),
        )
    }

    pub fn input(&self, token: SecretToken) -> ChainInput {
        ChainInput {
            issuer: self.issuer.url(),
            namespace: NS.to_string(),
            service_account: SA.to_string(),
            role_arn: Ok(self.role.clone()),
            audience: AUD.to_string(),
            token: TokenSource::Provided(token),
            assume: false,
            fix: false,
        }
    }

    pub async fn run(&self, input: &ChainInput) -> TrustReport {
        self.checker().check_chain(input).await
    }
}

/// The link, or a panic showing the whole report.
pub fn link(report: &TrustReport, l: Link) -> LinkResult {
    report
        .link(l)
        .cloned()
        .unwrap_or_else(|| panic!("no {l:?} in {report:#?}"))
}

/// Asserts `l` has `status`, its reason contains `reason` and its fix
/// contains `fix`; returns the link for more checks.
pub fn expect(
    report: &TrustReport,
    l: Link,
    status: Status,
    reason: &str,
    fix: &str,
) -> LinkResult {
    let r = link(report, l);
    assert_eq!(r.status, status, "{l:?}: {r:#?}\nreport: {report:#?}");
    assert!(
        r.reason.contains(reason),
        "{l:?} reason lacks {reason:?}: {}",
        r.reason
    );
    if status == Status::Pass || status == Status::Skip {
        assert!(r.fix.is_none(), "{l:?} has a fix: {r:?}");
    } else {
        let f = r.fix.clone().unwrap_or_default();
        assert!(f.contains(fix), "{l:?} fix lacks {fix:?}: {f}");
    }
    r
}

/// Every link except those in `except` passes (link 6 is skipped unless asked).
pub fn all_pass_except(report: &TrustReport, except: &[Link]) {
    for l in &report.links {
        if except.contains(&l.link) {
            continue;
        }
        let want = if l.link == Link::Assume {
            Status::Skip
        } else {
            Status::Pass
        };
        assert_eq!(l.status, want, "{:?}: {l:#?}", l.link);
    }
}

/// The token must never leak into a report.
pub fn assert_no_token(report: &TrustReport, token: &SecretToken) {
    let text = serde_json::to_string(report).unwrap_or_default();
    let sig = token.expose().rsplit('.').next().unwrap_or_default();
    assert!(
        !text.contains(token.expose()) && !text.contains(sig),
        "token leaked: {text}"
    );
}
