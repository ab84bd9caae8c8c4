//! The generated CRDs (names, scope, a schema the API server accepts) and
//! strict reading of documents from files.

use kube::CustomResourceExt;
use serde_json::{Value, json};
use valet_buckets::crd::{BucketClaim, BucketClass, DeletionPolicy, DocumentError, parse_document};

fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), v));
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, c)| walk(c, format!("{path}.{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| walk(c, format!("{path}[{i}]"), out)),
        _ => {}
    }
}

#[test]
fn names_scope_and_a_structural_schema() {
    let class = serde_json::to_value(BucketClass::crd()).expect("crd");
    assert_eq!(class["metadata"]["name"], "bucketclasses.storage-valet.dev");
    assert_eq!(class["spec"]["scope"], "Cluster");
    let claim = serde_json::to_value(BucketClaim::crd()).expect("crd");
    assert_eq!(claim["metadata"]["name"], "bucketclaims.storage-valet.dev");
    assert_eq!(claim["spec"]["scope"], "Namespaced");
    assert!(claim["spec"]["versions"][0]["subresources"]["status"].is_object());
    for crd in [&class, &claim] {
        let mut nodes = Vec::new();
        walk(crd, String::new(), &mut nodes);
        for (path, node) in nodes {
            // Kubernetes refuses `additionalProperties` beside `properties`
            // and any `$ref`: the API server would reject the CRD.
            assert!(
                !(node.get("properties").is_some() && node.get("additionalProperties").is_some()),
                "{path}: additionalProperties beside properties"
            );
            assert!(node.get("$ref").is_none(), "{path}: $ref");
        }
    }
    let spec = &class["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["bucketAccount"]["pattern"],
        "^[0-9]{12}$"
    );
    assert_eq!(
        spec["properties"]["deletionPolicy"]["enum"],
        json!(["Retain", "Delete"])
    );
    let yaml = valet_buckets::crd::crds_yaml().expect("yaml");
    assert_eq!(yaml.matches("kind: CustomResourceDefinition").count(), 2);
}

#[test]
fn documents_with_unknown_fields_are_refused_naming_the_field() {
    let claim = json!({
        "apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketClaim",
        "metadata": {"name": "media", "namespace": "team-a"},
        "spec": {"bucketClassName": "standard"}
    });
    let ok: BucketClaim = parse_document(claim.clone()).expect("claim");
    assert_eq!(ok.spec.bucket_class_name, "standard");

    let mut typo = claim.clone();
    typo["spec"]["bucketClass"] = json!("standard");
    let err = parse_document::<BucketClaim>(typo).unwrap_err();
    assert!(err.to_string().contains("bucketClass"), "{err}");

    let mut top = claim;
    top["specs"] = json!({});
    assert_eq!(
        parse_document::<BucketClaim>(top).unwrap_err(),
        DocumentError::UnknownField("specs".into())
    );

    let class = json!({
        "apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketClass",
        "metadata": {"name": "standard"},
        "spec": {"namespaces": ["team-*"], "deletionPolicy": "Delete",
                 "lifecycle": {"abortIncompleteMultipartDays": 7}}
    });
    let c: BucketClass = parse_document(class.clone()).expect("class");
    assert_eq!(c.spec.deletion_policy, DeletionPolicy::Delete);
    let mut typo = class;
    typo["spec"]["lifecycle"]["abortIncompleteMultipartDay"] = json!(7);
    let err = parse_document::<BucketClass>(typo).unwrap_err();
    assert!(
        err.to_string().contains("abortIncompleteMultipartDay"),
        "{err}"
    );
}
