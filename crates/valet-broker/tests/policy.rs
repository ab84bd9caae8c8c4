//! The policy documents the broker writes, and the evaluator that proves a
//! trust policy admits exactly one ServiceAccount.

use serde_json::json;
use valet_broker::crd::{Access, ValidGrant};
use valet_broker::policy::access_policy;
use valet_policy::evaluate::{Decision, WebIdentityRequest, evaluate, glob};
use valet_policy::*;

const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123";
const PROVIDER: &str =
    "arn:aws:iam::222222222222:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC123";

fn g(name: &str, prefix: Option<&str>, access: Access) -> ValidGrant {
    ValidGrant {
        name: name.into(),
        claim: None,
        bucket_class: None,
        alias: None,
        prefix: prefix.map(Into::into),
        access,
    }
}

fn claims(sub: &str, aud: serde_json::Value) -> serde_json::Value {
    json!({"iss": ISSUER, "sub": sub, "aud": aud})
}

#[test]
fn trust_policy_has_the_exact_shape_iam_expects() {
    let doc = trust_policy(PROVIDER, ISSUER, "team-a", "media-app", "sts.amazonaws.com").unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc.to_json()).unwrap();
    assert_eq!(
        v,
        json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDER},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    "oidc.eks.eu-west-1.amazonaws.com/id/ABC123:aud": "sts.amazonaws.com",
                    "oidc.eks.eu-west-1.amazonaws.com/id/ABC123:sub": "system:serviceaccount:team-a:media-app"
                }}
            }
        })
    );
}

#[test]
fn trust_policy_admits_only_its_service_account_and_audience() {
    let doc = trust_policy(PROVIDER, ISSUER, "team-a", "media-app", "sts.amazonaws.com").unwrap();
    let req = |sub: &str, aud, provider: &str| {
        WebIdentityRequest::from_claims(provider, ISSUER, &claims(sub, aud))
    };
    let sa = "system:serviceaccount:team-a:media-app";
    assert_eq!(
        evaluate(&doc, &req(sa, json!(["sts.amazonaws.com"]), PROVIDER)),
        Decision::Allowed
    );
    assert_eq!(
        evaluate(&doc, &req(sa, json!("sts.amazonaws.com"), PROVIDER)),
        Decision::Allowed
    );
    for (sub, aud, provider) in [
        (
            "system:serviceaccount:team-a:other",
            json!("sts.amazonaws.com"),
            PROVIDER,
        ),
        (
            "system:serviceaccount:team-b:media-app",
            json!("sts.amazonaws.com"),
            PROVIDER,
        ),
        (sa, json!("vault"), PROVIDER),
        (
            sa,
            json!("sts.amazonaws.com"),
            "arn:aws:iam::333333333333:oidc-provider/x",
        ),
    ] {
        assert_eq!(
            evaluate(&doc, &req(sub, aud.clone(), provider)),
            Decision::ImplicitDeny,
            "{sub} {aud} {provider}"
        );
    }
}

#[test]
fn evaluator_handles_wildcards_denies_and_unknown_operators() {
    let parse = |v: serde_json::Value| PolicyDocument::parse(&v.to_string()).unwrap();
    let host = "oidc.eks.eu-west-1.amazonaws.com/id/ABC123";
    let wide = parse(json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:*",
        "Condition": {"StringLike": {format!("{host}:sub"): "system:serviceaccount:team-a:*"}}
    }]}));
    let req = |sub: &str| {
        WebIdentityRequest::from_claims(PROVIDER, ISSUER, &claims(sub, json!("sts.amazonaws.com")))
    };
    assert_eq!(
        evaluate(&wide, &req("system:serviceaccount:team-a:x")),
        Decision::Allowed
    );
    assert_eq!(
        evaluate(&wide, &req("system:serviceaccount:team-b:x")),
        Decision::ImplicitDeny
    );

    let mut with_deny = wide.clone();
    with_deny.statement.push(
        parse(json!({"Version": "2012-10-17", "Statement": {
            "Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{host}:sub"): "system:serviceaccount:team-a:x"}}
        }}))
        .statement[0]
            .clone(),
    );
    assert_eq!(
        evaluate(&with_deny, &req("system:serviceaccount:team-a:x")),
        Decision::ExplicitDeny
    );
    assert_eq!(
        evaluate(&with_deny, &req("system:serviceaccount:team-a:y")),
        Decision::Allowed
    );

    let unknown = parse(json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    }}));
    assert_eq!(
        evaluate(&unknown, &req("system:serviceaccount:team-a:x")),
        Decision::ImplicitDeny
    );

    assert!(glob("a*c", "abbc") && glob("a?c", "abc") && glob("*", "") && !glob("a*c", "abd"));
}

