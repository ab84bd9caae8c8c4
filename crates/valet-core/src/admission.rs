//! AdmissionReview (`admission.k8s.io/v1`) in, AdmissionReview out.
//!
//! The webhook's handler only decodes, looks the ServiceAccount up, calls
//! [`admit`] and encodes; everything that decides the answer is here, pure.
//!
//! Every pod creation in the cluster passes through here, so the review is
//! read lean: strings borrow from the body, and what the decision does not
//! need (`userInfo`, `oldObject`, `options`, most of the pod) is skipped by
//! the parser without being built. The answer is written straight to bytes.

use serde::Deserialize;

use crate::identity::SaConfig;
use crate::json::{self, JsonError, Reader};
use crate::mutate::{Mutation, Outcome, mutate};
use crate::pod::PodView;
use crate::settings::Settings;
use crate::text::Str;

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
    /// The JSON text of `object` as it came (empty when there is none):
    /// what [`decode_with`]'s `known` recognises in a later review.
    #[serde(skip)]
    pub object_json: &'a [u8],
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

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not an AdmissionReview: {0}")]
    Json(#[from] JsonError),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// The review version this webhook speaks (and answers when a review does
/// not say).
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// Decodes a review body; only the fields of the pod that matter are read.
///
/// It reads what `serde_json::from_slice` into the serde derives of these
/// types would, refusing the same bodies, but with [`crate::json`]'s reader:
/// that is the webhook's largest cost per request, mostly in skipping what
/// it does not read.
pub fn decode(body: &[u8]) -> Result<PodRequest<'_>, DecodeError> {
    decode_with(body, |_| None::<(usize, ())>).map(|(req, _)| req)
}

/// [`decode`], but an `object` that `known` recognises is not read: given
/// the body from the object's first byte, `known` returns the length of a
/// complete JSON value it has seen before and that the body starts with
/// (plus what it wants back). Since a complete value ends where its bytes
/// end, the body then holds that very value there, already known to be
/// valid; the request comes back with `object: None`, its `object_json`
/// set, and the hit. Everything else is read and checked as by [`decode`].
pub fn decode_with<'a, H>(
    body: &'a [u8],
    mut known: impl FnMut(&'a [u8]) -> Option<(usize, H)>,
) -> Result<(PodRequest<'a>, Option<H>), DecodeError> {
    let mut r = Reader::new(body);
    let mut api_version = None;
    let mut request = None;
    let mut hit = None;
    r.fields("struct Review", &["apiVersion", "request"], |r, i| {
        match i {
            0 => api_version = r.option(Reader::string)?,
            _ => request = r.option(|r| PodRequest::read(r, &mut known, &mut hit))?,
        }
        Ok(())
    })?;
    r.end()?;
    let mut req = request.ok_or(DecodeError::NoRequest)?;
    req.api_version = api_version.unwrap_or(Str::from(REVIEW_API_VERSION));
    Ok((req, hit))
}

