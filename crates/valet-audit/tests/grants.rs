//! `valet audit` on the broker's guardrails, against the in-process API
//! server and moto: BucketAccesses whose grants no BucketAccessPolicy allows
//! (judged by the broker's own permit logic), and broker roles in a bucket
//! account that no BucketAccess explains (ListRoles under the broker's path
//! and ListRoleTags, through the provisioning role of `--broker-config`).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use support::args;
use valet_audit::cli::{audit, client};
use valet_audit::report::Report;
use valet_audit::{Kind, Severity};
use valet_broker::accounts::Accounts;
use valet_broker::config::{BrokerConfig, BucketAccountConfig};
use valet_broker::iam::IamProbe;
use valet_broker::provision::{
    MANAGED_BY, TAG_BUCKET_ACCESS, TAG_CLUSTER, TAG_MANAGED_BY, TAG_NAMESPACE, TAG_SERVICE_ACCOUNT,
};
use valet_testkit::apiserver::{ApiServer, ResourceDef};
use valet_testkit::moto::Moto;
use valet_trust::aws::{AwsClients, AwsConfig};

const ACCOUNT: &str = "555500000001";
const CLUSTER: &str = "audit-grants";
const PATH: &str = "/storage-valet/audit-grants/";

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role{PATH}{name}")
}

fn bucket_access(ns: &str, name: &str, bucket: serde_json::Value, role: &str) -> serde_json::Value {
    json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccess",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"serviceAccountName": "app", "buckets": [bucket]},
        "status": {"roleArn": role_arn(role), "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
}

fn tags(ns: &str, ba: &str, cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (TAG_CLUSTER.to_string(), cluster.to_string()),
        (TAG_NAMESPACE.to_string(), ns.to_string()),
        (TAG_SERVICE_ACCOUNT.to_string(), "app".to_string()),
        (TAG_BUCKET_ACCESS.to_string(), ba.to_string()),
    ])
}

fn has(r: &Report, sev: Severity, kind: Kind, ns: &str, object: &str, text: &str) -> bool {
    r.findings.iter().any(|f| {
        f.severity == sev
            && f.kind == kind
            && f.namespace == ns
            && f.object == object
            && f.reason.contains(text)
    })
}

fn of_kind(r: &Report, kind: Kind) -> Vec<String> {
    r.findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| format!("{}/{}", f.namespace, f.object))
        .collect()
}

