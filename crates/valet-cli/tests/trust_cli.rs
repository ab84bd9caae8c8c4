//! `valet trust check` through its clap args and `run`/`check`: the issuer
//! discovered from the (in-process) API server, the token from TokenRequest,
//! the role from the ServiceAccount annotation, AWS from the default
//! credential chain into the bucket account via --bucket-account-role-arn.

#[path = "../../valet-trust/tests/trust_common/mod.rs"]
mod trust_common;

use std::process::ExitCode;
use std::sync::Once;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use trust_common::*;
use valet_cli::trust::{TrustCheckArgs, check, run};
use valet_testkit::apiserver::ApiServer;
use valet_trust::{Link, OutputFormat, Status, render};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: TrustCheckArgs,
}

/// The CLI reads AWS credentials from the default chain, i.e. the
/// environment. Every test calls this before anything else runs in it, and
/// all set the same values, so no thread reads the environment while it
/// changes.
fn aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDCLUSTER");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    });
}

struct Cluster {
    chain: Chain,
    api: ApiServer,
    dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

impl Cluster {
    /// The chain's issuer behind an API server that advertises it and
    /// mints its tokens; the ServiceAccount annotated with the role.
    async fn new(chain: Chain, annotate: bool) -> Cluster {
        aws_env();
        let api = ApiServer::start().await;
        chain.issuer.attach(&api);
        let mut sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": SA, "namespace": NS}}))
                .expect("sa");
        if annotate {
            sa.metadata.annotations = Some(
                [(
                    "eks.amazonaws.com/role-arn".to_string(),
                    chain.role.to_string(),
                )]
                .into_iter()
                .collect(),
            );
        }
        Api::<ServiceAccount>::namespaced(api.client(), NS)
            .create(&PostParams::default(), &sa)
            .await
            .expect("create SA");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("issuer-ca.pem");
        std::fs::write(&ca_file, chain.issuer.ca_pem()).expect("write CA");
        let kubeconfig = api.write_kubeconfig(dir.path()).expect("kubeconfig");
        Cluster {
            chain,
            api,
            dir,
            ca_file,
            kubeconfig,
        }
    }

    fn args(&self, extra: &[&str]) -> TrustCheckArgs {
        let account = &self.chain.account;
        let endpoint = moto().endpoint();
        let mut argv = vec![
            "valet-trust-check".to_string(),
            "--namespace".into(),
            NS.into(),
            "--service-account".into(),
            SA.into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--issuer-ca-file".into(),
            self.ca_file.display().to_string(),
            "--bucket-account-role-arn".into(),
            format!("arn:aws:iam::{account}:role/valet-provisioner"),
            "--external-id".into(),
            "ext-1234".into(),
            "--iam-endpoint".into(),
            endpoint.clone(),
            "--sts-endpoint".into(),
            endpoint,
            "--region".into(),
            "eu-west-1".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        Cli::try_parse_from(argv).expect("args parse").args
    }
}

#[tokio::test]
async fn passing_chain_from_cluster_defaults_exits_zero() {
    let c = Cluster::new(Chain::healthy().await, true).await;
    let args = c.args(&["--assume"]);
    let report = check(&args).await.expect("check runs");
    println!("{}", render(&report, OutputFormat::Table));
    for l in &report.links {
        assert_eq!(l.status, Status::Pass, "{:?}: {l:#?}", l.link);
    }
    assert_eq!(
        report.issuer.as_deref(),
        Some(c.chain.issuer.url().as_str()),
        "issuer discovered from the API server"
    );
    assert_eq!(
        report.role_arn.as_deref(),
        Some(c.chain.role.as_str()),
        "role from the annotation"
    );
    assert_eq!(run(args).await.expect("run"), ExitCode::SUCCESS);
    // The token came from TokenRequest, with our audience.
    let requests = c.api.requests();
    let token_request = requests
        .iter()
        .find(|r| {
            r.method == "POST"
                && r.path
                    .contains("/namespaces/team-a/serviceaccounts/media-app/token")
        })
        .unwrap_or_else(|| panic!("no TokenRequest in {requests:#?}"));
    assert!(
        token_request.body.contains("sts.amazonaws.com"),
        "{token_request:?}"
    );
}

#[tokio::test]
async fn fix_on_a_missing_provider_then_a_clean_pass() {
    let chain = Chain::new().await;
    chain
        .create_role(chain.trust_for(
            &chain.provider_arn(),
            &format!("system:serviceaccount:{NS}:{SA}"),
        ))
        .await;
    let c = Cluster::new(chain, true).await;
    let report = check(&c.args(&[])).await.expect("check runs");
    println!("{}", render(&report, OutputFormat::Table));
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        "has no IAM OIDC provider",
        "--fix",
    );
    assert_eq!(run(c.args(&[])).await.expect("run"), ExitCode::FAILURE);

