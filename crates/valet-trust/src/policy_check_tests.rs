use super::*;
use crate::Status;
use valet_policy::PolicyDocument;

const URL: &str = "oidc.eks.eu-west-1.amazonaws.com/id/ABC";

fn want() -> WebIdentity {
    WebIdentity {
        provider_arn: format!("arn:aws:iam::222222222222:oidc-provider/{URL}"),
        provider_url: URL.to_string(),
        sub: "system:serviceaccount:team-a:app".to_string(),
        aud: "sts.amazonaws.com".to_string(),
        role_name: "app".to_string(),
    }
}

fn judge(doc: serde_json::Value) -> LinkResult {
    let text = urlencoding::encode(&doc.to_string()).into_owned();
    let policy = PolicyDocument::parse(&text).expect("parses");
    analyse(&policy, &want())
}

fn stmt(principal: serde_json::Value, condition: serde_json::Value) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": principal,
        "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition,
    }]})
}

fn provider() -> serde_json::Value {
    json!({"Federated": format!("arn:aws:iam::222222222222:oidc-provider/{URL}")})
}

#[test]
fn exact_sub_and_aud_pass() {
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": {format!("{URL}:sub"): "system:serviceaccount:team-a:app", format!("{URL}:aud"): "sts.amazonaws.com"}}),
    ));
    assert_eq!(r.status, Status::Pass, "{r:?}");
    assert!(r.fix.is_none());
}

#[test]
fn iam_shapes_parse_statement_object_arrays_and_bools() {
    let doc = json!({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow",
        "Principal": {"Federated": [format!("arn:aws:iam::222222222222:oidc-provider/{URL}")], "AWS": "arn:aws:iam::1:root"},
        "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
        "Condition": {
            "ForAnyValue:StringEquals": {format!("{URL}:sub"): ["system:serviceaccount:team-a:app", "x"]},
            "StringEqualsIgnoreCase": {format!("{}:AUD", URL.to_uppercase()): "STS.amazonaws.com"},
            // A boolean value, as IAM accepts it: Null=false asks for the key.
            "Null": {format!("{URL}:sub"): false},
        },
    }});
    let r = judge(doc);
    assert_eq!(r.status, Status::Pass, "{r:?}");
}

#[test]
fn another_service_account_fails_with_statement_to_add() {
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": {format!("{URL}:sub"): "system:serviceaccount:team-b:app", format!("{URL}:aud"): "sts.amazonaws.com"}}),
    ));
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert!(r.reason.contains("team-b:app"), "{r:?}");
    let fix = r.fix.unwrap();
    assert!(
        fix.contains("update-assume-role-policy --role-name app"),
        "{fix}"
    );
    assert!(fix.contains("system:serviceaccount:team-a:app"), "{fix}");
}

#[test]
fn wildcards_warn_with_scope() {
    let r = judge(stmt(
        provider(),
        json!({"StringLike": {format!("{URL}:sub"): "system:serviceaccount:team-a:*"}, "StringEquals": {format!("{URL}:aud"): "sts.amazonaws.com"}}),
    ));
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert!(r.reason.contains("same namespace"), "{r:?}");
    let r = judge(stmt(
        provider(),
        json!({"StringLike": {format!("{URL}:sub"): "system:serviceaccount:*:app", format!("{URL}:aud"): "sts.amazonaws.com"}}),
    ));
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert!(r.reason.contains("other namespaces"), "{r:?}");
    // StringLike without a wildcard is exact.
    let r = judge(stmt(
        provider(),
        json!({"StringLike": {format!("{URL}:sub"): "system:serviceaccount:team-a:app", format!("{URL}:aud"): "sts.amazonaws.com"}}),
    ));
    assert_eq!(r.status, Status::Pass, "{r:?}");
}

#[test]
fn missing_sub_or_aud_condition_warns() {
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": {format!("{URL}:aud"): "sts.amazonaws.com"}}),
    ));
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert!(r.reason.contains("every ServiceAccount"), "{r:?}");
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": {format!("{URL}:sub"): "system:serviceaccount:team-a:app"}}),
    ));
    assert_eq!(r.status, Status::Warn, "{r:?}");
    assert!(r.reason.contains(":aud"), "{r:?}");
}

