//! The chain through the library API: every link passing, and each way
//! links 1-3 break (issuer, keys, token), against a real HTTPS issuer.

mod trust_common;

use std::time::Duration;

use trust_common::*;
use valet_trust::{Link, OutputFormat, SecretToken, Status, render};

#[tokio::test]
async fn every_link_passes_and_assume_reports_the_caller() {
    let c = Chain::healthy().await;
    let token = c.token();
    let mut input = c.input(token.clone());
    input.assume = true;
    let report = c.run(&input).await;
    for l in &report.links {
        assert_eq!(l.status, Status::Pass, "{:?}: {l:#?}", l.link);
    }
    assert!(report.ok());
    let thumb = c.issuer.ca_thumbprint();
    expect(&report, Link::Provider, Status::Pass, &thumb, "");
    expect(
        &report,
        Link::Token,
        Status::Pass,
        &c.issuer.current_kid(),
        "",
    );
    let assumed = expect(&report, Link::Assume, Status::Pass, "assumed-role/", "");
    assert!(assumed.reason.contains(&c.account), "{assumed:?}");
    assert_no_token(&report, &token);
    let table = render(&report, OutputFormat::Table);
    assert!(
        table.contains("result: PASS (0 failed, 0 warned)"),
        "{table}"
    );
    assert!(!table.contains(token.expose()));
}

#[tokio::test]
async fn wrong_issuer_string_in_discovery_fails_link_1() {
    let c = Chain::healthy().await;
    let wrong = format!("{}/", c.issuer.url());
    c.issuer.set_discovery_issuer(&wrong);
    let report = c.run(&c.input(c.token())).await;
    println!("{}", render(&report, OutputFormat::Table));
    expect(
        &report,
        Link::Issuer,
        Status::Fail,
        "character for character",
        "--service-account-issuer=",
    );
    // Later links still run, so one report shows everything.
    expect(&report, Link::Keys, Status::Pass, "usable key", "");
    expect(&report, Link::Token, Status::Pass, "verified", "");
    assert!(!report.ok());
}

#[tokio::test]
async fn http_issuer_fails_link_1_and_skips_what_needs_it() {
    let c = Chain::healthy().await;
    let mut input = c.input(c.token());
    input.issuer = c.issuer.http_url();
    let report = c.run(&input).await;
    expect(
        &report,
        Link::Issuer,
        Status::Fail,
        "accept only https issuers",
        "https://127.0.0.1",
    );
    expect(&report, Link::Keys, Status::Skip, "link 1", "");
    expect(&report, Link::Provider, Status::Skip, "https issuer", "");
}

#[tokio::test]
async fn unreachable_issuer_fails_link_1() {
    let c = Chain::healthy().await;
    let mut input = c.input(c.token());
    input.issuer = valet_testkit::oidc::OidcIssuer::unreachable_url()
        .expect("port")
        .replace("/keys", "/id/x");
    let report = c.run(&input).await;
    expect(
        &report,
        Link::Issuer,
        Status::Fail,
        "unreachable",
        "reachable over the internet",
    );
}

#[tokio::test]
async fn untrusted_issuer_certificate_names_the_ca_flag() {
    let c = Chain::healthy().await;
    // Trust the platform's roots and another issuer's CA, not ours.
    let other = valet_testkit::oidc::OidcIssuer::start()
        .await
        .expect("second issuer");
    let http =
        valet_trust::OidcHttp::with_ca_pem(other.ca_pem().as_bytes(), "other CA").expect("roots");
    let checker = valet_trust::TrustChecker::new(http, Ok(c.bucket.clone()));
    let report = checker.check_chain(&c.input(c.token())).await;
    expect(&report, Link::Issuer, Status::Fail, "TLS", "--oidc-ca-file");
}

#[tokio::test]
async fn jwks_unreachable_fails_link_2() {
    let c = Chain::healthy().await;
    c.issuer.break_jwks().expect("break");
    let report = c.run(&c.input(c.token())).await;
    expect(&report, Link::Issuer, Status::Pass, "issuer matches", "");
    expect(
        &report,
        Link::Keys,
        Status::Fail,
        "unreachable",
        "reachable over the internet",
    );
    expect(&report, Link::Token, Status::Skip, "link 2", "");
    // No thumbprint without the JWKS host: a warning, not a failure.
    expect(
        &report,
        Link::Provider,
        Status::Warn,
        "thumbprint",
        "jwks_uri host",
    );
}

