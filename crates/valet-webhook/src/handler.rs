//! The admission handler: decode, look the ServiceAccount up, call the pure
//! core, encode. Nothing here decides what a pod gets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};
use valet_core::admission::{self, LookupFailure, SaLookup, Verdict};
use valet_core::mutate::Outcome;
use valet_core::settings::{ContainerCredentialsIdentities, Settings};

use crate::cache::{Lookup, SaCache};
use crate::limits::{BodyError, BodyReader};
use crate::metrics::Metrics;

pub struct AppState {
    pub settings: Settings,
    pub cache: Arc<SaCache>,
    pub container_credentials: ArcSwap<ContainerCredentialsIdentities>,
    pub grace: Duration,
    pub on_lookup_failure: LookupFailure,
    pub metrics: Arc<Metrics>,
    /// `--max-body-bytes`, `--body-timeout`, `--body-memory`.
    pub bodies: BodyReader,
    /// True once a certificate is loaded (set at start-up).
    pub cert_loaded: std::sync::atomic::AtomicBool,
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The request's Content-Type and Content-Length, read without copying the
/// header map.
pub struct Head {
    content_type: Option<HeaderValue>,
    content_length: Option<u64>,
}

impl<S: Send + Sync> FromRequestParts<S> for Head {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Head {
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            // hyper has already refused a malformed Content-Length.
            content_length: parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok()),
        })
    }
}

/// True for a Content-Type of `application/json`, as RFC 9110 (8.3.1)
/// writes media types: type and subtype case-insensitive, optional
/// whitespace and parameters (`; charset=utf-8`) after them. Nothing else:
/// `application/json-patch+json` or `text/json` are not reviews.
pub fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii_end();
    // A field value has no leading whitespace (RFC 9110 5.5), but the
    // parameters' OWS is allowed before `;`.
    essence.eq_ignore_ascii_case(b"application/json")
}

pub async fn mutate(State(state): State<Arc<AppState>>, head: Head, body: Body) -> Response {
    let started = Instant::now();
    let content_type = head
        .content_type
        .as_ref()
        .map_or(&b""[..], HeaderValue::as_bytes);
    if !is_json(content_type) {
        state.metrics.count_request("error");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type is {:?}; expected application/json",
                String::from_utf8_lossy(content_type)
            ),
        );
    }
    let body = match state.bodies.read(body, head.content_length).await {
        Ok(b) => b,
        Err(e) => return body_refused(&state, e),
    };
    let req = match admission::decode(&body.bytes) {
        Ok(r) => r,
        Err(e) => return bad_request(&state, e),
    };
    let identity = admission::pod_service_account(&req).filter(|_| admission::is_pod_create(&req));
    let lookup = match identity {
        Some((ns, sa)) => Some(state.cache.lookup(ns, sa, state.grace).await),
        None => None,
    };
    let (ns, sa) = identity.unwrap_or(("", ""));
    let uses_cc = identity.is_some() && state.container_credentials.load().contains(ns, sa);
    let sa_lookup = match &lookup {
        Some(Lookup::Found(cfg)) => SaLookup::Found(cfg),
        Some(Lookup::Unavailable(why)) => SaLookup::Unavailable(why),
        Some(Lookup::NotFound) | None => SaLookup::NotFound,
    };
    let (response, verdict) = admission::admit(
        &req,
        sa_lookup,
        uses_cc,
        &state.settings,
        state.on_lookup_failure,
        jitter(),
    );
    let pod = req.object.as_ref().map(|p| p.display_name()).unwrap_or("");
    finish(
        &state,
        started,
        verdict,
        ns,
        pod,
        sa,
        response.warnings.len(),
    );
    count_peer_pod(&state, verdict, uses_cc);
    answer(admission::encode(&response))
}

fn bad_request(state: &AppState, e: admission::DecodeError) -> Response {
    state.metrics.count_request("error");
    warn!(error = %e, "bad admission request");
    error(StatusCode::BAD_REQUEST, e.to_string())
}

fn body_refused(state: &AppState, e: BodyError) -> Response {
    state.metrics.count_request("error");
    let status = match e {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
        BodyError::NoMemory { .. } => StatusCode::SERVICE_UNAVAILABLE,
        BodyError::Read(_) => StatusCode::BAD_REQUEST,
    };
    debug!(error = %e, "request body refused");
    let mut response = error(status, e.to_string());
    // The rest of an unread body must not be taken for the next request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn answer(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `pod_identity_webhook_pod_count`: the peer counts every pod it builds
/// credentials for, changed or not.
fn count_peer_pod(state: &AppState, verdict: Verdict, container_credentials: bool) {
    if let Verdict::Decided(Outcome::Mutated | Outcome::Unchanged) = verdict {
        state.metrics.peer.count_pod(container_credentials);
    }
}

/// Counts and logs one decided review.
fn finish(
    state: &AppState,
    started: Instant,
    verdict: Verdict,
    ns: &str,
    pod: &str,
    sa: &str,
    warnings: usize,
) {
    state.metrics.count_request(verdict.metric_outcome());
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if !matches!(verdict, Verdict::Ignored) {
        // Per-request lines are debug: at thousands of pods a second, an info
        // line each would cost more than the admission itself.
        debug!(%ns, %pod, service_account = %sa, verdict = ?verdict, warnings, "admission");
    }
}

/// A random draw for container-credentials token lifetimes (the peer's
/// jitter); not security sensitive.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let cert = state.cert_loaded.load(std::sync::atomic::Ordering::Acquire);
    let synced = state.cache.is_synced();
    if cert && synced {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: certificate loaded={cert}, ServiceAccount cache synced={synced}"),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn content_type_is_matched_as_rfc_9110_writes_media_types() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json ; charset=utf-8",
        ] {
            assert!(is_json(ok.as_bytes()), "{ok:?}");
        }
        for refused in [
            "",
            "application/jsonx",
            "application/json-patch+json",
            "text/json",
            "application/x-www-form-urlencoded",
            "application",
            "json",
        ] {
            assert!(!is_json(refused.as_bytes()), "{refused:?}");
        }
    }
}