#[test]
fn provider_in_another_account_fails_alone_and_warns_beside_a_good_one() {
    let foreign = json!({"Federated": format!("arn:aws:iam::111111111111:oidc-provider/{URL}")});
    let cond = json!({"StringEquals": {format!("{URL}:sub"): "system:serviceaccount:team-a:app", format!("{URL}:aud"): "sts.amazonaws.com"}});
    let r = judge(stmt(foreign.clone(), cond.clone()));
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert!(r.reason.contains("111111111111"), "{r:?}");
    assert!(
        r.fix
            .unwrap()
            .contains("arn:aws:iam::222222222222:oidc-provider/")
    );
    let both = json!({"Statement": [
        {"Effect": "Allow", "Principal": foreign, "Action": "sts:AssumeRoleWithWebIdentity", "Condition": cond},
        {"Effect": "Allow", "Principal": provider(), "Action": "sts:AssumeRoleWithWebIdentity", "Condition": cond},
    ]});
    let r = judge(both);
    assert_eq!(r.status, Status::Warn, "{r:?}");
}

#[test]
fn deny_and_other_issuer_keys() {
    let cond = json!({"StringEquals": {format!("{URL}:sub"): "system:serviceaccount:team-a:app", format!("{URL}:aud"): "sts.amazonaws.com"}});
    let doc = json!({"Statement": [
        {"Effect": "Allow", "Principal": provider(), "Action": "sts:*", "Condition": cond},
        {"Effect": "Deny", "Principal": provider(), "Action": "sts:AssumeRoleWithWebIdentity"},
    ]});
    assert_eq!(judge(doc).status, Status::Fail);
    // Condition keys of another cluster's issuer are absent from our token.
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": {"oidc.other/id/X:sub": "system:serviceaccount:team-a:app"}}),
    ));
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert!(r.reason.contains("oidc.other/id/X:sub"), "{r:?}");
}

#[test]
fn wrong_action_or_principal_is_not_trust() {
    let r = judge(
        json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
    );
    assert_eq!(r.status, Status::Fail);
    assert!(r.fix.unwrap().contains("\"Federated\""));
}

fn admitting() -> serde_json::Value {
    json!({format!("{URL}:sub"): "system:serviceaccount:team-a:app", format!("{URL}:aud"): "sts.amazonaws.com"})
}

#[test]
fn an_unknown_condition_operator_is_not_satisfied() {
    // The old trust checker skipped operators it did not know, so this
    // statement passed: STS would judge DateGreaterThan, we cannot.
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": admitting(), "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}),
    ));
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert!(r.reason.contains("DateGreaterThan"), "{r:?}");
    assert!(r.reason.contains("not counted as satisfied"), "{r:?}");
    // A qualifier we do not model is unknown too.
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": admitting(), "Frob:StringEquals": {format!("{URL}:sub"): "system:serviceaccount:team-a:app"}}),
    ));
    assert_eq!(r.status, Status::Fail, "{r:?}");
}

#[test]
fn a_condition_on_a_key_the_token_does_not_carry_is_not_satisfied() {
    // The old checker assumed keys it could not see (aws:SourceIp, tags) held.
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": admitting(), "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
    ));
    assert_eq!(r.status, Status::Fail, "{r:?}");
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": admitting(), "Bool": {"aws:SecureTransport": true}}),
    ));
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert!(r.reason.contains("aws:SecureTransport"), "{r:?}");
    assert!(r.reason.contains("does not carry"), "{r:?}");
    // Negated and IfExists forms hold on an absent key, as in IAM.
    let r = judge(stmt(
        provider(),
        json!({"StringEquals": admitting(), "StringNotEquals": {"aws:PrincipalTag/x": "y"}, "StringEqualsIfExists": {"aws:RequestTag/z": "w"}}),
    ));
    assert_eq!(r.status, Status::Pass, "{r:?}");
}

#[test]
fn a_deny_with_an_unknown_operator_applies() {
    let doc = json!({"Statement": [
        {"Effect": "Allow", "Principal": provider(), "Action": "sts:AssumeRoleWithWebIdentity", "Condition": {"StringEquals": admitting()}},
        {"Effect": "Deny", "Principal": provider(), "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": {"DateLessThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}}},
    ]});
    let r = judge(doc);
    assert_eq!(r.status, Status::Fail, "{r:?}");
    assert!(r.reason.contains("statement 1"), "{r:?}");
}

#[test]
fn the_broker_and_the_checker_read_one_document_type() {
    // What the broker writes passes the checker unchanged: no second parse.
    let doc = valet_policy::trust_policy(
        &want().provider_arn,
        &format!("https://{URL}"),
        "team-a",
        "app",
        "sts.amazonaws.com",
    )
    .unwrap();
    let r = analyse(&doc, &want());
    assert_eq!(r.status, Status::Pass, "{r:?}");
}
