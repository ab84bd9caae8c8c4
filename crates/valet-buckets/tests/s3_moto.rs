//! The S3 side of a claim against moto: every setting read back with a
//! plain SDK client, zero writes in steady state (counted), drift repaired
//! setting by setting, foreign buckets untouched, deletion by policy.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration,
    ServerSideEncryption, Tag, Tagging,
};
use common::*;
use valet_buckets::desired::{TLS_SID, Versioning};
use valet_buckets::plan::{Observed, PlanError, plan};
use valet_buckets::s3::{DeleteError, Deleted};

const FULL: &str = r#"
namespaces: ["team-*"]
encryption: { type: "aws:kms", kmsKeyArn: "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab" }
versioning: true
lifecycle: { abortIncompleteMultipartDays: 7, noncurrentVersionExpirationDays: 30 }
tags: { cost-center: platform }
"#;

#[tokio::test]
async fn a_claim_from_nothing_gets_every_setting_and_a_second_pass_writes_nothing() {
    let s3 = s3_in(ACCOUNT).await;
    let raw = raw_in(ACCOUNT).await;
    let class = class("standard", FULL);
    let d = desired(&class, "team-a", "media");
    assert_eq!(d.name, "prod-team-a-media");

    let before = s3.probe().counts();
    let written = reconcile(&s3, &d).await;
    assert_eq!(written.first(), Some(&"CreateBucket"));
    let first = s3.probe().counts().since(&before);
    assert_eq!(first.writes(), written.len() as u64, "{first:?}");

    // Read back with a plain client, not through our own observe().
    let b = d.name.as_str();
    let pab = raw
        .get_public_access_block()
        .bucket(b)
        .send()
        .await
        .expect("pab");
    let pab = pab.public_access_block_configuration().expect("pab config");
    assert_eq!(
        [
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ],
        [Some(true); 4]
    );
    let own = raw
        .get_bucket_ownership_controls()
        .bucket(b)
        .send()
        .await
        .expect("ownership");
    let rules = own.ownership_controls().expect("controls").rules();
    assert_eq!(
        rules[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let enc = raw
        .get_bucket_encryption()
        .bucket(b)
        .send()
        .await
        .expect("encryption");
    let rule = &enc
        .server_side_encryption_configuration()
        .expect("sse")
        .rules()[0];
    let default = rule
        .apply_server_side_encryption_by_default()
        .expect("default");
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(
        default.kms_master_key_id(),
        Some("arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    );
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    // (moto's reply has a root element the SDK refuses; observe() reads it.)
    let observed = s3.observe(&d).await.expect("observe");
    let Observed::Owned { settings, .. } = observed else {
        panic!("ours: {observed:?}")
    };
    assert_eq!(settings.versioning, Versioning::Enabled);
    let lc = raw
        .get_bucket_lifecycle_configuration()
        .bucket(b)
        .send()
        .await
        .expect("lifecycle");
    let r = &lc.rules()[0];
    assert_eq!(
        r.abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(7)
    );
    assert_eq!(
        r.noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(30)
    );
    let policy = raw
        .get_bucket_policy()
        .bucket(b)
        .send()
        .await
        .expect("policy");
    let policy: serde_json::Value =
        serde_json::from_str(policy.policy().expect("policy text")).expect("policy json");
    let st = &policy["Statement"][0];
    assert_eq!(st["Sid"], TLS_SID);
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let tags = raw
        .get_bucket_tagging()
        .bucket(b)
        .send()
        .await
        .expect("tags");
    let tags: std::collections::BTreeMap<_, _> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    for (k, v) in [
        ("storage-valet.dev/managed-by", "storage-valet"),
        ("storage-valet.dev/cluster", "prod"),
        ("storage-valet.dev/namespace", "team-a"),
        ("storage-valet.dev/bucketclaim", "media"),
        ("cost-center", "platform"),
    ] {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "tag {k}: {tags:?}"
        );
    }
    let loc = raw
        .get_bucket_location()
        .bucket(b)
        .send()
        .await
        .expect("location");
    assert_eq!(loc.location_constraint().map(|l| l.as_str()), Some(REGION));

    // Steady state: reads only.
    let before = s3.probe().counts();
    assert!(reconcile(&s3, &d).await.is_empty());
    let second = s3.probe().counts().since(&before);
    assert_eq!(second.writes(), 0, "{second:?}");
    assert_eq!(
        second.reads(),
        8,
        "HeadBucket, tags and six settings: {second:?}"
    );
}

#[tokio::test]
async fn the_bucket_is_made_in_the_class_account_only() {
    let s3 = s3_in(ACCOUNT).await;
    let d = desired(&class("acct", "namespaces: [team-b]"), "team-b", "where");
    reconcile(&s3, &d).await;
    let names = |c: aws_sdk_s3::Client| async move {
        c.list_buckets()
            .send()
            .await
            .expect("list")
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert!(names(raw_in(ACCOUNT).await).await.contains(&d.name));
    assert!(!names(raw_in("333333333333").await).await.contains(&d.name));
}

#[tokio::test]
async fn drift_of_each_always_on_setting_is_repaired_by_exactly_one_write() {
    let s3 = s3_in(ACCOUNT).await;
    let raw = raw_in(ACCOUNT).await;
    let d = desired(&class("drift", "namespaces: [team-c]"), "team-c", "drifty");
    let b = d.name.clone();
    reconcile(&s3, &d).await;

    raw.delete_public_access_block()
        .bucket(&b)
        .send()
        .await
        .expect("drift pab");
    assert_eq!(reconcile(&s3, &d).await, ["PutPublicAccessBlock"]);

    raw.put_public_access_block()
        .bucket(&b)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(false)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .expect("drift one pab flag");
    assert_eq!(reconcile(&s3, &d).await, ["PutPublicAccessBlock"]);

    let writer = OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::ObjectWriter)
                .build()
                .expect("rule"),
        )
        .build()
        .expect("controls");
    raw.put_bucket_ownership_controls()
        .bucket(&b)
        .ownership_controls(writer)
        .send()
        .await
        .expect("drift ownership");
    assert_eq!(reconcile(&s3, &d).await, ["PutBucketOwnershipControls"]);

    raw.delete_bucket_encryption()
        .bucket(&b)
        .send()
        .await
        .expect("drift sse");
    assert_eq!(reconcile(&s3, &d).await, ["PutBucketEncryption"]);

    raw.delete_bucket_policy()
        .bucket(&b)
        .send()
        .await
        .expect("drift policy");
    assert_eq!(reconcile(&s3, &d).await, ["PutBucketPolicy"]);

    let mut tags = vec![];
    for (k, v) in [
        ("storage-valet.dev/managed-by", "storage-valet"),
        ("storage-valet.dev/cluster", "prod"),
        ("storage-valet.dev/namespace", "team-c"),
        ("storage-valet.dev/bucketclaim", "drifty"),
        ("added-by-hand", "x"),
    ] {
        tags.push(Tag::builder().key(k).value(v).build().expect("tag"));
    }
    raw.put_bucket_tagging()
        .bucket(&b)
        .tagging(
            Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .expect("tagging"),
        )
        .send()
        .await
        .expect("drift tags");
    assert_eq!(reconcile(&s3, &d).await, ["PutBucketTagging"]);

    // And after all that, steady again.
    let before = s3.probe().counts();
    assert!(reconcile(&s3, &d).await.is_empty());
    assert_eq!(s3.probe().counts().since(&before).writes(), 0);
}

#[tokio::test]
async fn a_long_namespace_and_claim_name_get_a_63_character_bucket() {
    let s3 = s3_in(ACCOUNT).await;
    let ns = "a-namespace-whose-name-is-very-long-indeed-sixty-three-chars-ok";
    assert_eq!(ns.len(), 63);
    let d = desired(
        &class("long", "namespaces: ['*']"),
        ns,
        "media.archive.2026",
    );
    assert!(d.name.len() <= 63 && d.name.len() >= 60, "{}", d.name);
    reconcile(&s3, &d).await;
    let head = raw_in(ACCOUNT)
        .await
        .head_bucket()
        .bucket(&d.name)
        .send()
        .await;
    assert!(head.is_ok(), "bucket {} exists", d.name);
}

#[tokio::test]
async fn a_foreign_bucket_under_the_name_is_never_touched() {
    let s3 = s3_in(ACCOUNT).await;
    let raw = raw_in(ACCOUNT).await;
    let d = desired(&class("clash", "namespaces: [team-d]"), "team-d", "taken");
    // Someone made this bucket by hand, in our own account, without our tags.
    create_foreign_bucket(&raw, &d.name).await;
    let before = s3.probe().counts();
    let observed = s3.observe(&d).await.expect("observe");
    assert!(matches!(observed, Observed::Foreign { .. }), "{observed:?}");
    let err = plan(&observed, &d).unwrap_err();
    assert!(matches!(err, PlanError::NotOwned { .. }));
    assert!(
        err.to_string()
            .contains("without storage-valet's ownership tags"),
        "{err}"
    );
    let err = s3.delete(&d).await.unwrap_err();
    assert!(matches!(err, DeleteError::NotOwned { .. }), "{err}");
    let calls = s3.probe().counts().since(&before);
    assert_eq!(calls.writes(), 0, "{calls:?}");
    assert_eq!(
        calls.ops.keys().map(String::as_str).collect::<Vec<_>>(),
        ["GetBucketTagging", "HeadBucket"],
        "nothing beyond the tags is read or written: {calls:?}"
    );
    assert!(
        raw.get_bucket_policy()
            .bucket(&d.name)
            .send()
            .await
            .is_err(),
        "no policy was put"
    );
    assert!(
        raw.head_bucket().bucket(&d.name).send().await.is_ok(),
        "still there"
    );
}

#[tokio::test]
async fn another_claims_bucket_is_a_clash_not_an_adoption() {
    let s3 = s3_in(ACCOUNT).await;
    let c = class(
        "same",
        "namespaces: ['*']\nnameTemplate: 'shared-{namespace}-{name}'",
    );
    let first = desired(&c, "team-e", "x");
    reconcile(&s3, &first).await;
    // Same rendered name from another identity (a crafted case: a second
    // cluster with the same template).
    let mut second = first.clone();
    second.cluster = "staging".into();
    let observed = s3.observe(&second).await.expect("observe");
    let err = plan(&observed, &second).unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to BucketClaim team-e/x of cluster prod"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_removes_an_empty_bucket_and_keeps_one_with_objects() {
    let s3 = s3_in(ACCOUNT).await;
    let raw = raw_in(ACCOUNT).await;
    let c = class("del", "namespaces: [team-f]\ndeletionPolicy: Delete");
    let empty = desired(&c, "team-f", "empty");
    let full = desired(&c, "team-f", "full");
    reconcile(&s3, &empty).await;
    reconcile(&s3, &full).await;
    allow_object_calls_on_moto(&raw, &full.name).await;
    raw.put_object()
        .bucket(&full.name)
        .key("keep.txt")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .expect("put object");

    assert_eq!(s3.delete(&empty).await.expect("delete"), Deleted::Removed);
    assert!(
        raw.head_bucket().bucket(&empty.name).send().await.is_err(),
        "gone"
    );
    assert_eq!(
        s3.delete(&empty).await.expect("again"),
        Deleted::AlreadyGone
    );

    let err = s3.delete(&full).await.unwrap_err();
    assert_eq!(err.reason(), "BucketNotEmpty", "{err}");
    assert!(err.to_string().contains("deletionPolicy: Retain"), "{err}");
    let obj = raw
        .get_object()
        .bucket(&full.name)
        .key("keep.txt")
        .send()
        .await;
    assert!(obj.is_ok(), "the object is still there");
}

#[tokio::test]
async fn sse_s3_without_versioning_or_lifecycle() {
    let s3 = s3_in(ACCOUNT).await;
    let raw = raw_in(ACCOUNT).await;
    let d = desired(&class("plain", "namespaces: [team-g]"), "team-g", "plain");
    let ops = reconcile(&s3, &d).await;
    assert!(!ops.contains(&"PutBucketVersioning"), "{ops:?}");
    assert!(!ops.contains(&"PutBucketLifecycleConfiguration"), "{ops:?}");
    let enc = raw
        .get_bucket_encryption()
        .bucket(&d.name)
        .send()
        .await
        .expect("sse");
    let rule = &enc
        .server_side_encryption_configuration()
        .expect("sse")
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .map(|d| d.sse_algorithm()),
        Some(&ServerSideEncryption::Aes256)
    );
    assert!(reconcile(&s3, &d).await.is_empty());
}
