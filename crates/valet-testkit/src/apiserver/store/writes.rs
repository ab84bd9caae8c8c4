//! Writes: create, update (PUT, PATCH results, `/status`) and delete with
//! finalizers, each stamping a new resourceVersion and emitting its event.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{EventKind, Store, Write};
use crate::apiserver::registry::{ResourceDef, defs_from_crd};
use crate::apiserver::wire::{ApiError, meta_mut, meta_str, name_suffix, new_uid, now_rfc3339};

impl Store {
    pub fn create(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        mut obj: Value,
        mode: Write,
    ) -> Result<Arc<Value>, ApiError> {
        set_type(def, &mut obj);
        let meta = meta_mut(&mut obj);
        let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        if def.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
                )));
            }
            if ns.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{} is namespaced: a namespace is required",
                    def.plural
                )));
            }
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let Some(prefix) = meta.get("generateName").and_then(Value::as_str) else {
                return Err(ApiError::invalid(format!(
                    "{} is invalid: metadata.name: Required value: name or generateName is required",
                    def.kind
                )));
            };
            name = format!("{prefix}{}", name_suffix());
            meta.insert("name".into(), json!(name));
        }
        let key = (
            if def.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name.clone(),
        );
        if self
            .buckets
            .get(&def.key())
            .is_some_and(|b| b.objects.contains_key(&key))
        {
            return Err(ApiError::already_exists(&def.plural, &def.group, &name));
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        if mode != Write::Raw
            && def.status_subresource
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        self.stamp(&mut obj);
        let obj = Arc::new(obj);
        let b = self.bucket(def);
        b.objects.insert(key.clone(), obj.clone());
        *b.per_namespace.entry(key.0).or_default() += 1;
        self.emit(def, EventKind::Added, obj.clone(), None);
        self.after_write(def, &obj);
        Ok(obj)
    }

    /// Replaces an object (PUT, or the result of a PATCH). A non-empty
    /// `metadata.resourceVersion` in `new` must match the stored one.
    pub fn update(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        mut new: Value,
        mode: Write,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self.get(def, ns, name)?;
        let body_name = meta_str(&new, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let want_rv = meta_str(&new, "resourceVersion");
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&def.plural, &def.group, name));
        }
        if mode == Write::Status {
            let status = new.get("status").cloned();
            new = (*old).clone();
            if let Some(map) = new.as_object_mut() {
                match status {
                    Some(s) => map.insert("status".into(), s),
                    None => map.remove("status"),
                };
            }
        } else if mode == Write::Main
            && def.status_subresource
            && let Some(map) = new.as_object_mut()
        {
            match old.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
        set_type(def, &mut new);
        // Fields the server owns are never taken from the client.
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.insert(
            "resourceVersion".into(),
            old_meta["resourceVersion"].clone(),
        );
        if new == *old {
            // The real server neither bumps the resourceVersion nor emits an
            // event for a no-op write.
            return Ok(old);
        }
        if spec_changed(&old, &new) {
            let generation = old_meta["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        self.stamp(&mut new);
        let key = (ns.to_string(), name.to_string());
        let finished = !meta_str(&new, "deletionTimestamp").is_empty() && finalizers_empty(&new);
        let new = Arc::new(new);
        if finished {
            self.remove(def, key);
            self.emit(def, EventKind::Deleted, new.clone(), None);
        } else {
            self.bucket(def).objects.insert(key, new.clone());
            self.emit(def, EventKind::Modified, new.clone(), Some(old));
            self.after_write(def, &new);
        }
        Ok(new)
    }

    /// Deletes an object. With finalizers it only gets a deletionTimestamp and
    /// stays (returned with `true`) until an update empties them.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let old = self.get(def, ns, name)?;
        if precondition_rv.is_some_and(|rv| rv != meta_str(&old, "resourceVersion")) {
            return Err(ApiError::conflict(&def.plural, &def.group, name));
        }
        let mut obj = (*old).clone();
        if !finalizers_empty(&obj) {
            if !meta_str(&obj, "deletionTimestamp").is_empty() {
                return Ok((old, true));
            }
            let meta = meta_mut(&mut obj);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            self.stamp(&mut obj);
            let obj = Arc::new(obj);
            self.bucket(def)
                .objects
                .insert((ns.to_string(), name.to_string()), obj.clone());
            self.emit(def, EventKind::Modified, obj.clone(), Some(old));
            return Ok((obj, true));
        }
        // The DELETED event carries the revision of the deletion.
        self.stamp(&mut obj);
        let obj = Arc::new(obj);
        self.remove(def, (ns.to_string(), name.to_string()));
        self.emit(def, EventKind::Deleted, obj.clone(), None);
        Ok((obj, false))
    }

    fn remove(&mut self, def: &ResourceDef, key: (String, String)) {
        let b = self.bucket(def);
        if b.objects.remove(&key).is_some()
            && let Some(n) = b.per_namespace.get_mut(&key.0)
        {
            *n = n.saturating_sub(1);
        }
    }

    fn after_write(&mut self, def: &ResourceDef, obj: &Value) {
        if def.group == "apiextensions.k8s.io" && def.plural == "customresourcedefinitions" {
            for d in defs_from_crd(obj) {
                self.registry.register(d);
            }
        }
    }
}

fn set_type(def: &ResourceDef, obj: &mut Value) {
    meta_mut(obj);
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(def.api_version()));
        map.insert("kind".into(), json!(def.kind));
    }
}

fn finalizers_empty(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_none_or(Vec::is_empty)
}

/// Whether anything besides metadata and status changed: what bumps
/// `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            for k in ["metadata", "status", "kind", "apiVersion"] {
                map.remove(k);
            }
        }
        v
    };
    strip(old) != strip(new)
}
