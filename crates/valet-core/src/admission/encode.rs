//! Encode: the answer to AdmissionReview bytes, written directly.

use crate::mutate::write_json_str as s;

use super::decide::Response;

/// Encodes the response as an AdmissionReview: `patch` is base64 as the API
/// server's `[]byte` wants it (kube-core's own type would write an array of
/// numbers: kube-rs issue #1781), with `patchType: JSONPatch`.
pub fn encode(response: &Response<'_>) -> Vec<u8> {
    let patch_len = response
        .patch
        .as_ref()
        .map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut out = Vec::with_capacity(192 + patch_len);
    out.extend_from_slice(b"{\"apiVersion\":");
    s(&mut out, response.api_version);
    out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    s(&mut out, response.uid);
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
    out
}
