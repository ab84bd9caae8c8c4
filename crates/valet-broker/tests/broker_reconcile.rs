//! The controller's reconcile against an in-process API server, a real
//! HTTPS OIDC issuer and moto (AssumeRole into a fresh bucket account).

mod common;

use std::collections::BTreeMap;

use base64::Engine;
use common::env::*;
use common::{grant, spec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DeleteParams, PostParams};
use valet_broker::crd::Access;
use valet_broker::provision::INLINE_POLICY_NAME;
use valet_policy::evaluate::{Decision, WebIdentityRequest, evaluate};
use valet_policy::{PolicyDocument, oidc_provider_arn};

fn annotations(sa: &ServiceAccount) -> BTreeMap<String, String> {
    sa.metadata.annotations.clone().unwrap_or_default()
}

#[tokio::test]
async fn provisions_from_nothing_and_the_second_pass_writes_nothing() {
    let env = Env::new("rec-fresh").await;
    env.create(
        "media-reader",
        spec(
            "media-app",
            vec![grant("acme-media", None, Some("team-a/"), Access::Read)],
        ),
    )
    .await;
    let ba = env.settle("media-reader").await;

    let status = ba.status.clone().expect("status written");
    for c in ["TrustValid", "RoleProvisioned", "Ready"] {
        assert_eq!(
            condition(&ba, c).status,
            "True",
            "{c}: {:?}",
            condition(&ba, c)
        );
    }
    let arn = status.role_arn.expect("roleArn");
    assert!(
        arn.starts_with(&format!(
            "arn:aws:iam::{}:role/storage-valet/rec-fresh/",
            env.account
        )),
        "{arn}"
    );
    assert_eq!(status.observed_generation, ba.metadata.generation);
    assert!(
        ba.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&"storage-valet.dev/cleanup".to_string()))
    );

    let sa = env
        .sas()
        .get("media-app")
        .await
        .expect("ServiceAccount created");
    let anns = annotations(&sa);
    assert_eq!(anns.get("eks.amazonaws.com/role-arn"), Some(&arn));
    assert_eq!(
        anns.get("storage-valet.dev/bucket").map(String::as_str),
        Some("acme-media/team-a/")
    );
    assert_eq!(
        anns.get("storage-valet.dev/bucket-region")
            .map(String::as_str),
        Some("eu-west-1")
    );
    assert!(!anns.contains_key("storage-valet.dev/buckets"));

    // The provider was created in the bucket account (createOidcProvider: true).
    let provider = oidc_provider_arn("aws", &env.account, &env.oidc.url());
    let iam = env.iam().await;
    iam.client()
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&provider)
        .send()
        .await
        .unwrap();
    let reasons = env.event_reasons("media-reader");
    assert!(
        reasons.contains(&"RoleCreated".into())
            && reasons.contains(&"ServiceAccountCreated".into()),
        "{reasons:?}"
    );

    // Steady state: reads only, and nothing written to Kubernetes either.
    let iam_before = env.counts();
    let kube_before = env.api.write_count();
    env.reconcile("media-reader").await;
    let delta = env.counts().since(&iam_before);
    assert_eq!(
        delta.writes(),
        0,
        "steady state wrote to IAM: {:?}",
        delta.ops
    );
    assert_eq!(delta.reads(), 2, "GetRole + GetRolePolicy: {:?}", delta.ops);
    assert_eq!(
        env.api.write_count(),
        kube_before,
        "steady state wrote to Kubernetes"
    );
}