#[tokio::test]
async fn algorithm_not_listed_fails() {
    let c = Chain::healthy().await;
    c.issuer.set_signing_algs(&["HS256"]);
    let report = c.run(&c.input(c.token())).await;
    expect(&report, Link::Issuer, Status::Fail, "none of", "RS256");
    expect(
        &report,
        Link::Keys,
        Status::Fail,
        "discovery lists only",
        "RS256",
    );
}

#[tokio::test]
async fn rotated_key_unknown_kid_fails_link_3() {
    let c = Chain::healthy().await;
    let old = c.token();
    c.issuer.rotate_keys().expect("rotate");
    let report = c.run(&c.input(old.clone())).await;
    expect(&report, Link::Keys, Status::Pass, "usable key", "");
    expect(
        &report,
        Link::Token,
        Status::Fail,
        "does not publish",
        "--service-account-key-file",
    );
    assert_no_token(&report, &old);
    // A token from after the rotation verifies.
    let report = c.run(&c.input(c.token())).await;
    all_pass_except(&report, &[]);
}

#[tokio::test]
async fn expired_token_fails_link_3() {
    let c = Chain::healthy().await;
    let token = SecretToken::new(c.issuer.mint_expired(NS, SA, &[AUD]).expect("mint"));
    let report = c.run(&c.input(token)).await;
    expect(&report, Link::Token, Status::Fail, "expired", "fresh token");
    all_pass_except(&report, &[Link::Token]);
}

#[tokio::test]
async fn wrong_audience_fails_link_3() {
    let c = Chain::healthy().await;
    let token = SecretToken::new(
        c.issuer
            .mint(
                NS,
                SA,
                &["https://kubernetes.default.svc"],
                Duration::from_secs(600),
            )
            .expect("mint"),
    );
    let report = c.run(&c.input(token)).await;
    expect(
        &report,
        Link::Token,
        Status::Fail,
        "kubernetes.default.svc",
        "eks.amazonaws.com/audience: sts.amazonaws.com",
    );
}

#[tokio::test]
async fn token_for_another_service_account_fails_link_3() {
    let c = Chain::healthy().await;
    let token = SecretToken::new(
        c.issuer
            .mint("team-b", "other", &[AUD], Duration::from_secs(600))
            .expect("mint"),
    );
    let report = c.run(&c.input(token)).await;
    expect(
        &report,
        Link::Token,
        Status::Fail,
        "system:serviceaccount:team-b:other",
        "use a token of team-a/media-app",
    );
}

#[tokio::test]
async fn token_from_another_issuer_or_key_fails_link_3() {
    let c = Chain::healthy().await;
    // Signed by another issuer's key: a foreign (or forged) token.
    let other = valet_testkit::oidc::OidcIssuer::start()
        .await
        .expect("second issuer");
    let foreign = other
        .mint(NS, SA, &[AUD], Duration::from_secs(600))
        .expect("mint");
    let report = c.run(&c.input(SecretToken::new(foreign))).await;
    expect(
        &report,
        Link::Token,
        Status::Fail,
        "does not publish",
        "new token",
    );
    // Right key, wrong iss claim.
    let token = c
        .issuer
        .mint_with(NS, SA, &[AUD], Duration::from_secs(600), |claims| {
            claims.insert(
                "iss".into(),
                serde_json::json!("https://kubernetes.default.svc"),
            );
        })
        .expect("mint");
    let report = c.run(&c.input(SecretToken::new(token))).await;
    expect(
        &report,
        Link::Token,
        Status::Fail,
        "iss is \"https://kubernetes.default.svc\"",
        "--service-account-issuer=",
    );
}

#[tokio::test]
async fn token_request_through_the_api_server() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};
    let c = Chain::healthy().await;
    let api = valet_testkit::apiserver::ApiServer::start().await;
    c.issuer.attach(&api);
    let client = api.client();
    let mut input = c.input(c.token());
    input.token = valet_trust::TokenSource::Request(client.clone());
    // The ServiceAccount does not exist yet.
    let report = c.run(&input).await;
    expect(
        &report,
        Link::Token,
        Status::Fail,
        "does not exist",
        "kubectl -n team-a create serviceaccount media-app",
    );
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": SA, "namespace": NS}
    }))
    .expect("sa");
    Api::<ServiceAccount>::namespaced(client, NS)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create SA");
    let report = c.run(&input).await;
    all_pass_except(&report, &[]);
}
