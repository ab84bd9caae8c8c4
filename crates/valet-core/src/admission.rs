//! AdmissionReview (`admission.k8s.io/v1`) in, AdmissionReview out, in
//! three steps the webhook's handler calls in order (with the
//! ServiceAccount lookup between the first two):
//!
//! - [`decode`]: the body to a [`PodRequest`] borrowing from it
//! - [`decide`]: request + ServiceAccount + settings to a [`Response`]
//!   ([`admit`]); pure
//! - [`encode`]: the [`Response`] to AdmissionReview bytes

pub mod decide;
pub mod decode;
pub mod encode;

pub use decide::{LookupFailure, Response, SaLookup, Verdict, admit};
pub use decode::{
    DecodeError, GroupVersionKind, PodRequest, REVIEW_API_VERSION, decode, is_pod_create,
    pod_service_account,
};
pub use encode::encode;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SaConfig;
    use crate::mutate::Outcome;
    use crate::settings::Settings;
    use serde_json::{Value, json};

    fn review(kind: &str, op: &str, sa: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": kind},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a", "operation": op,
                "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
                "object": {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"generateName": "app-", "namespace": "team-a"},
                    "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "x"}]}},
                "oldObject": null, "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
            }
        }))
        .unwrap()
    }

    fn sa() -> SaConfig {
        let ann = [(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::111122223333:role/app".to_string(),
        )]
        .into_iter()
        .collect();
        SaConfig::from_annotations(&ann, &Settings::default().keys)
    }

    #[test]
    fn mutates_pod_create_and_echoes_uid() {
        let body = review("Pod", "CREATE", "app");
        let req = decode(&body).unwrap();
        assert_eq!(pod_service_account(&req), Some(("team-a", "app")));
        let sa = sa();
        let (resp, verdict) = admit(
            &req,
            SaLookup::Found(&sa),
            false,
            &Settings::default(),
            LookupFailure::Allow,
            0,
        );
        assert_eq!(verdict, Verdict::Decided(Outcome::Mutated));
        let out: Value = serde_json::from_slice(&encode(&resp)).unwrap();
        assert_eq!(
            out["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        use base64::Engine;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(
                out["response"]["patch"]
                    .as_str()
                    .expect("patch is a base64 string"),
            )
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        assert!(!patch.0.is_empty());
        assert!(out["response"].get("status").is_none());
    }

    #[test]
    fn other_operations_are_allowed_unchanged() {
        let sa = sa();
        for (kind, op) in [
            ("Pod", "UPDATE"),
            ("Pod", "DELETE"),
            ("Deployment", "CREATE"),
        ] {
            let body = review(kind, op, "app");
            let req = decode(&body).unwrap();
            let (resp, verdict) = admit(
                &req,
                SaLookup::Found(&sa),
                false,
                &Settings::default(),
                LookupFailure::Allow,
                0,
            );
            assert_eq!(verdict, Verdict::Ignored, "{kind} {op}");
            assert!(resp.allowed && resp.patch.is_none());
        }
    }

    #[test]
    fn lookup_failure_policies() {
        let body = review("Pod", "CREATE", "app");
        let req = decode(&body).unwrap();
        let s = Settings::default();
        let (resp, v) = admit(
            &req,
            SaLookup::Unavailable("timeout"),
            false,
            &s,
            LookupFailure::Allow,
            0,
        );
        assert_eq!(v, Verdict::LookupFailedAllowed);
        assert!(resp.allowed);
        assert!(resp.warnings[0].contains("team-a/app"));
        let (resp, v) = admit(
            &req,
            SaLookup::Unavailable("timeout"),
            false,
            &s,
            LookupFailure::Deny,
            0,
        );
        assert_eq!(v, Verdict::LookupFailedDenied);
        assert!(!resp.allowed);
        assert!(resp.denial.as_deref().unwrap().contains("retry"));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(decode(b"{not json"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            Err(DecodeError::NoRequest)
        ));
    }
}
