//! Links 4 and 5 against IAM (moto) in a bucket account reached by
//! AssumeRole: each way the provider and the role trust break, and `--fix`.

mod trust_common;

use serde_json::json;
use trust_common::*;
use valet_trust::{Link, ProviderRef, Status};

fn sub() -> String {
    format!("system:serviceaccount:{NS}:{SA}")
}

#[tokio::test]
async fn provider_missing_fails_with_the_create_command() {
    let c = Chain::new().await;
    c.create_role(c.trust_for(&c.provider_arn(), &sub())).await;
    let report = c.run(&c.input(c.token())).await;
    let r = expect(
        &report,
        Link::Provider,
        Status::Fail,
        &format!("account {} has no IAM OIDC provider", c.account),
        "aws iam create-open-id-connect-provider --url https://127.0.0.1",
    );
    let fix = r.fix.unwrap_or_default();
    assert!(
        fix.contains(&format!("--thumbprint-list {}", c.issuer.ca_thumbprint())),
        "{fix}"
    );
    assert!(fix.contains("--client-id-list sts.amazonaws.com"), "{fix}");
    assert!(fix.contains("--fix"), "{fix}");
    all_pass_except(&report, &[Link::Provider]);
}

#[tokio::test]
async fn fix_creates_the_missing_provider_then_the_chain_is_clean() {
    let c = Chain::new().await;
    c.create_role(c.trust_for(&c.provider_arn(), &sub())).await;
    let mut input = c.input(c.token());
    input.fix = true;
    let report = c.run(&input).await;
    assert_eq!(report.fixed.len(), 1, "{report:#?}");
    assert!(
        report.fixed[0].contains("created IAM OIDC provider"),
        "{:?}",
        report.fixed
    );
    all_pass_except(&report, &[]);
    // What --fix created is what IAM now holds.
    let got = c
        .bucket
        .iam()
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(c.provider_arn())
        .send()
        .await
        .expect("provider exists");
    assert_eq!(got.client_id_list(), [AUD]);
    assert_eq!(got.thumbprint_list(), [c.issuer.ca_thumbprint()]);
    // A second check, without --fix, is clean and changes nothing.
    let report = c.run(&c.input(c.token())).await;
    all_pass_except(&report, &[]);
    assert!(report.fixed.is_empty());
    // --fix on a healthy chain changes nothing either.
    let report = c.run(&input).await;
    assert!(report.fixed.is_empty(), "{:?}", report.fixed);
}

#[tokio::test]
async fn client_id_missing_fails() {
    let c = Chain::new().await;
    c.create_provider(
        &c.bucket,
        &["some-other-client"],
        &[&c.issuer.ca_thumbprint()],
    )
    .await;
    c.create_role(c.trust_for(&c.provider_arn(), &sub())).await;
    let report = c.run(&c.input(c.token())).await;
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        "not the audience \"sts.amazonaws.com\"",
        &format!(
            "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {} --client-id sts.amazonaws.com",
            c.provider_arn()
        ),
    );
}

#[tokio::test]
async fn thumbprint_mismatch_warns_and_fix_updates_it() {
    let c = Chain::new().await;
    let stale = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280";
    c.create_provider(&c.bucket, &[AUD], &[stale]).await;
    c.create_role(c.trust_for(&c.provider_arn(), &sub())).await;
    let report = c.run(&c.input(c.token())).await;
    let r = expect(
        &report,
        Link::Provider,
        Status::Warn,
        "AWS skips this check",
        "aws iam update-open-id-connect-provider-thumbprint",
    );
    assert!(
        r.fix
            .unwrap_or_default()
            .contains(&format!("{} {stale}", c.issuer.ca_thumbprint()))
    );
    assert!(report.ok(), "a warning is not a failure");

    let mut input = c.input(c.token());
    input.fix = true;
    let report = c.run(&input).await;
    assert!(
        report.fixed.iter().any(|f| f.contains("set thumbprints")),
        "{:?}",
        report.fixed
    );
    all_pass_except(&report, &[]);
}

