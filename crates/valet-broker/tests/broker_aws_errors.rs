//! A failed AWS call keeps AWS's error code and message (moto answers as
//! AWS does), and every throttled attempt is counted by service and
//! operation in `storage_valet_broker_aws_throttled_total`.

mod common;

use std::sync::Arc;

use common::iam;
use valet_broker::iam::FaultKind;
use valet_broker::metrics::Metrics;
use valet_policy::PolicyDocument;

fn trust() -> PolicyDocument {
    PolicyDocument::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
    )
    .expect("policy")
}

#[tokio::test]
async fn a_call_on_a_role_that_does_not_exist_says_code_and_message() {
    let iam = iam();
    let err = iam
        .update_trust("valet-no-such-role-errors", &trust())
        .await
        .expect_err("no such role");
    let text = err.to_string();
    println!("{text}");
    assert!(
        text.starts_with("IAM UpdateAssumeRolePolicy: NoSuchEntity: ")
            && text.contains("valet-no-such-role-errors"),
        "{text}"
    );
    assert!(!text.contains("Unknown"), "{text}");

    let err = iam
        .put_role_policy("valet-no-such-role-errors", "p", &trust())
        .await
        .expect_err("no such role");
    let text = err.to_string();
    assert!(
        text.starts_with("IAM PutRolePolicy: NoSuchEntity: "),
        "{text}"
    );
}

#[tokio::test]
async fn access_denied_keeps_the_code_and_message() {
    let iam = iam();
    iam.probe().inject(FaultKind::AccessDenied, None);
    let err = iam
        .update_trust("valet-denied-errors", &trust())
        .await
        .expect_err("denied");
    iam.probe().clear();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "IAM UpdateAssumeRolePolicy: AccessDenied: injected: not authorized to perform this action"
        ),
        "{text}"
    );
    assert_eq!(err.reason(), "IamAccessDenied");
}

#[tokio::test]
async fn throttled_attempts_are_counted_by_operation_retries_included() {
    let iam = iam();
    let metrics = Metrics::new(Arc::clone(iam.probe()), Default::default());
    let scrape = metrics.encode().expect("encode");
    assert!(
        scrape.contains("# TYPE storage_valet_broker_aws_throttled counter"),
        "{scrape}"
    );
    // Two throttled attempts, then the SDK's third attempt answers.
    iam.probe().inject(FaultKind::Throttling, Some(2));
    assert_eq!(
        iam.get_role("valet-throttled-errors")
            .await
            .expect("retried"),
        None
    );
    // Throttled for good: the error says so with AWS's code.
    iam.probe().inject(FaultKind::Throttling, None);
    let err = iam
        .get_role("valet-throttled-errors")
        .await
        .expect_err("throttled");
    iam.probe().clear();
    assert!(
        err.to_string()
            .starts_with("IAM GetRole: Throttling: Rate exceeded"),
        "{err}"
    );
    let scrape = metrics.encode().expect("encode");
    // 2 + 3 (every attempt of the second call).
    assert!(
        scrape.contains(
            "storage_valet_broker_aws_throttled_total{service=\"iam\",operation=\"GetRole\"} 5"
        ),
        "{scrape}"
    );
    assert!(
        scrape.contains("storage_valet_build_info{version=\"")
            && scrape.contains("component=\"broker\""),
        "{scrape}"
    );
}