impl<'a> PodRequest<'a> {
    fn read<H>(
        r: &mut Reader<'a>,
        known: &mut impl FnMut(&'a [u8]) -> Option<(usize, H)>,
        hit: &mut Option<H>,
    ) -> json::Result<Self> {
        let (mut uid, mut kind, mut operation) = (None, None, None);
        let (mut sub_resource, mut namespace, mut object) = (None, None, None);
        let mut object_json: &'a [u8] = &[];
        let names = [
            "uid",
            "kind",
            "subResource",
            "namespace",
            "operation",
            "object",
        ];
        r.fields("struct PodRequest", &names, |r, i| {
            match i {
                0 => uid = Some(r.string()?),
                1 => kind = Some(GroupVersionKind::read(r)?),
                2 => sub_resource = r.option(Reader::string)?,
                3 => namespace = r.option(Reader::string)?,
                4 => operation = Some(r.string()?),
                _ => {
                    let rest = r.rest();
                    let start = r.position();
                    if let Some((len, h)) = known(rest).filter(|(len, _)| *len <= rest.len()) {
                        r.step_over(len);
                        *hit = Some(h);
                    } else {
                        *hit = None;
                        object = r.option(PodView::read)?;
                    }
                    if hit.is_some() || object.is_some() {
                        object_json = r.since(start);
                    }
                }
            }
            Ok(())
        })?;
        let missing = |field| r.error(format!("missing field `{field}`"));
        Ok(PodRequest {
            api_version: Str::default(),
            uid: uid.ok_or_else(|| missing("uid"))?,
            kind: kind.ok_or_else(|| missing("kind"))?,
            sub_resource,
            namespace,
            operation: operation.ok_or_else(|| missing("operation"))?,
            object,
            object_json,
        })
    }
}

impl<'a> GroupVersionKind<'a> {
    fn read(r: &mut Reader<'a>) -> json::Result<Self> {
        let mut gvk = GroupVersionKind::default();
        r.fields(
            "struct GroupVersionKind",
            &["group", "version", "kind"],
            |r, i| {
                match i {
                    0 => gvk.group = r.string()?,
                    1 => gvk.version = r.string()?,
                    _ => gvk.kind = r.string()?,
                }
                Ok(())
            },
        )?;
        Ok(gvk)
    }
}

/// True for the requests this webhook changes: Pod CREATE (not a subresource).
pub fn is_pod_create(req: &PodRequest<'_>) -> bool {
    creates_pod(req) && req.object.is_some()
}

/// [`is_pod_create`] but for the object, which a review read by
/// [`decode_with`] may have left unread.
pub fn creates_pod(req: &PodRequest<'_>) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == "CREATE"
        && req.sub_resource.as_deref().is_none_or(str::is_empty)
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

/// The webhook's answer to one review.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<'r> {
    /// The review's `apiVersion`, echoed.
    pub api_version: &'r str,
    pub uid: &'r str,
    pub allowed: bool,
    /// Why the pod was refused (`status.message`), when it was.
    pub denial: Option<String>,
    /// The JSON Patch document (not yet base64).
    pub patch: Option<Vec<u8>>,
    /// Shown by kubectl.
    pub warnings: Vec<String>,
}

impl<'r> Response<'r> {
    fn allow(req: &'r PodRequest<'_>) -> Self {
        Response {
            api_version: &req.api_version,
            uid: &req.uid,
            allowed: true,
            denial: None,
            patch: None,
            warnings: Vec::new(),
        }
    }
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
pub fn admit<'r>(
    req: &'r PodRequest<'_>,
    lookup: SaLookup<'_>,
    container_credentials: bool,
    settings: &Settings,
    on_failure: LookupFailure,
    jitter: u64,
) -> (Response<'r>, Verdict) {
    let mut response = Response::allow(req);
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
            let verdict = match on_failure {
                LookupFailure::Allow => {
                    response.warnings.push(format!(
                        "storage-valet could not read ServiceAccount {ns}/{sa_name} ({why}); \
                         the pod was admitted without AWS credentials: recreate it once the API server is reachable"
                    ));
                    Verdict::LookupFailedAllowed
                }
                LookupFailure::Deny => {
                    response.allowed = false;
                    response.denial = Some(format!(
                        "storage-valet could not read ServiceAccount {ns}/{sa_name} ({why}); retry shortly"
                    ));
                    Verdict::LookupFailedDenied
                }
            };
            return (response, verdict);
        }
    };
    let mutation: Mutation<'_> = mutate(pod, ns, sa, container_credentials, settings, jitter);
    if !mutation.ops.is_empty() {
        // `write_patch` reserves for the ops it writes.
        let mut bytes = Vec::new();
        mutation.write_patch(&mut bytes);
        response.patch = Some(bytes);
    }
    response.warnings = mutation.warnings;
    (response, Verdict::Decided(mutation.outcome))
}

/// Encodes the response as an AdmissionReview: `patch` is base64 as the API
/// server's `[]byte` wants it (kube-core's own type would write an array of
/// numbers: kube-rs issue #1781), with `patchType: JSONPatch`.
pub fn encode(response: &Response<'_>) -> Vec<u8> {
    encode_marking_uid(response).0
}

/// An encoded response whose `uid` can be swapped: the same answer to
/// reviews that differ only in their uid, written again by a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidlessAnswer {
    /// Encoded with some uid, which is at `uid` (its JSON string).
    bytes: Vec<u8>,
    uid: std::ops::Range<usize>,
}

impl UidlessAnswer {
    /// The response encoded (what [`encode`] writes) and the same as a
    /// reusable answer, for one encoding.
    pub fn encode(response: &Response<'_>) -> (Vec<u8>, Self) {
        let (bytes, uid) = encode_marking_uid(response);
        let answer = UidlessAnswer {
            bytes: bytes.clone(),
            uid,
        };
        (bytes, answer)
    }

