//! An in-process Kubernetes API server for tests, speaking the real JSON wire
//! format over plain HTTP so the real kube-rs client works against it
//! unchanged: list (selectors, pagination), watch (bookmarks, streaming
//! lists, 410 Gone), get, create, replace, patch (merge, JSON,
//! strategic-as-merge, apply-as-merge), delete (finalizers), `/status`,
//! `serviceaccounts/{name}/token`, the metadata-only `PartialObjectMetadata`
//! forms, discovery, and opt-in mutating admission webhooks on CREATE.
//!
//! Objects are schemaless `serde_json::Value`s keyed by resource type,
//! namespace and name, so any registered kind (and any CRD created through
//! the API) is served. Not modelled: validating admission, RBAC, schema
//! validation, garbage collection and namespace cascades, managedFields
//! (apply is a merge: fields dropped from an applied object are not
//! removed), namespace existence, dryRun (refused with 400).
//!
//! kube's client retries 429/503/504 by itself: inject 500 to make a request
//! fail once.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::ServiceAccount;
//! use kube::api::{Api, PostParams};
//! let server = valet_testkit::apiserver::ApiServer::start().await;
//! let api: Api<ServiceAccount> = Api::namespaced(server.client(), "team-a");
//! let mut sa = ServiceAccount::default();
//! sa.metadata.name = Some("app".into());
//! api.create(&PostParams::default(), &sa).await?;
//! assert!(server.get("v1", "ServiceAccount", "team-a", "app").is_some());
//! # Ok(()) }
//! ```

mod access;
mod admission;
mod handler;
mod objects;
mod patch;
mod registry;
mod select;
mod server;
mod state;
mod store;
mod watch;
mod wire;

pub use registry::ResourceDef;
pub use server::ApiServer;
pub use state::{RecordedRequest, TokenIssuer, Verb};
pub use wire::ApiError;
