//! Unknown fields in our documents, found the way the API server's strict
//! field validation finds them (`kubectl apply` validates strictly): every
//! key must be declared by the CRD's schema, which is generated from the
//! same Rust types the broker reads. `valet broker apply` reads files that
//! never met an API server, so it runs this check itself; a typo such as
//! `prefx: team-a/` would otherwise be dropped and widen the grant to the
//! whole bucket.

use serde_json::Value;

/// Keys of `metadata` that Kubernetes accepts (ObjectMeta). A typo here is
/// as dangerous as in `spec`: `namepace: team-a` puts the object in `default`.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

/// The paths (`spec.buckets[0].prefx`) of fields `doc` has and the schema of
/// `crd` (a CustomResourceDefinition as JSON) does not declare.
pub fn unknown_fields(crd: &Value, doc: &Value) -> Vec<String> {
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut out = Vec::new();
    let Some(obj) = doc.as_object() else {
        return out;
    };
    for (key, value) in obj {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => metadata_fields(value, &mut out),
            _ => match schema["properties"].get(key) {
                Some(s) => walk(s, value, key, &mut out),
                None => out.push(key.clone()),
            },
        }
    }
    out
}

/// Unknown keys of a built-in object (e.g. a Namespace): only the top level
/// and `metadata` are checked, which is all `broker apply` reads of it.
pub fn unknown_meta_fields(doc: &Value, top_level: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in doc.as_object().into_iter().flatten() {
        if key == "metadata" {
            metadata_fields(value, &mut out);
        } else if !top_level.contains(&key.as_str()) {
            out.push(key.clone());
        }
    }
    out
}

fn metadata_fields(meta: &Value, out: &mut Vec<String>) {
    for key in meta.as_object().into_iter().flat_map(|m| m.keys()) {
        if !OBJECT_META.contains(&key.as_str()) {
            out.push(format!("metadata.{key}"));
        }
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = &schema["additionalProperties"];
            for (key, v) in map {
                let child = format!("{path}.{key}");
                match props.and_then(|p| p.get(key)) {
                    Some(s) => walk(s, v, &child, out),
                    None if additional.is_object() => walk(additional, v, &child, out),
                    None if *additional == Value::Bool(true) => {}
                    None => out.push(child),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(&schema["items"], v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::access_policy::BucketAccessPolicy;
    use crate::crd::BucketAccess;

    fn crd<K: CustomResourceExt>() -> Value {
        serde_json::to_value(K::crd()).expect("CRD as JSON")
    }

    #[test]
    fn typos_are_named_by_path_everywhere() {
        let doc = json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccess",
            "metadata": {"name": "x", "namepace": "team-a", "labels": {"any": "thing"}},
            "spec": {"serviceAccountName": "app", "suspend": true,
                "buckets": [{"name": "b", "prefix": "a/", "access": "read"},
                            {"name": "c", "prefx": "team-a/", "access": "read"}]},
            "extra": 1});
        assert_eq!(
            unknown_fields(&crd::<BucketAccess>(), &doc),
            [
                "extra",
                "metadata.namepace",
                "spec.buckets[1].prefx",
                "spec.suspend"
            ]
        );
    }

    #[test]
    fn policies_and_selectors_are_strict_too() {
        let doc = json!({"apiVersion": "storage-valet.dev/v1alpha1", "kind": "BucketAccessPolicy",
            "metadata": {"name": "p"},
            "spec": {"namespaceSelector": {"matchLabels": {"tenant": "true"}, "matchLabel": {}},
                "buckets": [{"name": "acme-*", "prefixes": ["{namespace}/"], "maxAcess": "read", "maxAccess": "read"}]}});
        assert_eq!(
            unknown_fields(&crd::<BucketAccessPolicy>(), &doc),
            [
                "spec.buckets[0].maxAcess",
                "spec.namespaceSelector.matchLabel"
            ]
        );
        let ok = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "labels": {"tenant": "true"}}});
        assert!(unknown_meta_fields(&ok, &["apiVersion", "kind", "spec", "status"]).is_empty());
    }

    #[test]
    fn no_schema_of_ours_preserves_unknown_fields() {
        for crd in [crd::<BucketAccess>(), crd::<BucketAccessPolicy>()] {
            let text = crd.to_string();
            assert!(
                !text.contains("x-kubernetes-preserve-unknown-fields"),
                "{text}"
            );
        }
    }
}
