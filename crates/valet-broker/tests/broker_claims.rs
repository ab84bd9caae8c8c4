//! BucketClaims through the broker: the real kube-rs Controller against the
//! in-process API server, S3/IAM/STS in moto, the bucket account reached
//! through the provisioning role. A claim from nothing becomes Ready with
//! every setting read back from moto; a second pass writes nothing to S3;
//! drift is restored with an Event; a namespace the class does not allow is
//! refused; deletion follows the class's deletionPolicy.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectOwnership, PublicAccessBlockConfiguration, ServerSideEncryption};
use common::env::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use valet_broker::claims::reconcile_claim;
use valet_buckets::crd::{
    BucketClaim, BucketClaimSpec, BucketClass, BucketClassSpec, ClaimCondition,
};

const KMS_KEY: &str = "arn:aws:kms:eu-west-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab";

async fn add_class(env: &Env, name: &str, yaml: &str) {
    let spec: BucketClassSpec = serde_yaml_ng::from_str(yaml).expect("class spec");
    Api::<BucketClass>::all(env.api.client())
        .create(&PostParams::default(), &BucketClass::new(name, spec))
        .await
        .expect("create BucketClass");
}

fn claims(env: &Env, ns: &str) -> Api<BucketClaim> {
    Api::namespaced(env.api.client(), ns)
}

async fn add_claim(env: &Env, ns: &str, name: &str, class: &str) {
    let claim = BucketClaim::new(
        name,
        BucketClaimSpec {
            bucket_class_name: class.into(),
        },
    );
    claims(env, ns)
        .create(&PostParams::default(), &claim)
        .await
        .expect("create BucketClaim");
}

async fn get_claim(env: &Env, ns: &str, name: &str) -> Option<BucketClaim> {
    claims(env, ns)
        .get_opt(name)
        .await
        .expect("get BucketClaim")
}

/// One reconcile of the stored claim, as the controller runs it.
async fn reconcile(env: &Env, ns: &str, name: &str) -> Option<BucketClaim> {
    let claim = get_claim(env, ns, name).await.expect("claim exists");
    let _ = reconcile_claim(Arc::new(claim), env.ctx.clone()).await;
    get_claim(env, ns, name).await
}

fn cond<'a>(claim: &'a BucketClaim, type_: &str) -> &'a ClaimCondition {
    claim
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", claim.status))
}

fn bucket_of(claim: &BucketClaim) -> String {
    claim
        .status
        .as_ref()
        .and_then(|s| s.bucket_name.clone())
        .expect("status.bucketName")
}

/// A plain S3 client in the bucket account (not the broker's counted one),
/// to read back and to cause drift the way a person with console access would.
async fn raw_s3(env: &Env) -> aws_sdk_s3::Client {
    let clients = env
        .parts
        .accounts
        .get(&env.account)
        .await
        .expect("bucket account");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(clients.aws.sdk_config())
            .endpoint_url(common::moto().endpoint())
            .force_path_style(true)
            .build(),
    )
}

async fn exists(raw: &aws_sdk_s3::Client, bucket: &str) -> bool {
    raw.head_bucket().bucket(bucket).send().await.is_ok()
}

