//! The verbs on objects: get, list, create, replace, patch, delete, and the
//! TokenRequest subresource.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header;
use serde_json::{Value, json};

use super::handler::{Req, Target, bytes_response, json_response};
use super::patch::{self, PatchKind};
use super::select::Selector;
use super::state::Shared;
use super::store::{Scan, Store, Write};
use super::wire::{ApiError, Form, meta_str, now_rfc3339, rfc3339, success_status};

fn param<'a>(req: &'a Req, key: &str) -> Option<&'a str> {
    req.params
        .get(key)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

fn name(t: &Target) -> &str {
    t.name.as_deref().unwrap_or("")
}

fn write_mode(t: &Target) -> Result<Write, ApiError> {
    match t.sub.as_deref() {
        None => Ok(Write::Main),
        Some("status") if t.def.status_subresource => Ok(Write::Status),
        Some(sub) => Err(ApiError::new(
            404,
            "NotFound",
            format!("{} has no subresource {sub:?}", t.def.plural),
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

pub fn get(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    write_mode(t)?;
    let obj = shared.store().get(&t.def, t.ns_key(), name(t))?;
    Ok(json_response(200, &req.form.render(&obj)))
}

/// Where a paginated list resumes: opaque to clients, like the real token.
struct Continue {
    rv: u64,
    offset: usize,
    ns: String,
    name: String,
}

impl Continue {
    fn encode(&self) -> String {
        let raw = json!({ "rv": self.rv, "offset": self.offset, "ns": self.ns, "name": self.name });
        URL_SAFE_NO_PAD.encode(raw.to_string())
    }

    fn decode(token: &str) -> Result<Continue, ApiError> {
        let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        Ok(Continue {
            rv: v["rv"].as_u64().ok_or_else(bad)?,
            offset: v["offset"].as_u64().ok_or_else(bad)? as usize,
            ns: v["ns"].as_str().ok_or_else(bad)?.to_string(),
            name: v["name"].as_str().ok_or_else(bad)?.to_string(),
        })
    }
}

pub fn list(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let labels = Selector::parse_labels(param(req, "labelSelector").unwrap_or(""))?;
    let fields = Selector::parse_fields(param(req, "fieldSelector").unwrap_or(""))?;
    let limit: usize = match param(req, "limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let cont = param(req, "continue").map(Continue::decode).transpose()?;
    let store = shared.store();
    let current = store.resource_version();
    if let Some(c) = &cont
        && store.is_expired(&t.def, c.rv)
    {
        return Err(ApiError::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter.",
        ));
    }
    if param(req, "resourceVersionMatch") == Some("Exact") {
        let rv = param(req, "resourceVersion").unwrap_or("");
        if rv != current.to_string() {
            // History is not kept as snapshots, so only the current state is exact.
            return Err(ApiError::new(
                410,
                "Gone",
                format!("too old resource version: {rv} ({current})"),
            ));
        }
    }
    let filtered = !labels.is_empty() || !fields.is_empty();
    let keep = |o: &Value| labels.matches_labels(o) && fields.matches_fields(o);
    let offset = cont.as_ref().map_or(0, |c| c.offset);
    let after = cont.as_ref().map(|c| (c.ns.clone(), c.name.clone()));
    let scan = Scan {
        ns: t.ns.as_deref(),
        after,
        offset,
        limit,
        filtered,
    };
    let page = store.list(&t.def, scan, keep);
    drop(store);
    let list_rv = cont.as_ref().map_or(current, |c| c.rv);
    let mut meta = json!({ "resourceVersion": list_rv.to_string() });
    if let Some((ns, name)) = page.next {
        let token = Continue {
            rv: list_rv,
            offset: offset + page.items.len(),
            ns,
            name,
        };
        meta["continue"] = json!(token.encode());
        if let Some(n) = page.remaining {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let (kind, api_version) = match req.form {
        Form::Full => (format!("{}List", t.def.kind), t.def.api_version()),
        Form::Metadata => (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
    };
    // Written by hand so a 100k-item list is serialized once, item by item.
    let mut out = Vec::with_capacity(64 + page.items.len() * 512);
    out.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut out, &kind).map_err(internal)?;
    out.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut out, &api_version).map_err(internal)?;
    out.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut out, &meta).map_err(internal)?;
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match req.form {
            Form::Full => serde_json::to_writer(&mut out, &**item),
            Form::Metadata => serde_json::to_writer(&mut out, &Form::Metadata.render(item)),
        }
        .map_err(internal)?;
    }
    out.extend_from_slice(b"]}");
    Ok(bytes_response(200, out))
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::new(
        500,
        "InternalError",
        format!("cannot serialize the response: {e}"),
    )
}

pub async fn create(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let mut body = parse_json(&req.body)?;
    if shared.admission_enabled() {
        if t.def.namespaced && meta_str(&body, "namespace").is_empty() {
            // As the real server: the namespace comes from the URL before admission.
            super::wire::meta_mut(&mut body).insert("namespace".into(), json!(t.ns_key()));
        }
        body = super::admission::admit_create(shared, t, body).await?;
    }
    let obj = shared
        .store()
        .create(&t.def, t.ns_key(), body, Write::Main)?;
    Ok(json_response(201, &obj))
}

pub fn replace(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let mode = write_mode(t)?;
    let body = parse_json(&req.body)?;
    let obj = shared
        .store()
        .update(&t.def, t.ns_key(), name(t), body, mode)?;
    Ok(json_response(200, &obj))
}

pub fn patch(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let mode = write_mode(t)?;
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = PatchKind::from_content_type(ct)?;
    let body = patch::parse_body(kind, &req.body)?;
    if kind == PatchKind::Apply && param(req, "fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH with application/apply-patch+yaml requires the fieldManager query parameter",
        ));
    }
    let mut store = shared.store();
    let current = match store.get(&t.def, t.ns_key(), name(t)) {
        Ok(c) => c,
        Err(e) if e.code == 404 && kind == PatchKind::Apply && mode == Write::Main => {
            // Server-side apply creates what does not exist yet.
            return apply_create(&mut store, t, body);
        }
        Err(e) => return Err(e),
    };
    let patched = patch::apply(kind, &current, &body)?;
    let obj = store.update(&t.def, t.ns_key(), name(t), patched, mode)?;
    Ok(json_response(200, &obj))
}

fn apply_create(store: &mut Store, t: &Target, mut body: Value) -> Result<Response, ApiError> {
    let body_name = meta_str(&body, "name");
    if !body_name.is_empty() && body_name != name(t) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            name(t)
        )));
    }
    super::wire::meta_mut(&mut body).insert("name".into(), json!(name(t)));
    let obj = store.create(&t.def, t.ns_key(), body, Write::Main)?;
    Ok(json_response(201, &obj))
}

