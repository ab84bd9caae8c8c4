//! Decode: the review body to the borrowed [`PodRequest`].
//!
//! One decoder, the serde derives of these types and of [`PodView`]: strings
//! borrow from the body, and what the decision does not need (`userInfo`,
//! `oldObject`, `options`, most of the pod) is skipped without being built.
//!
//! serde_json, not sonic-rs, although bench/mutate finds sonic-rs 1.05-1.34x
//! faster on the whole request: sonic-rs 0.5.10 skips an ignored value by
//! recursing once per level of nesting with no limit (`skip_object` /
//! `skip_array` in its parser.rs; cloudwego/sonic-rs#232, fix #238 unmerged),
//! so about 10,000 `[` in any skipped field (a 20 KB body) overflow a 2 MiB
//! worker stack and abort the whole process, for every pod of the cluster.
//! serde_json skips without recursion and bounds what it reads; the test
//! `deep_nesting_is_not_a_stack_overflow` holds whichever decoder is here to
//! that.

use serde::Deserialize;

use crate::pod::{PodView, Str};

/// The `request` of an AdmissionReview, as far as the webhook reads it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequest<'a> {
    /// `apiVersion` of the review, echoed in the response.
    #[serde(skip)]
    pub api_version: Str<'a>,
    #[serde(borrow)]
    pub uid: Str<'a>,
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    #[serde(default, borrow)]
    pub sub_resource: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub operation: Str<'a>,
    #[serde(default, borrow)]
    pub object: Option<PodView<'a>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    pub group: Str<'a>,
    #[serde(default, borrow)]
    pub version: Str<'a>,
    #[serde(default, borrow)]
    pub kind: Str<'a>,
}

/// The review around the request; `kind` and everything else is skipped.
/// Public so that bench/mutate can read it with another JSON crate.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review<'a> {
    #[serde(default, borrow)]
    pub api_version: Option<Str<'a>>,
    #[serde(default, borrow)]
    pub request: Option<PodRequest<'a>>,
}

impl<'a> Review<'a> {
    /// The request, its `apiVersion` set from the review's.
    pub fn into_request(self) -> Result<PodRequest<'a>, DecodeError> {
        let mut req = self.request.ok_or(DecodeError::NoRequest)?;
        req.api_version = self.api_version.unwrap_or(Str::from(REVIEW_API_VERSION));
        Ok(req)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not an AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// The review version this webhook speaks (and answers when a review does
/// not say).
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// Decodes a review body; only the fields of the pod that matter are read.
pub fn decode(body: &[u8]) -> Result<PodRequest<'_>, DecodeError> {
    serde_json::from_slice::<Review<'_>>(body)?.into_request()
}

/// True for the requests this webhook changes: Pod CREATE (not a
/// subresource) with an object.
pub fn is_pod_create(req: &PodRequest<'_>) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == "CREATE"
        && req.sub_resource.as_deref().is_none_or(str::is_empty)
        && req.object.is_some()
}

/// The namespace and ServiceAccount of the pod under review.
pub fn pod_service_account<'r>(req: &'r PodRequest<'_>) -> Option<(&'r str, &'r str)> {
    let pod = req.object.as_ref()?;
    let ns = req
        .namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default");
    Some((ns, pod.service_account()))
}

#[cfg(test)]
mod tests;