fn events_for(env: &Env, name: &str) -> Vec<(String, String)> {
    env.api
        .list("events.k8s.io/v1", "Event")
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "BucketClaim" && e["regarding"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_claim_from_nothing_becomes_ready_with_every_setting_then_costs_no_writes_and_drift_is_restored()
 {
    let env = Env::new("claims").await;
    add_class(
        &env,
        "standard",
        &format!(
            r#"
namespaces: ["team-*"]
encryption: {{ type: "aws:kms", kmsKeyArn: "{KMS_KEY}" }}
versioning: true
lifecycle: {{ abortIncompleteMultipartDays: 7, noncurrentVersionExpirationDays: 30 }}
tags: {{ cost-center: platform }}
"#
        ),
    )
    .await;
    add_claim(&env, NS, "media", "standard").await;

    // The real controller, until the claim is Ready.
    let controller = tokio::spawn(valet_broker::controller::run(env.ctx.clone()));
    let claim = wait_for("the claim to be Ready", async || {
        let c = get_claim(&env, NS, "media").await?;
        (c.status.as_ref()?.conditions.iter())
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(c)
    })
    .await;
    controller.abort();
    let _ = controller.await;

    let status = claim.status.as_ref().expect("status");
    let bucket = bucket_of(&claim);
    assert_eq!(bucket, format!("claims-{NS}-media"));
    // The scrape counts the claim's reconciles and S3 calls.
    let scrape = env.ctx.metrics.encode().expect("metrics");
    for line in [
        "storage_valet_broker_s3_operations_total{operation=\"CreateBucket\",kind=\"write\"} 1",
        "storage_valet_broker_claim_reconciles_total{outcome=\"error\"} 0",
        "# TYPE storage_valet_broker_claim_reconcile_duration_seconds histogram",
    ] {
        assert!(scrape.contains(line), "{line:?} missing from:\n{scrape}");
    }
    assert!(
        !scrape.contains("storage_valet_broker_claim_reconciles_total{outcome=\"ok\"} 0"),
        "the Ready claim's reconciles are counted:\n{scrape}"
    );
    assert_eq!(
        status.bucket_arn.as_deref(),
        Some(format!("arn:aws:s3:::{bucket}").as_str())
    );
    assert_eq!(status.region.as_deref(), Some("eu-west-1"));
    assert_eq!(cond(&claim, "Provisioned").reason, "UpToDate");
    assert_eq!(cond(&claim, "Provisioned").status, "True");
    assert!(
        claim
            .finalizers()
            .contains(&"storage-valet.dev/cleanup".to_string())
    );
    let created: Vec<_> = events_for(&env, "media");
    assert!(
        created
            .iter()
            .any(|(r, n)| r == "BucketCreated" && n.contains(&bucket)),
        "{created:?}"
    );

    // Every setting, read back from moto with a plain client.
    let raw = raw_s3(&env).await;
    let pab = raw
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("public access block");
    let pab = pab.public_access_block_configuration().expect("pab");
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
        .bucket(&bucket)
        .send()
        .await
        .expect("ownership controls");
    assert_eq!(
        own.ownership_controls().expect("controls").rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    let enc = raw
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .expect("encryption");
    let rule = &enc
        .server_side_encryption_configuration()
        .expect("sse")
        .rules()[0];
    let by_default = rule
        .apply_server_side_encryption_by_default()
        .expect("default");
    assert_eq!(by_default.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(by_default.kms_master_key_id(), Some(KMS_KEY));
    assert_eq!(rule.bucket_key_enabled(), Some(true));
    // moto wraps the answer in a <GetBucketVersioningResponse> root the SDK
    // refuses; the <Status> inside is what S3 says.
    let versioning = match raw.get_bucket_versioning().bucket(&bucket).send().await {
        Ok(out) => out.status().map(|s| s.as_str().to_string()),
        Err(aws_sdk_s3::error::SdkError::ServiceError(e)) => {
            let body = String::from_utf8_lossy(e.raw().body().bytes().unwrap_or_default());
            body.contains("<Status>Enabled</Status>")
                .then(|| "Enabled".to_string())
        }
        Err(e) => panic!("versioning: {e:?}"),
    };
    assert_eq!(versioning.as_deref(), Some("Enabled"));
    let lc = raw
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .expect("lifecycle");
    let lc_rule = &lc.rules()[0];
    assert_eq!(
        lc_rule
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(7)
    );
    assert_eq!(
        lc_rule
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(30)
    );
    let policy = raw
        .get_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket policy");
    let policy: serde_json::Value =
        serde_json::from_str(policy.policy().expect("policy text")).expect("policy JSON");
    let deny = &policy["Statement"][0];
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let tags: BTreeMap<String, String> = raw
        .get_bucket_tagging()
        .bucket(&bucket)
        .send()
        .await
        .expect("tags")
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    for (k, v) in [
        ("cost-center", "platform"),
        ("storage-valet.dev/managed-by", "storage-valet"),
        ("storage-valet.dev/cluster", "claims"),
        ("storage-valet.dev/namespace", NS),
        ("storage-valet.dev/bucketclaim", "media"),
    ] {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "tag {k} in {tags:?}"
        );
    }

    // Second pass: S3 reads only, and the status as it was.
    let probe = env.parts.accounts.s3_probe().clone();
    let before = probe.counts();
    let again = reconcile(&env, NS, "media").await.expect("claim");
    let pass = probe.counts().since(&before);
    assert_eq!(pass.writes(), 0, "steady state wrote to S3: {pass:?}");
    assert!(pass.reads() > 0, "{pass:?}");
    assert_eq!(again.status, claim.status, "the second pass wrote status");
    assert_eq!(cond(&again, "Ready").status, "True");
    // And from then on, no write anywhere.
    let kube_writes = env.api.write_count();
    let before = probe.counts();
    reconcile(&env, NS, "media").await.expect("claim");
    assert_eq!(probe.counts().since(&before).writes(), 0);
    assert_eq!(
        env.api.write_count(),
        kube_writes,
        "steady state wrote to the API server"
    );

    // Drift: someone turns Block Public Access off and removes encryption.
    raw.put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(false)
                .ignore_public_acls(false)
                .block_public_policy(false)
                .restrict_public_buckets(false)
                .build(),
        )
        .send()
        .await
        .expect("turn Block Public Access off");
    raw.delete_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .expect("remove encryption");
    let before = probe.counts();
    let repaired = reconcile(&env, NS, "media").await.expect("claim");
    let pass = probe.counts().since(&before);
    assert_eq!(
        pass.ops.get("PutPublicAccessBlock").copied(),
        Some(1),
        "{pass:?}"
    );
    assert_eq!(
        pass.ops.get("PutBucketEncryption").copied(),
        Some(1),
        "{pass:?}"
    );
    assert_eq!(pass.writes(), 2, "only what drifted is written: {pass:?}");
    assert_eq!(cond(&repaired, "Provisioned").reason, "UpToDate");
    assert_eq!(cond(&repaired, "Ready").status, "True");
    let events = events_for(&env, "media");
    let drift = events
        .iter()
        .find(|(r, _)| r == "DriftRepaired")
        .unwrap_or_else(|| panic!("no DriftRepaired Event in {events:?}"));
    assert!(
        drift.1.contains("Block Public Access") && drift.1.contains("default encryption"),
        "{drift:?}"
    );
    let pab = raw
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("pab");
    assert_eq!(
        pab.public_access_block_configuration()
            .and_then(|p| p.block_public_policy()),
        Some(true)
    );
}

#[tokio::test]
async fn a_namespace_the_class_does_not_allow_is_refused_until_its_labels_match() {
    let env = Env::new("claims-deny").await;
    add_class(
        &env,
        "tenants",
        r#"
namespaces: ["platform-*"]
namespaceSelector: { matchLabels: { tenant: "true" } }
"#,
    )
    .await;
    add_claim(&env, NS, "data", "tenants").await;
    let probe = env.parts.accounts.s3_probe().clone();
    let before = probe.counts();
    let refused = reconcile(&env, NS, "data").await.expect("claim");
    let ready = cond(&refused, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "NotPermitted");
    assert!(
        ready.message.contains("tenants") && ready.message.contains(NS),
        "{}",
        ready.message
    );
    assert_eq!(
        probe.counts().since(&before).total(),
        0,
        "no S3 call for a refused claim"
    );
    assert!(
        events_for(&env, "data")
            .iter()
            .any(|(r, _)| r == "NotPermitted"),
        "a Warning Event says why"
    );
    // A class that does not exist says so too.
    add_claim(&env, NS, "typo", "standrad").await;
    let missing = reconcile(&env, NS, "typo").await.expect("claim");
    assert_eq!(cond(&missing, "Ready").reason, "ClassNotFound");

    // The platform team labels the namespace: the claim goes through.
    let mut ns = Namespace::default();
    ns.metadata.name = Some(NS.into());
    ns.metadata.labels = Some(BTreeMap::from([("tenant".into(), "true".into())]));
    Api::<Namespace>::all(env.api.client())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let allowed = reconcile(&env, NS, "data").await.expect("claim");
    assert_eq!(
        cond(&allowed, "Ready").status,
        "True",
        "{:?}",
        allowed.status
    );
}

#[tokio::test]
async fn deletion_retains_or_deletes_by_policy_and_keeps_a_bucket_that_holds_objects() {
    let env = Env::new("claims-del").await;
    add_class(&env, "kept", r#"namespaces: ["team-*"]"#).await;
    add_class(
        &env,
        "scratch",
        r#"{ namespaces: ["team-*"], deletionPolicy: Delete }"#,
    )
    .await;
    add_claim(&env, NS, "keep", "kept").await;
    add_claim(&env, NS, "tmp", "scratch").await;
    let keep = bucket_of(&reconcile(&env, NS, "keep").await.expect("claim"));
    let tmp = bucket_of(&reconcile(&env, NS, "tmp").await.expect("claim"));
    let raw = raw_s3(&env).await;

    // Retain: the claim goes, the bucket stays.
    claims(&env, NS)
        .delete("keep", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(
        get_claim(&env, NS, "keep").await.is_some(),
        "the finalizer holds it"
    );
    assert!(
        reconcile(&env, NS, "keep").await.is_none(),
        "finalizer removed"
    );
    assert!(exists(&raw, &keep).await, "Retain leaves the bucket");
    assert!(
        events_for(&env, "keep")
            .iter()
            .any(|(r, _)| r == "BucketRetained")
    );

    // Delete, with an object in the bucket: refused, claim and finalizer kept.
    // moto denies object calls under our TLS-only policy whatever the
    // transport (it evaluates the condition against nothing), so the test
    // removes that policy before writing an object.
    raw.delete_bucket_policy()
        .bucket(&tmp)
        .send()
        .await
        .expect("remove the TLS-only policy for moto");
    raw.put_object()
        .bucket(&tmp)
        .key("left/behind.txt")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .expect("put an object");
    claims(&env, NS)
        .delete("tmp", &DeleteParams::default())
        .await
        .expect("delete");
    let held = reconcile(&env, NS, "tmp")
        .await
        .expect("a non-empty bucket keeps its claim");
    assert!(
        held.finalizers()
            .contains(&"storage-valet.dev/cleanup".to_string())
    );
    let ready = cond(&held, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BucketNotEmpty")
    );
    assert!(ready.message.contains("empty it"), "{}", ready.message);
    assert!(
        exists(&raw, &tmp).await,
        "a bucket with objects is never deleted"
    );
    assert!(
        events_for(&env, "tmp")
            .iter()
            .any(|(r, _)| r == "BucketNotEmpty")
    );

    // Emptied: the next attempt deletes it and lets the claim go.
    let versions = raw
        .list_object_versions()
        .bucket(&tmp)
        .send()
        .await
        .expect("versions");
    for v in versions.versions() {
        let mut del = raw
            .delete_object()
            .bucket(&tmp)
            .key(v.key().unwrap_or_default());
        if let Some(id) = v.version_id() {
            del = del.version_id(id);
        }
        del.send().await.expect("delete object");
    }
    assert!(
        reconcile(&env, NS, "tmp").await.is_none(),
        "finalizer removed"
    );
    assert!(!exists(&raw, &tmp).await, "Delete removed the empty bucket");
    assert!(
        events_for(&env, "tmp")
            .iter()
            .any(|(r, _)| r == "BucketDeleted")
    );
}

#[test]
fn a_grant_names_exactly_one_of_a_bucket_and_a_claim() {
    let spec = |grant: serde_json::Value| -> valet_broker::crd::BucketAccessSpec {
        serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app", "buckets": [grant]
        }))
        .expect("spec")
    };
    for bad in [
        serde_json::json!({"access": "read"}),
        serde_json::json!({"name": "acme-media", "bucketClaimName": "media", "access": "read"}),
    ] {
        let e = spec(bad).validate().unwrap_err();
        assert!(e.to_string().contains("exactly one of name"), "{e}");
    }
    let ok = spec(serde_json::json!({"bucketClaimName": "media", "access": "read"}))
        .validate()
        .expect("a grant by claim");
    assert_eq!(ok.buckets[0].claim.as_deref(), Some("media"));
}

#[tokio::test]
async fn a_grant_by_claim_waits_until_the_claim_is_ready_then_uses_its_bucket_and_class() {
    use valet_broker::access_policy::{BucketAccessPolicy, BucketAccessPolicySpec};
    let env = Env::new("claims-grant").await;
    // Only buckets claimed through class "standard" may be granted: the
    // grant passes only if it carries the claim's class.
    let policies: Api<BucketAccessPolicy> = Api::all(env.api.client());
    policies
        .delete(ALLOW_ALL, &DeleteParams::default())
        .await
        .expect("drop allow-all");
    let by_class: BucketAccessPolicySpec = serde_json::from_value(serde_json::json!({
        "namespaces": ["team-*"],
        "buckets": [{"bucketClass": "standard", "maxAccess": "readwrite"}]
    }))
    .expect("policy");
    policies
        .create(
            &PostParams::default(),
            &BucketAccessPolicy::new("claimed", by_class),
        )
        .await
        .expect("policy");
    // The class puts its buckets in a region of its own, not the account's
    // (eu-west-1): the ServiceAccount must name the bucket's.
    add_class(
        &env,
        "standard",
        "namespaces: [\"team-*\"]\nregion: eu-central-1",
    )
    .await;
    let spec: valet_broker::crd::BucketAccessSpec = serde_json::from_value(serde_json::json!({
        "serviceAccountName": "media-app",
        "buckets": [{"bucketClaimName": "media", "alias": "media", "access": "readwrite"}]
    }))
    .expect("spec");
    env.create("media-rw", spec).await;

    let before = env.counts();
    let waiting = env.settle("media-rw").await;
    let ready = condition(&waiting, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BucketClaimNotReady")
    );
    assert!(
        ready.message.contains("does not exist"),
        "{}",
        ready.message
    );
    assert_eq!(
        env.counts().since(&before).total(),
        0,
        "no IAM call while waiting"
    );

    // The real controller: the claim's watch brings the BucketAccess back
    // once the claim is Ready.
    let controller = tokio::spawn(valet_broker::controller::run(env.ctx.clone()));
    add_claim(&env, NS, "media", "standard").await;
    let ba = wait_for("the grant by claim to be Ready", async || {
        let ba = env.get("media-rw").await?;
        (ba.status.as_ref()?.conditions.iter())
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(ba)
    })
    .await;
    controller.abort();
    let _ = controller.await;

    let claim = get_claim(&env, NS, "media").await.expect("claim");
    let bucket = bucket_of(&claim);
    assert_eq!(condition(&ba, "Permitted").status, "True");
    let role = ba.status.and_then(|s| s.role_arn).expect("roleArn");
    assert!(role.contains(&format!("::{}:role/", env.account)), "{role}");
    let doc = env
        .iam()
        .await
        .get_role_policy(
            role.rsplit('/').next().unwrap_or_default(),
            valet_broker::provision::INLINE_POLICY_NAME,
        )
        .await
        .expect("GetRolePolicy")
        .expect("inline policy")
        .expect("a policy document");
    assert!(
        format!("{doc:?}").contains(&format!("arn:aws:s3:::{bucket}")),
        "{doc:?}"
    );
    let sa = env.sas().get("media-app").await.expect("ServiceAccount");
    assert_eq!(
        sa.annotations()
            .get("storage-valet.dev/buckets")
            .map(String::as_str),
        Some(format!("media={bucket}").as_str()),
        "{:?}",
        sa.annotations()
    );
    assert_eq!(
        sa.annotations()
            .get("storage-valet.dev/bucket-region")
            .map(String::as_str),
        Some("eu-central-1"),
        "the claimed bucket's region, not the account's"
    );
}
