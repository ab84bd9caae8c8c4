//! `valet audit` on Mountpoint for S3 CSI volumes (in-process API server
//! serving PersistentVolumes and PersistentVolumeClaims): the inventory of
//! volumes, claims and pods; driver-level credentials shared across
//! namespaces flagged; roles shared by several ServiceAccounts listed.

mod support;

use serde_json::{Value, json};
use support::{args, sa};
use valet_audit::cli::{audit, client};
use valet_audit::report::Report;
use valet_audit::{Finding, Kind, Severity};
use valet_testkit::apiserver::ApiServer;

fn pv(name: &str, driver: &str, attributes: Value, claim: (&str, &str)) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1200Gi"}, "accessModes": ["ReadWriteMany"],
            "csi": {"driver": driver, "volumeHandle": format!("{name}-handle"), "volumeAttributes": attributes},
            "claimRef": {"namespace": claim.0, "name": claim.1}},
        "status": {"phase": "Bound"}})
}

fn pvc(ns: &str, name: &str, volume: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"namespace": ns, "name": name},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": volume,
            "resources": {"requests": {"storage": "1200Gi"}}},
        "status": {"phase": "Bound"}})
}

fn pod(ns: &str, name: &str, claim: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name},
        "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "app",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": "Running"}})
}

fn of(r: &Report, kind: Kind) -> Vec<&Finding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

#[tokio::test]
async fn s3_csi_volumes_shared_driver_credentials_and_shared_roles() {
    let server = ApiServer::start().await;
    let put = |v: Value| {
        server.insert(v).expect("fixture object");
    };
    // Driver credentials in team-a and team-b (absent and explicit
    // "driver"), pod credentials in team-c, and a volume of another driver.
    put(pv(
        "s3-a",
        "s3.csi.aws.com",
        json!({"bucketName": "acme-a"}),
        ("team-a", "data"),
    ));
    put(pv(
        "s3-b",
        "s3.csi.aws.com",
        json!({"bucketName": "acme-b", "authenticationSource": "driver"}),
        ("team-b", "logs"),
    ));
    put(pv(
        "s3-c",
        "s3.csi.aws.com",
        json!({"bucketName": "acme-c", "authenticationSource": "pod"}),
        ("team-c", "media"),
    ));
    put(pv(
        "ebs-1",
        "ebs.csi.aws.com",
        json!({}),
        ("team-a", "disk"),
    ));
    for (ns, claim, volume) in [
        ("team-a", "data", "s3-a"),
        ("team-b", "logs", "s3-b"),
        ("team-c", "media", "s3-c"),
        ("team-a", "disk", "ebs-1"),
    ] {
        put(pvc(ns, claim, volume));
    }
    put(pod("team-a", "reader-1", "data"));
    put(pod("team-a", "reader-2", "data"));
    put(pod("team-b", "shipper-1", "logs"));
    put(pod("team-c", "web-1", "media"));
    put(pod("team-a", "db-0", "disk"));
    // One role behind two ServiceAccounts, another behind one.
    let shared = "arn:aws:iam::222222222222:role/shared-s3";
    put(sa(
        "team-a",
        "etl",
        json!({"eks.amazonaws.com/role-arn": shared}),
    ));
    put(sa(
        "team-b",
        "etl",
        json!({"eks.amazonaws.com/role-arn": shared}),
    ));
    put(sa(
        "team-c",
        "web",
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::222222222222:role/web"}),
    ));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path()).unwrap();
    let a = args(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    let c = client(a.kubeconfig.as_deref()).await.expect("client");
    let r = audit(&c, &a).await.expect("audit runs");

    let volumes = of(&r, Kind::S3CsiVolume);
    let mut names: Vec<&str> = volumes.iter().map(|f| f.object.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "persistentvolume/s3-a",
            "persistentvolume/s3-b",
            "persistentvolume/s3-c"
        ],
        "the EBS volume is not an S3 one: {:#?}",
        r.findings
    );
    let a_vol = volumes
        .iter()
        .find(|f| f.object == "persistentvolume/s3-a")
        .unwrap();
    assert_eq!(a_vol.severity, Severity::Info);
    assert_eq!(a_vol.namespace, "team-a");
    for part in [
        "bucket acme-a",
        "claim team-a/data",
        "2 pod(s): reader-1, reader-2",
        "driver's own credentials",
    ] {
        assert!(a_vol.reason.contains(part), "{part:?}: {a_vol:?}");
    }

    let shared_driver = of(&r, Kind::SharedDriverCredentials);
    let mut flagged: Vec<(&str, &str)> = shared_driver
        .iter()
        .map(|f| (f.namespace.as_str(), f.object.as_str()))
        .collect();
    flagged.sort();
    assert_eq!(
        flagged,
        [
            ("team-a", "persistentvolume/s3-a"),
            ("team-b", "persistentvolume/s3-b")
        ],
        "pod credentials (s3-c) are not flagged: {:#?}",
        r.findings
    );
    let f = shared_driver
        .iter()
        .find(|f| f.namespace == "team-a")
        .unwrap();
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.reason.contains("team-b"), "{f:?}");
    assert!(f.fix.contains("authenticationSource: pod"), "{f:?}");

    let roles = of(&r, Kind::SharedRole);
    assert_eq!(roles.len(), 1, "{:#?}", r.findings);
    assert_eq!(roles[0].object, "role/shared-s3");
    assert!(
        roles[0].reason.contains("team-a/etl, team-b/etl"),
        "{:?}",
        roles[0]
    );

    // One namespace with driver credentials is no sharing.
    let a = args(&["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", "team-a"]);
    let r = audit(&c, &a).await.expect("audit runs");
    assert!(
        of(&r, Kind::SharedDriverCredentials).is_empty(),
        "{:#?}",
        r.findings
    );
    assert_eq!(of(&r, Kind::S3CsiVolume).len(), 1, "{:#?}", r.findings);
}
