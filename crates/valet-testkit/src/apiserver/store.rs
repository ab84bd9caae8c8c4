//! The object store: one BTreeMap per resource type, a global monotonic
//! resourceVersion (like etcd's revision) and a bounded per-type event history
//! that watches replay from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::registry::{Registry, ResourceDef};
use super::wire::{ApiError, meta_mut};

mod writes;

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
    /// The object before a MODIFIED, so filtered watches can turn an object
    /// entering or leaving their selector into ADDED or DELETED.
    pub prev: Option<Arc<Value>>,
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

    fn emit(
        &mut self,
        def: &ResourceDef,
        kind: EventKind,
        obj: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let rv = self.rv;
        let limit = self.history_limit;
        let b = self.bucket(def);
        b.log.push_back(Event {
            rv,
            kind,
            obj,
            prev,
        });
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
}
