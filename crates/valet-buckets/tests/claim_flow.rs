//! A claim's pass as the controller and `broker apply` run it: resolve ->
//! reconcile -> status, then release by the class's deletion policy.

mod common;

use std::collections::BTreeMap;

use common::*;
use valet_buckets::crd::{BucketClaim, BucketClass, DeletionPolicy};
use valet_buckets::reconcile::{Released, reconcile_bucket, release_bucket};
use valet_buckets::resolve::{Defaults, resolve, valid_classes};
use valet_buckets::s3::Deleted;
use valet_buckets::status::{Outcome, claim_status, is_ready};

fn docs(class_spec: serde_json::Value, ns: &str, claim: &str) -> (Vec<BucketClass>, BucketClaim) {
    let class = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketClass",
        "metadata": {"name": "standard"}, "spec": class_spec
    }))
    .expect("class");
    let claim = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketClaim",
        "metadata": {"name": claim, "namespace": ns},
        "spec": {"bucketClassName": "standard"}
    }))
    .expect("claim");
    (vec![class], claim)
}

fn defaults() -> Defaults {
    Defaults {
        cluster: CLUSTER.into(),
        bucket_account: Some(ACCOUNT.into()),
        region: REGION.into(),
    }
}

#[tokio::test]
async fn created_then_up_to_date_with_conditions_and_retained_on_delete() {
    let s3 = s3_in(ACCOUNT).await;
    let (classes, claim) = docs(
        serde_json::json!({"namespaces": ["flow-*"]}),
        "flow-a",
        "data",
    );
    let d = resolve(
        &claim,
        &valid_classes(&classes),
        &BTreeMap::new(),
        &defaults(),
    )
    .expect("resolve");

    let first = reconcile_bucket(&s3, &d).await;
    assert!(
        matches!(first, Outcome::Provisioned { created: true, .. }),
        "{first:?}"
    );
    let st = claim_status(None, &first, Some(1), "2026-12-01T00:00:00Z");
    assert_eq!(st.bucket_name.as_deref(), Some("prod-flow-a-data"));
    assert_eq!(
        st.bucket_arn.as_deref(),
        Some("arn:aws:s3:::prod-flow-a-data")
    );
    assert_eq!(st.region.as_deref(), Some(REGION));
    assert_eq!(st.conditions[0].type_, "Provisioned");
    assert_eq!(st.conditions[0].reason, "UpToDate");
    assert_eq!(is_ready(Some(&st)), Some("prod-flow-a-data"));

    let second = reconcile_bucket(&s3, &d).await;
    let st2 = claim_status(Some(&st), &second, Some(1), "2026-12-01T01:00:00Z");
    assert_eq!(
        st2, st,
        "a second pass leaves the status as it was: no write"
    );
    assert_eq!(
        st2.conditions[1].last_transition_time, "2026-12-01T00:00:00Z",
        "Ready did not change, so neither does its time"
    );

    let released = release_bucket(&s3, &d, DeletionPolicy::Retain)
        .await
        .expect("retain");
    assert_eq!(released, Released::Retained);
    let head = raw_in(ACCOUNT)
        .await
        .head_bucket()
        .bucket(&d.name)
        .send()
        .await;
    assert!(head.is_ok(), "Retain leaves the bucket");
    let released = release_bucket(&s3, &d, DeletionPolicy::Delete)
        .await
        .expect("delete");
    assert_eq!(released, Released::Deleted(Deleted::Removed));
}

#[tokio::test]
async fn a_clash_is_a_condition_that_says_what_to_do() {
    let s3 = s3_in(ACCOUNT).await;
    let raw = raw_in(ACCOUNT).await;
    let (classes, claim) = docs(
        serde_json::json!({"namespaces": ["flow-b"]}),
        "flow-b",
        "taken",
    );
    let d = resolve(
        &claim,
        &valid_classes(&classes),
        &BTreeMap::new(),
        &defaults(),
    )
    .expect("resolve");
    create_foreign_bucket(&raw, &d.name).await;
    let outcome = reconcile_bucket(&s3, &d).await;
    let st = claim_status(None, &outcome, Some(1), "2026-12-01T00:00:00Z");
    let ready = &st.conditions[1];
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "BucketNameClash");
    assert!(ready.message.contains("nameTemplate"), "{}", ready.message);
    assert_eq!(is_ready(Some(&st)), None);
}