#[tokio::test]
async fn grants_outside_policies_and_roles_no_bucket_access_explains() {
    // SAFETY: the only test of this binary, on a current-thread runtime: no
    // other thread reads the environment. The broker's credential chain
    // reads these, as it would on a workstation.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDAUDIT");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start().expect("moto_server (pip install 'moto[server]')");

    let server = ApiServer::start().await;
    server.register(
        ResourceDef::namespaced(
            "storage-valet.dev",
            "v1alpha1",
            "BucketAccess",
            "bucketaccesses",
        )
        .with_status(),
    );
    server.register(ResourceDef::cluster(
        "storage-valet.dev",
        "v1alpha1",
        "BucketAccessPolicy",
        "bucketaccesspolicies",
    ));
    let put = |v: serde_json::Value| {
        server.insert(v).expect("fixture object");
    };
    put(
        json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccessPolicy",
        "metadata": {"name": "teams"},
        "spec": {"namespaces": ["team-a"], "bucketAccount": ACCOUNT, "buckets": [
            {"name": "acme-*", "prefixes": ["{namespace}/"], "maxAccess": "readwrite"}]}}),
    );
    put(
        json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccessPolicy",
        "metadata": {"name": "tenants"},
        "spec": {"namespaceSelector": {"matchLabels": {"tenant": "true"}}, "bucketAccount": ACCOUNT,
            "buckets": [{"name": "shared", "maxAccess": "read"}]}}),
    );
    for (ns, tenant) in [("team-a", "false"), ("team-b", "false"), ("team-c", "true")] {
        put(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"tenant": tenant}}}));
    }
    // Allowed by name, allowed by label, and three outside every policy:
    // another namespace's prefix, more access than maxAccess, and a
    // selector the namespace's labels do not match.
    put(bucket_access(
        "team-a",
        "media",
        json!({"name": "acme-media", "prefix": "team-a/", "access": "readwrite"}),
        "audit-grants-team-a-app",
    ));
    put(bucket_access(
        "team-c",
        "shared",
        json!({"name": "shared", "access": "read"}),
        "audit-grants-team-c-app",
    ));
    put(bucket_access(
        "team-b",
        "grab",
        json!({"name": "acme-media", "prefix": "team-a/", "access": "read"}),
        "audit-grants-team-b-app",
    ));
    put(bucket_access(
        "team-c",
        "too-much",
        json!({"name": "shared", "access": "write"}),
        "audit-grants-team-c-other",
    ));
    put(bucket_access(
        "team-b",
        "shared",
        json!({"name": "shared", "access": "read"}),
        "audit-grants-team-b-shared",
    ));

    // The bucket account: the broker's roles for two of those, an orphan
    // whose BucketAccess is gone, and roles our tags do not prove are ours.
    let mut cfg = BrokerConfig::new(CLUSTER, "eu-west-1");
    cfg.default_bucket_account = Some(ACCOUNT.into());
    cfg.bucket_accounts.insert(
        ACCOUNT.into(),
        BucketAccountConfig {
            provisioning_role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/valet-provisioner")),
            external_id: Some("audit".into()),
            ..BucketAccountConfig::default()
        },
    );
    cfg.endpoints.iam = Some(moto.endpoint());
    cfg.endpoints.sts = Some(moto.endpoint());
    let aws = AwsClients::load(&AwsConfig {
        region: Some("eu-west-1".into()),
        iam_endpoint: cfg.endpoints.iam.clone(),
        sts_endpoint: cfg.endpoints.sts.clone(),
        credentials: None,
    })
    .await;
    let accounts = Accounts::new(aws, Arc::new(cfg.clone()), Arc::new(IamProbe::default()));
    let iam = accounts
        .get(ACCOUNT)
        .await
        .expect("bucket account")
        .iam
        .clone();
    let trust = valet_policy::trust_policy(
        &format!("arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.example.test/x"),
        "https://oidc.example.test/x",
        "team-a",
        "app",
        "sts.amazonaws.com",
    )
    .unwrap();
    let create = async |name: &str, path: &str, tags: BTreeMap<String, String>| {
        iam.create_role(name, path, &trust, &tags, "test", None)
            .await
            .expect("CreateRole");
    };
    create(
        "audit-grants-team-a-app",
        PATH,
        tags("team-a", "media", CLUSTER),
    )
    .await;
    create(
        "audit-grants-team-c-app",
        PATH,
        tags("team-c", "shared", CLUSTER),
    )
    .await;
    create(
        "audit-grants-team-d-gone",
        PATH,
        tags("team-d", "gone", CLUSTER),
    )
    .await;
    create("hand-made", PATH, BTreeMap::new()).await;
    create(
        "other-cluster",
        PATH,
        tags("team-d", "gone", "another-cluster"),
    )
    .await;
    create("elsewhere", "/", tags("team-d", "gone", CLUSTER)).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.yaml");
    std::fs::write(&config, serde_yaml_ng::to_string(&cfg).unwrap()).unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path()).unwrap();
    let run = async |extra: &[&str]| {
        let mut argv = vec![
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--broker-config",
            config.to_str().unwrap(),
        ];
        argv.extend_from_slice(extra);
        let a = args(&argv);
        let c = client(a.kubeconfig.as_deref()).await.expect("client");
        audit(&c, &a).await.expect("audit runs")
    };

    let r = run(&[]).await;
    let mut outside = of_kind(&r, Kind::OutsidePolicy);
    outside.sort();
    assert_eq!(
        outside,
        [
            "team-b/bucketaccess/grab",
            "team-b/bucketaccess/shared",
            "team-c/bucketaccess/too-much"
        ],
        "{:#?}",
        r.findings
    );
    assert!(has(
        &r,
        Severity::Error,
        Kind::OutsidePolicy,
        "team-b",
        "bucketaccess/grab",
        "namespace team-b bucket acme-media prefix team-a/ access read"
    ));
    assert!(has(
        &r,
        Severity::Error,
        Kind::OutsidePolicy,
        "team-c",
        "bucketaccess/too-much",
        "access write"
    ));

    assert_eq!(
        of_kind(&r, Kind::UnexplainedRole),
        ["team-d/role/audit-grants-team-d-gone"],
        "{:#?}",
        r.findings
    );
    let orphan = r
        .findings
        .iter()
        .find(|f| f.kind == Kind::UnexplainedRole)
        .unwrap();
    assert_eq!(orphan.severity, Severity::Warning);
    assert!(orphan.reason.contains("team-d/gone"), "{orphan:?}");
    assert!(
        orphan
            .fix
            .contains("aws iam delete-role --role-name audit-grants-team-d-gone"),
        "{orphan:?}"
    );
    assert!(
        !r.findings.iter().any(|f| f.kind == Kind::Unchecked),
        "{:#?}",
        r.findings
    );

    // Scoped to a namespace: only its roles are judged (the others'
    // BucketAccesses were not read).
    let r = run(&["--namespace", "team-a"]).await;
    assert!(
        of_kind(&r, Kind::UnexplainedRole).is_empty(),
        "{:#?}",
        r.findings
    );
    assert!(of_kind(&r, Kind::OutsidePolicy).is_empty());

    // Without the provisioning role's reach: a note, not a failed audit.
    let mut broken = cfg.clone();
    broken.endpoints.sts = Some(valet_testkit::oidc::OidcIssuer::unreachable_url().unwrap());
    broken.retry.max_attempts = 1;
    std::fs::write(&config, serde_yaml_ng::to_string(&broken).unwrap()).unwrap();
    let r = run(&[]).await;
    assert!(
        r.findings.iter().any(|f| f.kind == Kind::Unchecked
            && f.reason.contains(&format!("bucket account {ACCOUNT}"))),
        "{:#?}",
        r.findings
    );
    assert!(of_kind(&r, Kind::UnexplainedRole).is_empty());
}