#[tokio::test]
async fn trust_policy_for_another_service_account_fails() {
    let c = Chain::new().await;
    c.create_provider(&c.bucket, &[AUD], &[&c.issuer.ca_thumbprint()])
        .await;
    c.create_role(c.trust_for(&c.provider_arn(), "system:serviceaccount:team-b:other"))
        .await;
    let report = c.run(&c.input(c.token())).await;
    let r = expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        "does not admit \"system:serviceaccount:team-a:media-app\"",
        "aws iam update-assume-role-policy --role-name team-a-media-app",
    );
    assert!(r.fix.unwrap_or_default().contains(&format!(
        "\"{}:sub\":\"{}\"",
        c.issuer.provider_url(),
        sub()
    )));
    all_pass_except(&report, &[Link::RoleTrust]);
}

#[tokio::test]
async fn wildcard_sub_warns() {
    let c = Chain::new().await;
    c.create_provider(&c.bucket, &[AUD], &[&c.issuer.ca_thumbprint()])
        .await;
    let url = c.issuer.provider_url();
    c.create_role(c.trust_with(
        &c.provider_arn(),
        json!({"StringLike": {format!("{url}:sub"): "system:serviceaccount:*"}, "StringEquals": {format!("{url}:aud"): AUD}}),
    ))
    .await;
    let report = c.run(&c.input(c.token())).await;
    expect(
        &report,
        Link::RoleTrust,
        Status::Warn,
        "other namespaces",
        &format!("\"StringEquals\": {{\"{url}:sub\": \"{}\"}}", sub()),
    );
    assert!(report.ok());
}

#[tokio::test]
async fn no_sub_condition_warns() {
    let c = Chain::new().await;
    c.create_provider(&c.bucket, &[AUD], &[&c.issuer.ca_thumbprint()])
        .await;
    let url = c.issuer.provider_url();
    c.create_role(c.trust_with(
        &c.provider_arn(),
        json!({"StringEquals": {format!("{url}:aud"): AUD}}),
    ))
    .await;
    let report = c.run(&c.input(c.token())).await;
    expect(
        &report,
        Link::RoleTrust,
        Status::Warn,
        "every ServiceAccount of the cluster",
        ":sub",
    );
}

/// The classic cross-account mistake: the provider was created in the
/// cluster's account and the role's trust names it there.
#[tokio::test]
async fn provider_in_another_account_fails_links_4_and_5() {
    let c = Chain::new().await;
    c.create_provider(&c.cluster, &[AUD], &[&c.issuer.ca_thumbprint()])
        .await;
    let foreign = ProviderRef::new("aws", CLUSTER_ACCOUNT, &c.issuer.url()).arn();
    c.create_role(c.trust_for(&foreign, &sub())).await;
    let report = c.run(&c.input(c.token())).await;
    println!(
        "{}",
        valet_trust::render(&report, valet_trust::OutputFormat::Table)
    );
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        &format!("account {} has no IAM OIDC provider", c.account),
        "create-open-id-connect-provider",
    );
    let r = expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        "only honours the provider in the role's own account",
        &c.provider_arn(),
    );
    assert!(r.reason.contains(CLUSTER_ACCOUNT), "{r:?}");
}

#[tokio::test]
async fn role_missing_fails_with_create_role() {
    let c = Chain::new().await;
    c.create_provider(&c.bucket, &[AUD], &[&c.issuer.ca_thumbprint()])
        .await;
    let report = c.run(&c.input(c.token())).await;
    expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        "does not exist",
        "aws iam create-role --role-name team-a-media-app --path /storage-valet/",
    );
}

#[tokio::test]
async fn credentials_in_the_wrong_account_are_named() {
    let c = Chain::healthy().await;
    // Cluster-account credentials cannot see the bucket account's IAM.
    let checker = valet_trust::TrustChecker::new(c.http(), Ok(c.cluster.clone()));
    let report = checker.check_chain(&c.input(c.token())).await;
    expect(
        &report,
        Link::Provider,
        Status::Fail,
        CLUSTER_ACCOUNT,
        &format!("--bucket-account-role-arn arn:aws:iam::{}:role/", c.account),
    );
    expect(
        &report,
        Link::RoleTrust,
        Status::Fail,
        CLUSTER_ACCOUNT,
        "--bucket-account-role-arn",
    );
}
