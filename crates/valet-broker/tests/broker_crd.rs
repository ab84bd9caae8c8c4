//! The generated CRD: schema validation, printer columns, and the same
//! checks in code.

mod common;

use common::{grant, spec};
use kube::CustomResourceExt;
use serde_json::Value;
use valet_broker::crd::{Access, BucketAccess, SpecError};

fn crd() -> Value {
    serde_json::to_value(BucketAccess::crd()).unwrap()
}

#[test]
fn names_scope_and_printer_columns() {
    let crd = crd();
    assert_eq!(crd["metadata"]["name"], "bucketaccesses.storage-valet.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "BucketAccess");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["ServiceAccount", "Role", "Permitted", "Ready", "Age"]
    );
}

#[test]
fn schema_carries_the_validation() {
    let crd = crd();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["required"],
        serde_json::json!(["buckets", "serviceAccountName"])
    );
    let buckets = &spec["properties"]["buckets"];
    assert_eq!(buckets["maxItems"], 20);
    let rules: Vec<&str> = buckets["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.iter().any(|r| r.contains("has(b.alias)")),
        "{rules:?}"
    );
    let item = &buckets["items"]["properties"];
    assert_eq!(item["name"]["pattern"], "^[a-z0-9][a-z0-9.-]*[a-z0-9]$");
    assert_eq!(item["name"]["maxLength"], 63);
    assert!(item["prefix"]["pattern"].as_str().unwrap().contains("*?$"));
    assert_eq!(
        item["access"]["enum"],
        serde_json::json!(["read", "write", "readwrite"])
    );
    assert_eq!(
        spec["properties"]["bucketAccount"]["pattern"],
        "^[0-9]{12}$"
    );
    let yaml = valet_broker::crd::crd_yaml().unwrap();
    assert!(
        yaml.starts_with("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition"),
        "{yaml}"
    );
}

#[test]
fn code_validation_matches_and_explains() {
    let ok = spec(
        "app",
        vec![grant("acme-media", None, Some("team-a/"), Access::Read)],
    );
    assert_eq!(
        ok.validate().unwrap().buckets[0].prefix.as_deref(),
        Some("team-a/")
    );
    // An empty prefix means the whole bucket.
    let empty = spec(
        "app",
        vec![grant("acme-media", None, Some(""), Access::Read)],
    );
    assert_eq!(empty.validate().unwrap().buckets[0].prefix, None);

    let cases: Vec<(valet_broker::crd::BucketAccessSpec, &str)> = vec![
        (
            spec("App", vec![grant("acme", None, None, Access::Read)]),
            "serviceAccountName",
        ),
        (spec("app", vec![]), "spec.buckets is empty"),
        (
            spec("app", vec![grant("xn--acme", None, None, Access::Read)]),
            "reserved",
        ),
        (
            spec("app", vec![grant("acme", None, Some("/abs"), Access::Read)]),
            "must not start with '/'",
        ),
        (
            spec("app", vec![grant("acme", None, Some("a$b"), Access::Read)]),
            "wildcards",
        ),
        (
            spec(
                "app",
                vec![
                    grant("acme-a", Some("x-y"), None, Access::Read),
                    grant("acme-b", Some("x_y"), None, Access::Read),
                ],
            ),
            "same env var",
        ),
        (
            spec(
                "app",
                vec![
                    grant("acme", Some("a"), None, Access::Read),
                    grant("acme", Some("b"), None, Access::Write),
                ],
            ),
            "listed twice",
        ),
        (
            spec(
                "app",
                (0..21)
                    .map(|i| {
                        grant(
                            &format!("bucket-{i}"),
                            Some(&format!("b{i}")),
                            None,
                            Access::Read,
                        )
                    })
                    .collect(),
            ),
            "at most 20",
        ),
    ];
    for (s, needle) in cases {
        let err = s.validate().unwrap_err();
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    }
    let mut acct = spec("app", vec![grant("acme", None, None, Access::Read)]);
    acct.bucket_account = Some("12345".into());
    assert!(matches!(acct.validate(), Err(SpecError::Account(_))));
}

#[test]
fn yaml_round_trip_of_the_design_example() {
    let yaml = r#"
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: { name: media-reader, namespace: team-a }
spec:
  serviceAccountName: media-app
  bucketAccount: "222222222222"
  buckets:
    - name: acme-media
      alias: media
      prefix: team-a/
      access: read
"#;
    let ba: BucketAccess = serde_yaml_ng::from_str(yaml).unwrap();
    let valid = ba.spec.validate().unwrap();
    assert_eq!(valid.bucket_account.as_deref(), Some("222222222222"));
    assert_eq!(valid.buckets[0].alias.as_deref(), Some("media"));
    assert!(serde_yaml_ng::from_str::<BucketAccess>(&yaml.replace("read", "admin")).is_err());
}
