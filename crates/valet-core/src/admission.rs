//! AdmissionReview (`admission.k8s.io/v1`) in, AdmissionReview out.
//!
//! The webhook's handler only decodes, looks the ServiceAccount up, calls
//! [`admit`] and encodes; everything that decides the answer is here, pure.

use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use crate::identity::SaConfig;
use crate::mutate::{Mutation, Outcome, mutate};
use crate::pod::PodView;
use crate::settings::Settings;

pub type PodRequest = AdmissionRequest<PodView>;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not an AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Decodes a review body; only the fields of the pod that matter are read.
pub fn decode(body: &[u8]) -> Result<PodRequest, DecodeError> {
    let review: AdmissionReview<PodView> = serde_json::from_slice(body)?;
    review.try_into().map_err(|_| DecodeError::NoRequest)
}

/// True for the requests this webhook changes: Pod CREATE (not a subresource).
pub fn is_pod_create(req: &PodRequest) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == Operation::Create
        && req.sub_resource.is_none()
        && req.object.is_some()
}

/// The namespace and ServiceAccount of the pod under review.
pub fn pod_service_account(req: &PodRequest) -> Option<(&str, &str)> {
    let pod = req.object.as_ref()?;
    let ns = req
        .namespace
        .as_deref()
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    Some((ns, pod.service_account()))
}

/// What the ServiceAccount lookup found.
#[derive(Clone, Copy, Debug)]
pub enum SaLookup<'a> {
    Found(&'a SaConfig),
    /// The SA does not exist (the API server said so, or the cache is synced
    /// and the grace period passed).
    NotFound,
    /// The SA could not be read at all (API server down, timeout).
    Unavailable(&'a str),
}

/// `--on-lookup-failure`: what to do when the ServiceAccount cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LookupFailure {
    /// Admit the pod unmutated, with a warning (the peer's behaviour).
    #[default]
    Allow,
    /// Refuse the pod so that its controller retries.
    Deny,
}

/// The outcome of one review, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a pod creation: allowed unchanged.
    Ignored,
    Decided(Outcome),
    /// The SA could not be read: allowed unmutated with a warning.
    LookupFailedAllowed,
    /// The SA could not be read: denied.
    LookupFailedDenied,
}

impl Verdict {
    /// The `outcome` label of `storage_valet_admission_requests_total`.
    pub fn metric_outcome(self) -> &'static str {
        match self {
            Verdict::Decided(Outcome::Mutated) => "mutated",
            Verdict::Ignored | Verdict::Decided(_) => "skipped",
            Verdict::LookupFailedAllowed | Verdict::LookupFailedDenied => "error",
        }
    }
}

/// Decides the response for a decoded request.
pub fn admit(
    req: &PodRequest,
    lookup: SaLookup<'_>,
    container_credentials: bool,
    settings: &Settings,
    on_failure: LookupFailure,
    jitter: u64,
) -> (AdmissionResponse, Verdict) {
    let response = AdmissionResponse::from(req);
    let (Some(pod), Some((ns, sa_name))) = (req.object.as_ref(), pod_service_account(req)) else {
        return (response, Verdict::Ignored);
    };
    if !is_pod_create(req) {
        return (response, Verdict::Ignored);
    }
    let empty = SaConfig::default();
    let sa = match lookup {
        SaLookup::Found(sa) => sa,
        // Container credentials need nothing from the SA but optional overrides.
        SaLookup::NotFound | SaLookup::Unavailable(_) if container_credentials => &empty,
        SaLookup::NotFound => return (response, Verdict::Decided(Outcome::NotConfigured)),
        SaLookup::Unavailable(why) => {
            let message = format!(
                "storage-valet could not read ServiceAccount {ns}/{sa_name} ({why}); \
                 the pod was admitted without AWS credentials: recreate it once the API server is reachable"
            );
            return match on_failure {
                LookupFailure::Allow => (with_warnings(response, vec![message]), Verdict::LookupFailedAllowed),
                LookupFailure::Deny => (
                    response.deny(format!(
                        "storage-valet could not read ServiceAccount {ns}/{sa_name} ({why}); retry shortly"
                    )),
                    Verdict::LookupFailedDenied,
                ),
            };
        }
    };
    let Mutation {
        patch,
        outcome,
        warnings,
    } = mutate(pod, ns, sa, container_credentials, settings, jitter);
    let mut response = with_warnings(response, warnings);
    if !patch.0.is_empty() {
        // Serialised here rather than by `with_patch`: [`encode`] writes the
        // wire form (and its patchType) itself. A patch of strings and
        // numbers always serialises.
        let mut bytes = Vec::with_capacity(1024);
        if serde_json::to_writer(&mut bytes, &patch).is_ok() {
            response.patch = Some(bytes);
        }
    }
    (response, Verdict::Decided(outcome))
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// Encodes the response as an `admission.k8s.io/v1` AdmissionReview.
///
/// kube-core's `AdmissionResponse` serialises `patch` (a `Vec<u8>`) as an
/// array of numbers (kube-rs issue #1781); the API server decodes `[]byte`
/// from base64 and would refuse it. So the wire form is written here.
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    use base64::Engine;
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: Response<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Response<'a> {
        uid: &'a str,
        allowed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'a kube_core::Status>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
        audit_annotations: &'a std::collections::HashMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a [String]>,
    }
    let patch = response
        .patch
        .as_deref()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let status = &response.result;
    let has_status = !response.allowed || !status.message.is_empty() || status.code != 0;
    let review = Review {
        api_version: non_empty(&response.types.api_version, "admission.k8s.io/v1"),
        kind: non_empty(&response.types.kind, "AdmissionReview"),
        response: Response {
            uid: &response.uid,
            allowed: response.allowed,
            status: has_status.then_some(status),
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_deref(),
        },
    };
    let mut out = Vec::with_capacity(256 + review.response.patch.as_ref().map_or(0, String::len));
    // A review of strings, bools and maps of strings always serialises.
    let _ = serde_json::to_writer(&mut out, &review);
    out
}

fn non_empty<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let req = decode(&review("Pod", "CREATE", "app")).unwrap();
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
        let out: Value = serde_json::from_slice(&encode(resp)).unwrap();
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
            let req = decode(&review(kind, op, "app")).unwrap();
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
        let req = decode(&review("Pod", "CREATE", "app")).unwrap();
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
        assert!(resp.warnings.unwrap()[0].contains("team-a/app"));
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
        assert!(resp.result.message.contains("retry"));
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
