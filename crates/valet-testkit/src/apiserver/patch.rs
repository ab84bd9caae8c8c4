//! PATCH bodies by Content-Type.

use serde_json::Value;

use super::wire::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    /// Strategic merge patch is served as a JSON merge patch: lists are
    /// replaced rather than merged by key.
    Strategic,
    /// Server-side apply, served as a merge of the applied object.
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Result<PatchKind, ApiError> {
        let mime = ct.split(';').next().unwrap_or("").trim();
        match mime {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format: {other:?}"),
            )),
        }
    }
}

/// Parses the body: JSON, or YAML for apply (kube sends JSON, which is YAML).
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    if kind == PatchKind::Apply {
        return serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML apply patch: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch body: {e}")))
}

/// Applies `patch` to `current`, returning the patched object.
pub fn apply(kind: PatchKind, current: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, patch);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // One by one on a copy (so still all-or-nothing), because the
            // real server's JSON patch library treats a missing path as null
            // in a `test`: kube's finalizer helper relies on that.
            for op in ops.0 {
                if let json_patch::PatchOperation::Test(t) = &op
                    && t.value.is_null()
                    && doc.pointer(t.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, &[op]).map_err(|e| {
                    ApiError::invalid(format!("the JSON patch could not be applied: {e}"))
                })?;
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patches() {
        let cur = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let merged = apply(
            PatchKind::Merge,
            &cur,
            &json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
        )
        .unwrap();
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}})
        );
        let ops = json!([{"op": "replace", "path": "/metadata/labels/a", "value": "9"}]);
        assert_eq!(
            apply(PatchKind::Json, &cur, &ops).unwrap()["metadata"]["labels"]["a"],
            "9"
        );
        let bad = json!([{"op": "test", "path": "/metadata/labels/a", "value": "0"}]);
        assert_eq!(apply(PatchKind::Json, &cur, &bad).unwrap_err().code, 422);
        // As kube's finalizer helper sends it for an object without finalizers.
        let add = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}
        ]);
        assert_eq!(
            apply(PatchKind::Json, &cur, &add).unwrap()["metadata"]["finalizers"],
            json!(["f"])
        );
        let stale = json!([{"op": "test", "path": "/metadata/labels/a", "value": null}]);
        assert!(
            apply(PatchKind::Json, &cur, &stale).is_err(),
            "a present value is not null"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml").unwrap(),
            PatchKind::Apply
        );
        assert_eq!(
            PatchKind::from_content_type("text/plain").unwrap_err().code,
            415
        );
        assert_eq!(
            parse_body(PatchKind::Apply, b"a: 1\n").unwrap(),
            json!({"a": 1})
        );
    }
}
