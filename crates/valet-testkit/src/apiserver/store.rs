//! The object store: one BTreeMap per resource type, a global monotonic
//! resourceVersion (like etcd's revision) and a bounded per-type event history
//! that watches replay from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::registry::{Registry, ResourceDef, defs_from_crd};
use super::wire::{ApiError, meta_mut, meta_str, name_suffix, new_uid, now_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn wire(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventKind,
    pub obj: Arc<Value>,
}

/// Objects of one resource type keyed by (namespace, name); "" namespace for
/// cluster-scoped types.
#[derive(Debug, Default)]
struct Bucket {
    objects: BTreeMap<(String, String), Arc<Value>>,
    per_namespace: HashMap<String, usize>,
    log: VecDeque<Event>,
    /// Events with rv <= floor are forgotten: watching from there is 410 Gone.
    floor: u64,
}

/// How a write treats `.status` (and the other fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A write to the main resource: `.status` is kept from the stored object
    /// when the type has a status subresource.
    Main,
    /// A write to `/status`: only `.status` changes.
    Status,
    /// Direct store access from a test: the object is taken as given.
    Raw,
}

/// Which part of a type a list reads.
#[derive(Debug, Clone, Default)]
pub struct Scan<'a> {
    /// None: every namespace.
    pub ns: Option<&'a str>,
    /// Resume after this (namespace, name).
    pub after: Option<(String, String)>,
    /// Items already returned by earlier pages.
    pub offset: usize,
    /// 0: no limit.
    pub limit: usize,
    /// A selector is applied, so the remaining count is unknown.
    pub filtered: bool,
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Arc<Value>>,
    /// Key of the last item when more remain.
    pub next: Option<(String, String)>,
    /// Items after this page, when it can be known cheaply (no selectors).
    pub remaining: Option<usize>,
}

pub struct Store {
    rv: u64,
    buckets: HashMap<String, Bucket>,
    history_limit: usize,
    pub registry: Registry,
    notify: watch::Sender<u64>,
}

impl Store {
    pub fn new(notify: watch::Sender<u64>) -> Store {
        Store {
            rv: 1,
            buckets: HashMap::new(),
            history_limit: 500_000,
            registry: Registry::with_defaults(),
            notify,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
    }

    /// Forgets all event history: any watch from an older resourceVersion gets
    /// 410 Gone, as after an etcd compaction.
    pub fn compact(&mut self) {
        let rv = self.rv;
        for b in self.buckets.values_mut() {
            b.log.clear();
            b.floor = rv;
        }
    }

    fn bucket(&mut self, def: &ResourceDef) -> &mut Bucket {
        self.buckets.entry(def.key()).or_default()
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.buckets
            .get(&def.key())
            .and_then(|b| b.objects.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.plural, &def.group, name))
    }

    pub fn count(&self, def: &ResourceDef) -> usize {
        self.buckets.get(&def.key()).map_or(0, |b| b.objects.len())
    }

    /// Items in key order after `after`, at most `limit` (0 = all) matching `keep`.
    pub fn list(&self, def: &ResourceDef, scan: Scan<'_>, keep: impl Fn(&Value) -> bool) -> Page {
        let Scan {
            ns,
            after,
            offset,
            limit,
            filtered,
        } = scan;
        let Some(b) = self.buckets.get(&def.key()) else {
            return Page {
                items: Vec::new(),
                next: None,
                remaining: Some(0),
            };
        };
        let start = match (&after, ns) {
            (Some(k), _) => Bound::Excluded(k.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut next = None;
        for (key, obj) in b.objects.range((start, Bound::Unbounded)) {
            if ns.is_some_and(|ns| key.0 != ns) {
                break;
            }
            if !keep(obj) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                break;
            }
            items.push(obj.clone());
            next = Some(key.clone());
        }
        let total = ns.map_or(b.objects.len(), |ns| {
            b.per_namespace.get(ns).copied().unwrap_or(0)
        });
        let remaining = total.saturating_sub(offset + items.len());
        let more = limit > 0 && items.len() == limit && {
            // Whether anything after the page matches: one probe, not a count.
            let after_last = next.clone().map_or(Bound::Unbounded, Bound::Excluded);
            b.objects
                .range((after_last, Bound::Unbounded))
                .take_while(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
                .any(|(_, o)| keep(o))
        };
        Page {
            items,
            next: if more { next } else { None },
            remaining: if more && !filtered {
                Some(remaining)
            } else {
                None
            },
        }
    }

    /// Events of this type after `rv`, or the floor when `rv` is too old.
    pub fn events_since(&self, def: &ResourceDef, rv: u64) -> Result<Vec<Event>, u64> {
        let Some(b) = self.buckets.get(&def.key()) else {
            return Ok(Vec::new());
        };
        if rv < b.floor {
            return Err(b.floor);
        }
        let start = b.log.partition_point(|e| e.rv <= rv);
        Ok(b.log.range(start..).cloned().collect())
    }

    /// Whether a continue token from `rv` can still be honoured.
    pub fn is_expired(&self, def: &ResourceDef, rv: u64) -> bool {
        self.buckets.get(&def.key()).is_some_and(|b| rv < b.floor)
    }

    fn emit(&mut self, def: &ResourceDef, kind: EventKind, obj: Arc<Value>) {
        let rv = self.rv;
        let limit = self.history_limit;
        let b = self.bucket(def);
        b.log.push_back(Event { rv, kind, obj });
        while b.log.len() > limit {
            if let Some(old) = b.log.pop_front() {
                b.floor = old.rv;
            }
        }
        self.notify.send_replace(rv);
    }

    fn stamp(&mut self, obj: &mut Value) -> u64 {
        self.rv += 1;
        meta_mut(obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.rv
    }

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
        self.emit(def, EventKind::Added, obj.clone());
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
            self.emit(def, EventKind::Deleted, new.clone());
        } else {
            self.bucket(def).objects.insert(key, new.clone());
            self.emit(def, EventKind::Modified, new.clone());
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
            self.emit(def, EventKind::Modified, obj.clone());
            return Ok((obj, true));
        }
        // The DELETED event carries the revision of the deletion.
        self.stamp(&mut obj);
        let obj = Arc::new(obj);
        self.remove(def, (ns.to_string(), name.to_string()));
        self.emit(def, EventKind::Deleted, obj.clone());
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