    /// The bytes [`encode`] writes for the response with this uid.
    pub fn with_uid(&self, uid: &str) -> Vec<u8> {
        // Exact for a uid that needs no escaping (the API server's are
        // UUIDs): the body is then handed on without a reallocation.
        let mut out = Vec::with_capacity(self.bytes.len() - self.uid.len() + uid.len() + 2);
        out.extend_from_slice(&self.bytes[..self.uid.start]);
        crate::mutate::write_json_str(&mut out, uid);
        out.extend_from_slice(&self.bytes[self.uid.end..]);
        out
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// [`encode`], and where the uid's JSON string is.
fn encode_marking_uid(response: &Response<'_>) -> (Vec<u8>, std::ops::Range<usize>) {
    use crate::mutate::write_json_str as s;

    let patch_len = response
        .patch
        .as_ref()
        .map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut out = Vec::with_capacity(192 + patch_len);
    out.extend_from_slice(b"{\"apiVersion\":");
    s(&mut out, response.api_version);
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    let uid_start = out.len();
    s(&mut out, response.uid);
    let uid = uid_start..out.len();
    out.extend_from_slice(if response.allowed {
        b",\"allowed\":true"
    } else {
        b",\"allowed\":false"
    });
    if let Some(message) = &response.denial {
        out.extend_from_slice(b",\"status\":{\"message\":");
        s(&mut out, message);
        out.push(b'}');
    }
    if let Some(patch) = &response.patch {
        // base64 needs no JSON escaping: it is written in place.
        out.extend_from_slice(b",\"patch\":\"");
        base64_simd::STANDARD.encode_append(patch, &mut out);
        out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
    }
    if !response.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":[");
        for (i, w) in response.warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            s(&mut out, w);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}}");
    (out, uid)
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

    /// The object's text as the review carries it.
    fn object_text(body: &[u8]) -> &[u8] {
        let start = body.windows(9).position(|w| w == b"\"object\":").unwrap() + 9;
        let end = body
            .windows(12)
            .position(|w| w == b",\"oldObject\"")
            .unwrap();
        &body[start..end]
    }

    #[test]
    fn decode_keeps_the_object_text() {
        let body = review("Pod", "CREATE", "app");
        let req = decode(&body).unwrap();
        assert_eq!(req.object_json, object_text(&body));
        let null = String::from_utf8(body.clone())
            .unwrap()
            .replace(std::str::from_utf8(object_text(&body)).unwrap(), "null");
        let req = decode(null.as_bytes()).unwrap();
        assert!(req.object.is_none() && req.object_json.is_empty());
    }

    #[test]
    fn decode_with_steps_over_a_known_object() {
        let body = review("Pod", "CREATE", "app");
        let object = object_text(&body).to_vec();
        let mut asked = 0;
        let (req, hit) = decode_with(&body, |rest| {
            asked += 1;
            rest.starts_with(&object).then_some((object.len(), "seen"))
        })
        .unwrap();
        assert_eq!(asked, 1);
        assert_eq!(hit, Some("seen"));
        assert!(req.object.is_none(), "a known object is not read again");
        assert_eq!(req.object_json, &object[..]);
        let full = decode(&body).unwrap();
        assert!(creates_pod(&req) && !is_pod_create(&req));
        assert_eq!(
            (req.uid, req.namespace, req.operation, req.api_version),
            (full.uid, full.namespace, full.operation, full.api_version)
        );

        // Not known: read as by `decode`.
        let (req, hit) = decode_with(&body, |_| None::<(usize, ())>).unwrap();
        assert!(hit.is_none() && req.object.is_some());

        // What follows the object is still checked.
        let mut broken = body.clone();
        let at = broken.len() - 3;
        broken.insert(at, b'x');
        let known = |rest: &[u8]| rest.starts_with(&object).then_some((object.len(), ()));
        assert!(decode_with(&broken, known).is_err());
    }

    #[test]
    fn uidless_answer_is_encode_with_the_uid() {
        let sa = sa();
        let body = review("Pod", "CREATE", "app");
        let req = decode(&body).unwrap();
        let (mutated, _) = admit(
            &req,
            SaLookup::Found(&sa),
            false,
            &Settings::default(),
            LookupFailure::Allow,
            0,
        );
        let (denied, _) = admit(
            &req,
            SaLookup::Unavailable("down"),
            false,
            &Settings::default(),
            LookupFailure::Deny,
            0,
        );
        let mut warned = mutated.clone();
        warned.warnings = vec!["a \"quoted\" warning".into(), "two".into()];
        for response in [mutated, denied, warned] {
            let (_, answer) = UidlessAnswer::encode(&response);
            for uid in [
                "705ab4f5-6393-11e8-b7cc-42010a800002",
                "",
                "quote\" back\\slash \u{1}",
            ] {
                let expected = encode(&Response {
                    uid,
                    ..response.clone()
                });
                assert_eq!(answer.with_uid(uid), expected, "uid {uid:?}");
            }
        }
    }
}