fn precondition_rv(req: &Req) -> Option<String> {
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    body["preconditions"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
}

pub fn delete(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let precondition = precondition_rv(req);
    let (obj, still_there) =
        shared
            .store()
            .delete(&t.def, t.ns_key(), name(t), precondition.as_deref())?;
    // Pods answer with the object; most other types with a Success Status
    // once gone, and with the object while finalizers hold it.
    if still_there || (t.def.group.is_empty() && t.def.plural == "pods") {
        return Ok(json_response(200, &obj));
    }
    Ok(json_response(
        200,
        &success_status(name(t), &t.def.group, &t.def.plural, meta_str(&obj, "uid")),
    ))
}

pub fn delete_collection(shared: &Shared, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let labels = Selector::parse_labels(param(req, "labelSelector").unwrap_or(""))?;
    let fields = Selector::parse_fields(param(req, "fieldSelector").unwrap_or(""))?;
    let mut store = shared.store();
    let keep = |o: &Value| labels.matches_labels(o) && fields.matches_fields(o);
    let page = store.list(
        &t.def,
        Scan {
            ns: t.ns.as_deref(),
            ..Scan::default()
        },
        keep,
    );
    let mut items = Vec::new();
    for obj in page.items {
        let (ns, n) = (
            meta_str(&obj, "namespace").to_string(),
            meta_str(&obj, "name").to_string(),
        );
        if let Ok((deleted, _)) = store.delete(&t.def, &ns, &n, None) {
            items.push((*deleted).clone());
        }
    }
    let rv = store.resource_version();
    drop(store);
    Ok(json_response(
        200,
        &json!({
            "kind": format!("{}List", t.def.kind),
            "apiVersion": t.def.api_version(),
            "metadata": { "resourceVersion": rv.to_string() },
            "items": items,
        }),
    ))
}

/// `POST .../serviceaccounts/{name}/token`: the token comes from the issuer a
/// test installed, so it can be a real signed JWT.
pub fn token_request(shared: &Arc<Shared>, t: &Target, req: &Req) -> Result<Response, ApiError> {
    let (ns, sa) = (t.ns_key(), name(t));
    shared.store().get(&t.def, ns, sa)?;
    let body = if req.body.is_empty() {
        json!({})
    } else {
        parse_json(&req.body)?
    };
    let spec = &body["spec"];
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec!["https://kubernetes.default.svc".to_string()],
    };
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if expiration < 600 {
        return Err(ApiError::invalid(format!(
            "TokenRequest is invalid: spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration less than 10 minutes"
        )));
    }
    let issuer = shared
        .token_issuer
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(issuer) = issuer else {
        return Err(ApiError::new(
            500,
            "InternalError",
            "no token issuer configured: call ApiServer::set_token_issuer in the test",
        ));
    };
    let token = issuer(ns, sa, &audiences, expiration);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out_spec = json!({ "audiences": audiences, "expirationSeconds": expiration });
    if let Some(bound) = spec.get("boundObjectRef") {
        out_spec["boundObjectRef"] = bound.clone();
    }
    Ok(json_response(
        201,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "name": sa, "namespace": ns, "creationTimestamp": now_rfc3339() },
            "spec": out_spec,
            "status": { "token": token, "expirationTimestamp": rfc3339(now + expiration) },
        }),
    ))
}
