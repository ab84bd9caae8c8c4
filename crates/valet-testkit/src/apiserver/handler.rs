//! HTTP entry point: records the request, applies injected faults, routes the
//! URL to a resource type and runs the verb.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use super::registry::ResourceDef;
use super::state::{RecordedRequest, Shared, Verb};
use super::wire::{ApiError, Form};
use super::{objects, watch};

/// Query parameters, decoded. kube-rs sends `?&watch=true...`, so empty
/// pairs are skipped.
pub type Params = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Params {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            let s = s.replace('+', " ");
            urlencoding::decode(&s).map(|c| c.into_owned()).unwrap_or(s)
        };
        out.insert(dec(k), dec(v));
    }
    out
}

pub fn json_response(code: u16, body: &Value) -> Response {
    bytes_response(code, serde_json::to_vec(body).unwrap_or_default())
}

pub fn bytes_response(code: u16, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.to_status())
}

/// The resource an URL names.
pub struct Target {
    pub def: Arc<ResourceDef>,
    /// None for cluster-scoped types and all-namespaces collections.
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

impl Target {
    /// The store's namespace key: "" for cluster-scoped types.
    pub fn ns_key(&self) -> &str {
        self.ns.as_deref().unwrap_or("")
    }
}

/// One request as the handlers see it.
pub struct Req {
    pub method: Method,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub form: Form,
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    shared.record(RecordedRequest {
        method: method.to_string(),
        path: path_and_query.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    shared.wait_unstalled(&method, &path_and_query).await;
    if let Some(code) = shared.take_fault(&method, &path_and_query) {
        return error_response(&ApiError::injected(code));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let req = Req {
        form: Form::from_accept(accept),
        method,
        params: parse_query(uri.query()),
        headers: headers.clone(),
        body,
    };
    match route(&shared, uri.path(), req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    }
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

async fn route(shared: &Arc<Shared>, path: &str, req: Req) -> Result<Response, ApiError> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            urlencoding::decode(s)
                .map(|c| c.into_owned())
                .unwrap_or_else(|_| s.to_string())
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let store = || shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let (group, version, rest) = match segs.as_slice() {
        [".well-known", "openid-configuration"] => return shared.oidc_document(false),
        ["openid", "v1", "jwks"] => return shared.oidc_document(true),
        ["version"] => return Ok(json_response(200, &version_info())),
        ["healthz"] | ["readyz"] | ["livez"] => return Ok(bytes_response(200, b"ok".to_vec())),
        ["api"] => {
            return Ok(json_response(
                200,
                &store().registry.core_versions(&shared.server_address),
            ));
        }
        ["apis"] => return Ok(json_response(200, &store().registry.group_list())),
        ["apis", group] => {
            return store()
                .registry
                .group(group)
                .map(|g| json_response(200, &g))
                .ok_or_else(|| not_found_path(path));
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path(path)),
    };
    if rest.is_empty() {
        let reg = &store().registry;
        if !reg.has_group_version(group, version) {
            return Err(not_found_path(path));
        }
        return Ok(json_response(200, &reg.resource_list(group, version)));
    }
    let target = {
        let reg = &store().registry;
        let namespaced_path = rest.len() >= 3
            && rest[0] == "namespaces"
            && reg
                .by_plural(group, version, rest[2])
                .is_some_and(|d| d.namespaced);
        let (ns, rest) = if namespaced_path {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
        let def = reg
            .by_plural(group, version, rest[0])
            .ok_or_else(|| not_found_path(path))?;
        if rest.len() > 3
            || (ns.is_some() && !def.namespaced)
            || (def.namespaced && ns.is_none() && rest.len() > 1)
        {
            return Err(not_found_path(path));
        }
        Target {
            def,
            ns,
            name: rest.get(1).map(|s| s.to_string()),
            sub: rest.get(2).map(|s| s.to_string()),
        }
    };
    dispatch(shared, target, req).await
}

async fn dispatch(shared: &Arc<Shared>, t: Target, req: Req) -> Result<Response, ApiError> {
    if req.method != Method::GET && req.params.get("dryRun").is_some_and(|d| !d.is_empty()) {
        // Refused rather than ignored: a dry run that persisted would make a
        // test pass for the wrong reason.
        return Err(ApiError::bad_request(
            "dryRun is not supported by the test API server (valet-testkit)",
        ));
    }
    let is_watch = matches!(
        req.params.get("watch").map(String::as_str),
        Some("true" | "1")
    );
    match (&req.method, t.name.is_some(), t.sub.as_deref()) {
        (&Method::GET, false, None) if is_watch => {
            shared.count(Verb::Watch);
            watch::serve(shared.clone(), t, &req)
        }
        (&Method::GET, false, None) => {
            shared.count(Verb::List);
            objects::list(shared, &t, &req)
        }
        (&Method::GET, true, None | Some("status")) => {
            shared.count(Verb::Get);
            objects::get(shared, &t, &req)
        }
        (&Method::POST, false, None) => {
            shared.count(Verb::Create);
            objects::create(shared, &t, &req).await
        }
        (&Method::POST, true, Some("token"))
            if t.def.group.is_empty() && t.def.plural == "serviceaccounts" =>
        {
            shared.count(Verb::Create);
            objects::token_request(shared, &t, &req)
        }
        (&Method::PUT, true, None | Some("status")) => {
            shared.count(Verb::Update);
            objects::replace(shared, &t, &req)
        }
        (&Method::PATCH, true, None | Some("status")) => {
            shared.count(Verb::Patch);
            objects::patch(shared, &t, &req)
        }
        (&Method::DELETE, true, None) => {
            shared.count(Verb::Delete);
            objects::delete(shared, &t, &req)
        }
        (&Method::DELETE, false, None) => {
            shared.count(Verb::Delete);
            objects::delete_collection(shared, &t, &req)
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            ),
        )),
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-valet-testkit",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