#[test]
fn read_grant_is_limited_to_the_prefix() {
    let doc = access_policy("aws", &[g("acme-media", Some("team-a/"), Access::Read)]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc.to_json()).unwrap();
    assert_eq!(
        v["Statement"],
        json!([
            {"Sid": "Read0", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": "arn:aws:s3:::acme-media/team-a/*"},
            {"Sid": "List0", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::acme-media",
             "Condition": {"StringLike": {"s3:prefix": "team-a/*"}}}
        ])
    );
}

#[test]
fn write_and_readwrite_grants_and_partitions() {
    let doc = access_policy(
        "aws-cn",
        &[
            g("logs", None, Access::Write),
            g("data", Some("x/"), Access::Readwrite),
        ],
    )
    .unwrap();
    let json = doc.to_json();
    for needle in [
        "arn:aws-cn:s3:::logs/*",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
        "s3:ListBucketMultipartUploads",
        "arn:aws-cn:s3:::data/x/*",
        "\"s3:prefix\":\"x/*\"",
    ] {
        assert!(json.contains(needle), "{needle} missing from {json}");
    }
    assert!(!json.contains("arn:aws:"), "partition leaked: {json}");
    // Write-only grants carry no read action.
    let write_only = access_policy("aws", &[g("logs", None, Access::Write)])
        .unwrap()
        .to_json();
    assert!(!write_only.contains("GetObject") && !write_only.contains("\"s3:ListBucket\""));
    // No wildcard anywhere except the one after the prefix.
    for s in &doc.statement {
        for r in s.resource.iter().flatten() {
            assert!(
                r.matches('*').count() <= 1 && (!r.contains('*') || r.ends_with('*')),
                "{r}"
            );
        }
        assert!(s.action.iter().all(|a| !a.contains('*')));
    }
    assert_eq!(partition_for_region("cn-north-1"), "aws-cn");
    assert_eq!(partition_for_region("us-gov-west-1"), "aws-us-gov");
    assert_eq!(partition_for_region("eu-west-1"), "aws");
}

#[test]
fn iam_size_limits_are_enforced_before_any_call() {
    let long_prefix = format!("{}/", "p".repeat(1000));
    let grants: Vec<ValidGrant> = (0..20)
        .map(|i| {
            g(
                &format!("bucket-{i:02}"),
                Some(&long_prefix),
                Access::Readwrite,
            )
        })
        .collect();
    match access_policy("aws", &grants) {
        Err(PolicyError::TooLarge { len, max, .. }) => {
            assert!(len > max && max == MAX_INLINE_POLICIES)
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let long_sa = "s".repeat(253);
    let long_issuer = format!(
        "https://{}.example.com/{}",
        "i".repeat(200),
        "p".repeat(900)
    );
    let provider = oidc_provider_arn("aws", "222222222222", &long_issuer);
    assert!(matches!(
        trust_policy(
            &provider,
            &long_issuer,
            &"n".repeat(63),
            &long_sa,
            "sts.amazonaws.com"
        ),
        Err(PolicyError::TooLarge {
            max: MAX_TRUST_POLICY,
            ..
        })
    ));
}

#[test]
fn documents_read_back_from_iam_compare_by_meaning() {
    let doc = trust_policy(PROVIDER, ISSUER, "team-a", "media-app", "sts.amazonaws.com").unwrap();
    // IAM returns URL-encoded JSON, with single values possibly as lists and no Sids.
    let mut v: serde_json::Value = serde_json::from_str(&doc.to_json()).unwrap();
    v["Statement"] = json!([v["Statement"].clone()]);
    v["Statement"][0]["Action"] = json!(["sts:AssumeRoleWithWebIdentity"]);
    let encoded = urlencoding::encode(&v.to_string()).into_owned();
    assert!(PolicyDocument::parse(&encoded).unwrap().same_as(&doc));

    let mut widened = v.clone();
    widened["Statement"][0]["Condition"]["StringEquals"] = json!({});
    assert!(
        !PolicyDocument::parse(&widened.to_string())
            .unwrap()
            .same_as(&doc)
    );
    // A construct we never write (NotAction, NotResource, NotPrincipal) is
    // drift, not silently equal: the one tolerant parser reads it, the
    // comparison sees it.
    let mut not_action = v.clone();
    not_action["Statement"][0]["NotAction"] = json!("s3:*");
    let parsed = PolicyDocument::parse(&not_action.to_string()).unwrap();
    assert_eq!(
        parsed.statement[0].not_action.as_deref(),
        Some(&["s3:*".to_string()][..])
    );
    assert!(!parsed.same_as(&doc));
}