    let report = check(&c.args(&["--fix"])).await.expect("check --fix runs");
    println!("{}", render(&report, OutputFormat::Table));
    assert_eq!(report.fixed.len(), 1, "{:?}", report.fixed);
    all_pass_except(&report, &[]);
    assert_eq!(run(c.args(&[])).await.expect("run"), ExitCode::SUCCESS);
}

#[tokio::test]
async fn broken_chain_as_json_with_a_token_file() {
    let chain = Chain::new().await;
    let url = chain.issuer.provider_url();
    chain
        .create_provider(
            &chain.bucket,
            &["other-client"],
            &[&chain.issuer.ca_thumbprint()],
        )
        .await;
    chain
        .create_role(chain.trust_with(
            &chain.provider_arn(),
            serde_json::json!({"StringLike": {format!("{url}:sub"): "system:serviceaccount:*:*"}}),
        ))
        .await;
    let c = Cluster::new(chain, false).await;
    let token_file = c.dir.path().join("token");
    std::fs::write(
        &token_file,
        c.chain.issuer.mint_expired(NS, SA, &[AUD]).expect("mint"),
    )
    .expect("write token");
    let role = c.chain.role.to_string();
    let args = c.args(&[
        "--token-file",
        &token_file.display().to_string(),
        "--role-arn",
        &role,
        "-o",
        "json",
    ]);
    assert_eq!(args.output, OutputFormat::Json);
    let report = check(&args).await.expect("check runs");
    println!("{}", render(&report, OutputFormat::Table));
    expect(&report, Link::Token, Status::Fail, "expired", "fresh token");
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        "not the audience",
        "add-client-id-to-open-id-connect-provider",
    );
    expect(
        &report,
        Link::RoleTrust,
        Status::Warn,
        "other namespaces",
        "StringEquals",
    );
    let json: serde_json::Value =
        serde_json::from_str(&render(&report, OutputFormat::Json)).expect("json");
    assert_eq!(json["links"][2]["link"], "token");
    assert_eq!(json["links"][2]["status"], "FAIL");
    assert!(json["links"][2]["fix"].as_str().is_some());
    let text = json.to_string();
    let token = std::fs::read_to_string(&token_file).expect("token");
    assert!(
        !text.contains(token.trim()),
        "the token leaked into the JSON report"
    );
    // No TokenRequest when a token file is given.
    assert!(!c.api.requests().iter().any(|r| r.path.contains("/token")));
}

#[tokio::test]
async fn missing_role_annotation_names_the_annotation() {
    let c = Cluster::new(Chain::healthy().await, false).await;
    let report = check(&c.args(&[])).await.expect("check runs");
    println!("{}", render(&report, OutputFormat::Table));
    expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        "has no eks.amazonaws.com/role-arn annotation",
        "kubectl -n team-a annotate serviceaccount media-app eks.amazonaws.com/role-arn=",
    );
    // A custom prefix is honoured.
    let report = check(&c.args(&["--annotation-prefix", "example.com"]))
        .await
        .expect("check runs");
    expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        "example.com/role-arn",
        "example.com/role-arn=",
    );
    expect(&report, Link::Assume, Status::Skip, "", "");
}

#[tokio::test]
async fn unreachable_sts_for_the_provisioning_role_is_reported_not_fatal() {
    let c = Cluster::new(Chain::healthy().await, true).await;
    // moto accepts any external ID, so break the STS endpoint instead.
    let mut args = c.args(&[]);
    args.target.sts_endpoint = Some(
        valet_testkit::oidc::OidcIssuer::unreachable_url()
            .expect("port")
            .replace("/keys", ""),
    );
    let report = check(&args).await.expect("check runs");
    expect(&report, Link::Issuer, Status::Pass, "issuer matches", "");
    expect(&report, Link::Token, Status::Pass, "verified", "");
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        "cannot assume",
        "--bucket-account-role-arn",
    );
}

#[tokio::test]
async fn api_server_down_and_no_issuer_flag() {
    let c = Cluster::new(Chain::healthy().await, true).await;
    c.api.set_down(true).await;
    let report = check(&c.args(&[])).await.expect("check runs");
    expect(
        &report,
        Link::Issuer,
        Status::Fail,
        "discover the issuer",
        "--oidc-issuer",
    );
    assert!(
        report.links[1..].iter().all(|l| l.status == Status::Skip),
        "{report:#?}"
    );
    // With --issuer and --token-file the cluster is not needed for links 1-3.
    let token_file = c.dir.path().join("token");
    std::fs::write(
        &token_file,
        c.chain
            .issuer
            .mint(NS, SA, &[AUD], Duration::from_secs(900))
            .expect("mint"),
    )
    .expect("write");
    let role = c.chain.role.to_string();
    let issuer = c.chain.issuer.url();
    let args = c.args(&[
        "--issuer",
        &issuer,
        "--token-file",
        &token_file.display().to_string(),
        "--role-arn",
        &role,
        "--audience",
        AUD,
    ]);
    let report = check(&args).await.expect("check runs");
    all_pass_except(&report, &[]);
}

#[tokio::test]
async fn audience_annotation_is_the_default_audience() {
    let c = Cluster::new(Chain::healthy().await, true).await;
    let sa_api = Api::<ServiceAccount>::namespaced(c.api.client(), NS);
    let patch = serde_json::json!({"metadata": {"annotations": {"eks.amazonaws.com/audience": "custom-aud"}}});
    sa_api
        .patch(
            SA,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("annotate audience");
    let report = check(&c.args(&[])).await.expect("check runs");
    assert_eq!(report.audience, "custom-aud");
    // The token is requested for that audience and verifies; the provider
    // was made for sts.amazonaws.com only, and the role pins that aud.
    expect(&report, Link::Token, Status::Pass, "aud custom-aud", "");
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        "not the audience \"custom-aud\"",
        "--client-id custom-aud",
    );
    expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        "does not admit \"custom-aud\"",
        "\"custom-aud\"",
    );
    // --audience wins over the annotation.
    let report = check(&c.args(&["--audience", AUD]))
        .await
        .expect("check runs");
    all_pass_except(&report, &[]);
}
