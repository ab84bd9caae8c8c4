//! Direct store access for tests: objects written here are seen by clients
//! and emit watch events like any API write.

use std::sync::Arc;

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::registry::ResourceDef;
use super::server::ApiServer;
use super::store::{Scan, Write};
use super::wire::{ApiError, meta_str};

impl ApiServer {
    fn def_of(&self, api_version: &str, kind: &str) -> Result<Arc<ResourceDef>, ApiError> {
        self.shared.store().registry.by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no resource registered for apiVersion {api_version:?} kind {kind:?}: call ApiServer::register"
            ))
        })
    }

    fn prepare(&self, obj: impl Serialize) -> Result<(Value, Arc<ResourceDef>, String), ApiError> {
        let value = serde_json::to_value(obj)
            .map_err(|e| ApiError::bad_request(format!("object does not serialize: {e}")))?;
        let def = self.def_of(
            value["apiVersion"].as_str().unwrap_or(""),
            value["kind"].as_str().unwrap_or(""),
        )?;
        let ns = match meta_str(&value, "namespace") {
            "" if def.namespaced => "default".to_string(),
            _ if !def.namespaced => String::new(),
            ns => ns.to_string(),
        };
        Ok((value, def, ns))
    }

    /// Creates an object as given (status kept), emitting ADDED. The type comes
    /// from its apiVersion and kind; a namespaced object without a namespace
    /// goes to "default". Returns the stored object.
    pub fn insert(&self, obj: impl Serialize) -> Result<Value, ApiError> {
        let (value, def, ns) = self.prepare(obj)?;
        Ok((*self.shared.store().create(&def, &ns, value, Write::Raw)?).clone())
    }

    /// Creates or replaces (unconditionally) an object, emitting ADDED or MODIFIED.
    pub fn upsert(&self, obj: impl Serialize) -> Result<Value, ApiError> {
        let (mut value, def, ns) = self.prepare(obj)?;
        let name = meta_str(&value, "name").to_string();
        let mut store = self.shared.store();
        if store.get(&def, &ns, &name).is_err() {
            return Ok((*store.create(&def, &ns, value, Write::Raw)?).clone());
        }
        super::wire::meta_mut(&mut value).remove("resourceVersion");
        Ok((*store.update(&def, &ns, &name, value, Write::Raw)?).clone())
    }

    /// The stored object; `ns` is "" for cluster-scoped kinds.
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let def = self.def_of(api_version, kind).ok()?;
        self.shared
            .store()
            .get(&def, ns, name)
            .ok()
            .map(|o| (*o).clone())
    }

    /// Deletes as the API would (finalizers honoured): returns the object,
    /// with a deletionTimestamp when finalizers keep it.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let def = self.def_of(api_version, kind)?;
        let (obj, _) = self.shared.store().delete(&def, ns, name, None)?;
        Ok((*obj).clone())
    }

    /// All stored objects of a kind, in (namespace, name) order.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let Ok(def) = self.def_of(api_version, kind) else {
            return Vec::new();
        };
        let page = self.shared.store().list(&def, Scan::default(), |_| true);
        page.items.iter().map(|o| (**o).clone()).collect()
    }

    pub fn count(&self, api_version: &str, kind: &str) -> usize {
        self.def_of(api_version, kind)
            .map_or(0, |d| self.shared.store().count(&d))
    }

    /// The stored object as a typed value (`k8s-openapi` types, kube-derived
    /// custom resources); `ns` is "" for cluster-scoped kinds.
    pub fn get_typed<K>(&self, ns: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let obj = self.get(&K::api_version(&()), &K::kind(&()), ns, name)?;
        serde_json::from_value(obj).ok()
    }

    /// All stored objects of a type, typed; objects that do not deserialize
    /// as `K` are skipped.
    pub fn list_typed<K>(&self) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list(&K::api_version(&()), &K::kind(&()))
            .into_iter()
            .filter_map(|o| serde_json::from_value(o).ok())
            .collect()
    }
}