#[tokio::test]
async fn several_buckets_with_aliases_and_prefixes() {
    let env = Env::new("rec-multi").await;
    let grants = vec![
        grant("acme-media", Some("media"), Some("team-a/"), Access::Read),
        grant("acme-logs", Some("raw-logs"), None, Access::Write),
        grant("acme-data", Some("data"), Some("x/y/"), Access::Readwrite),
    ];
    // The ServiceAccount exists already with an annotation of its own.
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("etl".into());
    sa.metadata.annotations = Some(BTreeMap::from([("team".to_string(), "a".to_string())]));
    env.sas().create(&PostParams::default(), &sa).await.unwrap();
    env.create("etl", spec("etl", grants)).await;
    let ba = env.settle("etl").await;
    assert_eq!(condition(&ba, "Ready").status, "True");

    let anns = annotations(&env.sas().get("etl").await.unwrap());
    assert_eq!(
        anns.get("storage-valet.dev/buckets").map(String::as_str),
        Some("media=acme-media/team-a/,raw-logs=acme-logs,data=acme-data/x/y/")
    );
    assert!(!anns.contains_key("storage-valet.dev/bucket"));
    assert_eq!(anns.get("team").map(String::as_str), Some("a"));
    // The pod side reads these annotations back into env vars.
    let list = valet_core::bucket::parse_bucket_list(&anns["storage-valet.dev/buckets"]).unwrap();
    let envs = valet_core::bucket::bucket_env(None, &list, Some("eu-west-1"));
    assert!(envs.contains(&("S3_BUCKET_RAW_LOGS".into(), "acme-logs".into())));
    assert!(envs.contains(&("S3_PREFIX_DATA".into(), "x/y/".into())));

    let role = ba.status.unwrap().role_arn.unwrap();
    let name = role.rsplit('/').next().unwrap();
    let policy = env
        .iam()
        .await
        .get_role_policy(name, INLINE_POLICY_NAME)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let json = policy.to_json();
    for needle in [
        "arn:aws:s3:::acme-media/team-a/*",
        "arn:aws:s3:::acme-logs/*",
        "arn:aws:s3:::acme-data/x/y/*",
    ] {
        assert!(json.contains(needle), "{needle} not in {json}");
    }
    assert!(
        !json.contains("acme-logs/*\"],\"Sid\":\"Read"),
        "write-only bucket must not be readable"
    );
}

#[tokio::test]
async fn the_trust_policy_admits_the_service_accounts_token_and_no_other() {
    let env = Env::new("rec-token").await;
    env.create(
        "app",
        spec("app", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let ba = env.settle("app").await;
    let arn = ba.status.unwrap().role_arn.unwrap();
    let name = arn.rsplit('/').next().unwrap();
    let trust = env
        .iam()
        .await
        .get_role(name)
        .await
        .unwrap()
        .unwrap()
        .trust
        .unwrap();

    let token = env
        .oidc
        .mint(
            NS,
            "app",
            &["sts.amazonaws.com"],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let claims = |t: &str| -> serde_json::Value {
        let payload = t.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let provider = oidc_provider_arn("aws", &env.account, &env.oidc.url());
    let req = |t: &str| WebIdentityRequest::from_claims(&provider, &env.oidc.url(), &claims(t));
    assert_eq!(evaluate(&trust, &req(&token)), Decision::Allowed);
    let other = env
        .oidc
        .mint(
            NS,
            "other",
            &["sts.amazonaws.com"],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(evaluate(&trust, &req(&other)), Decision::ImplicitDeny);
    let wrong_aud = env
        .oidc
        .mint(NS, "app", &["vault"], std::time::Duration::from_secs(600))
        .unwrap();
    assert_eq!(evaluate(&trust, &req(&wrong_aud)), Decision::ImplicitDeny);

    // And STS (moto) hands out credentials for the role with that token.
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::new()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("eu-west-1"))
            .endpoint_url(common::moto().endpoint())
            .build(),
    );
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(&arn)
        .role_session_name("pod")
        .web_identity_token(&token)
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity");
    assert!(out.credentials().is_some());
    assert!(out.assumed_role_user().unwrap().arn().contains(name));
}

#[tokio::test]
async fn drift_in_iam_and_on_the_service_account_is_repaired_with_an_event() {
    let env = Env::new("rec-drift").await;
    env.create(
        "app",
        spec(
            "app",
            vec![grant("acme-media", None, Some("p/"), Access::Read)],
        ),
    )
    .await;
    let ba = env.settle("app").await;
    let arn = ba.status.unwrap().role_arn.unwrap();
    let name = arn.rsplit('/').next().unwrap().to_string();
    let iam = env.iam().await;
    let wanted_trust = iam.get_role(&name).await.unwrap().unwrap().trust.unwrap();
    iam.client()
        .update_assume_role_policy()
        .role_name(&name)
        .policy_document(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}}"#)
        .send()
        .await
        .unwrap();
    iam.client()
        .put_role_policy()
        .role_name(&name)
        .policy_name(INLINE_POLICY_NAME)
        .policy_document(r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#)
        .send()
        .await
        .unwrap();
    let patch = serde_json::json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::999999999999:role/evil"}}});
    env.sas()
        .patch("app", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();

    let before = env.counts();
    env.reconcile("app").await;
    let delta = env.counts().since(&before);
    assert_eq!(
        delta.ops.get("UpdateAssumeRolePolicy"),
        Some(&1),
        "{:?}",
        delta.ops
    );
    assert_eq!(delta.ops.get("PutRolePolicy"), Some(&1), "{:?}", delta.ops);
    assert_eq!(
        iam.get_role(&name).await.unwrap().unwrap().trust.unwrap(),
        wanted_trust.clone()
    );
    let policy = iam
        .get_role_policy(&name, INLINE_POLICY_NAME)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!policy.to_json().contains("s3:*"));
    let anns = annotations(&env.sas().get("app").await.unwrap());
    assert_eq!(anns.get("eks.amazonaws.com/role-arn"), Some(&arn));
    let reasons = env.event_reasons("app");
    assert!(
        reasons.contains(&"DriftRepaired".into())
            && reasons.contains(&"ServiceAccountAnnotated".into()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn deletion_removes_role_and_annotations_but_keeps_a_users_service_account() {
    let env = Env::new("rec-delete").await;
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some("kept".into());
    sa.metadata.annotations = Some(BTreeMap::from([("team".to_string(), "a".to_string())]));
    env.sas().create(&PostParams::default(), &sa).await.unwrap();
    env.create(
        "kept",
        spec("kept", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    env.create(
        "made",
        spec("made", vec![grant("acme-media", None, None, Access::Write)]),
    )
    .await;
    let kept = env.settle("kept").await.status.unwrap().role_arn.unwrap();
    let made = env.settle("made").await.status.unwrap().role_arn.unwrap();

    for name in ["kept", "made"] {
        env.bas()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            env.get(name).await.is_some(),
            "the finalizer holds the object"
        );
        env.reconcile(name).await;
        assert!(
            env.get(name).await.is_none(),
            "{name}: finalizer removed after cleanup"
        );
    }
    let iam = env.iam().await;
    for arn in [kept, made] {
        assert!(
            iam.get_role(arn.rsplit('/').next().unwrap())
                .await
                .unwrap()
                .is_none(),
            "{arn} deleted"
        );
    }
    let sa = env
        .sas()
        .get("kept")
        .await
        .expect("a ServiceAccount the broker did not create stays");
    assert_eq!(
        annotations(&sa),
        BTreeMap::from([("team".to_string(), "a".to_string())])
    );
    assert!(
        env.sas().get_opt("made").await.unwrap().is_none(),
        "the broker's own ServiceAccount goes"
    );
    let reasons = env.event_reasons("made");
    assert!(reasons.contains(&"RoleDeleted".into()), "{reasons:?}");
}

#[tokio::test]
async fn a_foreign_role_with_the_same_name_is_left_alone() {
    let env = Env::new("rec-foreign").await;
    let desired = valet_broker::naming::role_name(
        "{cluster}-{namespace}-{serviceaccount}",
        "rec-foreign",
        NS,
        "app",
    );
    let iam = env.iam().await;
    let foreign = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}}"#;
    iam.client()
        .create_role()
        .role_name(&desired)
        .path("/storage-valet/rec-foreign/")
        .assume_role_policy_document(foreign)
        .send()
        .await
        .unwrap();
    let before = env.counts();
    env.create(
        "app",
        spec("app", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let ba = env.settle("app").await;
    let c = condition(&ba, "RoleProvisioned");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ForeignRole"),
        "{c:?}"
    );
    assert!(c.message.contains("left untouched"), "{}", c.message);
    assert_eq!(condition(&ba, "Ready").status, "False");
    assert!(
        env.sas().get_opt("app").await.unwrap().is_none(),
        "no role, no annotation"
    );
    assert!(env.event_reasons("app").contains(&"ForeignRole".into()));

    env.bas()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    env.reconcile("app").await;
    assert!(env.get("app").await.is_none());
    assert_eq!(
        env.counts().since(&before).writes(),
        0,
        "never wrote to the foreign role"
    );
    let still = iam
        .get_role(&desired)
        .await
        .unwrap()
        .expect("foreign role still there");
    assert_eq!(
        still.trust.unwrap(),
        PolicyDocument::parse(foreign).unwrap()
    );
}

#[tokio::test]
async fn long_namespace_free_names_fit() {
    let env = Env::new("rec-long").await;
    let sa = format!("{}-{}", "very-long-service-account-name".repeat(8), "x");
    env.create(
        "long",
        spec(&sa, vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let ba = env.settle("long").await;
    assert_eq!(condition(&ba, "Ready").status, "True", "{:?}", ba.status);
    let arn = ba.status.unwrap().role_arn.unwrap();
    assert!(arn.rsplit('/').next().unwrap().len() <= 64, "{arn}");
}

#[tokio::test]
async fn invalid_specs_become_a_condition_without_any_aws_call() {
    let env = Env::new("rec-invalid").await;
    let before = env.counts();
    let cases = [
        (
            "bad-name",
            spec("app", vec![grant("Bad_Bucket", None, None, Access::Read)]),
        ),
        (
            "bad-prefix",
            spec(
                "app2",
                vec![grant("acme-media", None, Some("team-*"), Access::Read)],
            ),
        ),
        (
            "no-alias",
            spec(
                "app3",
                vec![
                    grant("acme-a", None, None, Access::Read),
                    grant("acme-b", None, None, Access::Read),
                ],
            ),
        ),
    ];
    for (name, s) in cases {
        env.create(name, s).await;
        let ba = env.settle(name).await;
        let c = condition(&ba, "Ready");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec"),
            "{name}: {c:?}"
        );
        assert!(c.message.contains("spec.buckets["), "{name}: {}", c.message);
    }
    assert_eq!(
        env.counts().since(&before).total(),
        0,
        "no IAM call for invalid specs"
    );
    assert!(
        env.event_reasons("bad-name")
            .contains(&"InvalidSpec".into())
    );
}

#[tokio::test]
async fn moving_to_another_service_account_retires_the_previous_role() {
    let env = Env::new("rec-move").await;
    env.create(
        "app",
        spec(
            "old-sa",
            vec![grant("acme-media", None, None, Access::Read)],
        ),
    )
    .await;
    let old = env.settle("app").await.status.unwrap().role_arn.unwrap();
    let patch = serde_json::json!({"spec": {"serviceAccountName": "new-sa"}});
    env.bas()
        .patch("app", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    let ba = env.settle("app").await;
    let new = ba.status.clone().unwrap().role_arn.unwrap();
    assert_ne!(old, new);
    assert_eq!(condition(&ba, "Ready").status, "True");
    let iam = env.iam().await;
    assert!(
        iam.get_role(old.rsplit('/').next().unwrap())
            .await
            .unwrap()
            .is_none(),
        "previous role deleted"
    );
    assert!(
        iam.get_role(new.rsplit('/').next().unwrap())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        env.sas().get_opt("old-sa").await.unwrap().is_none(),
        "the broker's old ServiceAccount is gone"
    );
    let anns = annotations(&env.sas().get("new-sa").await.unwrap());
    assert_eq!(anns.get("eks.amazonaws.com/role-arn"), Some(&new));
    assert!(
        env.event_reasons("app")
            .contains(&"PreviousRoleDeleted".into())
    );
}

#[tokio::test]
async fn a_missing_provider_holds_the_role_back_until_it_exists() {
    let env = Env::with("rec-noprov", |cfg| cfg.create_oidc_provider = false).await;
    env.create(
        "app",
        spec("app", vec![grant("acme-media", None, None, Access::Read)]),
    )
    .await;
    let before = env.counts();
    let ba = env.settle("app").await;
    let t = condition(&ba, "TrustValid");
    assert_eq!(
        (t.status.as_str(), t.reason.as_str()),
        ("False", "OidcProviderInvalid"),
        "{t:?}"
    );
    let r = condition(&ba, "RoleProvisioned");
    assert_eq!(r.reason, "WaitingForOidcProvider", "{r:?}");
    assert_eq!(
        env.counts().since(&before).writes(),
        0,
        "no role naming a missing provider"
    );
    assert!(env.sas().get_opt("app").await.unwrap().is_none());

    // Someone creates the provider; the next pass provisions.
    env.iam()
        .await
        .client()
        .create_open_id_connect_provider()
        .url(env.oidc.url())
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list(env.oidc.ca_thumbprint())
        .send()
        .await
        .unwrap();
    env.parts.trust.forget().await;
    let ba = env.settle("app").await;
    assert_eq!(condition(&ba, "Ready").status, "True", "{:?}", ba.status);
}
