//! `valet broker apply -f FILE... [--dry-run]`: the controller's work for
//! teams without the controller, from files in a pipeline.
//!
//! Every plan is computed (IAM reads only) and printed before the first
//! write, so a reviewer sees the whole change; `--dry-run` stops there.
//!
//! The files carry the platform's BucketAccessPolicies and the Namespaces
//! (for their labels) too: the same policies as in a cluster, judged before
//! any AWS call, so a refused object costs nothing and changes nothing.
//! Unknown fields are refused with their path, as a cluster's schema would.

use std::collections::BTreeMap;

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde::Deserialize;

use crate::access_policy::BucketAccessPolicy;
use crate::accounts::Accounts;
use crate::crd::BucketAccess;
use crate::guard::{grant_requests, permitted_condition};
use crate::permit::{self, NamespaceInfo};
use crate::provision::{self, Plan};
use crate::status::service_account_annotations;
use crate::trust_gate::{TrustGate, TrustVerdict};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: document {index} is not valid YAML: {source}")]
    Yaml {
        path: String,
        index: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: document {index} is a {kind} but does not parse: {message}")]
    Object {
        path: String,
        index: usize,
        kind: &'static str,
        message: String,
    },
    #[error(
        "{path}: document {index} ({kind}) has unknown field(s) {}: remove or correct them (a field the broker does not know is never ignored)",
        .fields.join(", ")
    )]
    UnknownFields {
        path: String,
        index: usize,
        kind: &'static str,
        fields: Vec<String>,
    },
    #[error("{path}: document {index}: BucketAccessPolicy {name}: {message}")]
    Policy {
        path: String,
        index: usize,
        name: String,
        message: String,
    },
    #[error("no BucketAccess objects in the files given")]
    Empty,
}

/// One BucketAccess read from a file.
#[derive(Debug, Clone)]
pub struct Source {
    pub origin: String,
    pub namespace: String,
    pub object: BucketAccess,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// What the files hold.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub accesses: Vec<Source>,
    pub policies: Vec<BucketAccessPolicy>,
    /// Namespace name -> labels, from `kind: Namespace` documents.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Inputs {
    fn namespace(&self, name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.to_string(),
            labels: self.namespaces.get(name).cloned().unwrap_or_default(),
        }
    }
}

/// Reads every BucketAccess, BucketAccessPolicy and Namespace from the files
/// (`-` = stdin); other kinds are skipped.
pub fn read_sources(files: &[PathBuf]) -> Result<Inputs, ApplyError> {
    let mut out = Inputs::default();
    for file in files {
        let shown = file.display().to_string();
        let text = read(file).map_err(|source| ApplyError::Read {
            path: shown.clone(),
            source,
        })?;
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value =
                serde_yaml_ng::Value::deserialize(doc).map_err(|source| ApplyError::Yaml {
                    path: shown.clone(),
                    index,
                    source,
                })?;
            if value.is_null() {
                continue;
            }
            let meta: TypeMeta = serde_yaml_ng::from_value(value.clone()).unwrap_or(TypeMeta {
                api_version: String::new(),
                kind: String::new(),
            });
            let ours = meta.api_version.starts_with("storage-valet.dev/");
            let kind: &'static str = match (meta.kind.as_str(), ours) {
                ("BucketAccess", true) => "BucketAccess",
                ("BucketAccessPolicy", true) => "BucketAccessPolicy",
                ("Namespace", false) if meta.api_version == "v1" => "Namespace",
                _ => continue,
            };
            let json = serde_json::to_value(&value).map_err(|e| ApplyError::Object {
                path: shown.clone(),
                index,
                kind,
                message: e.to_string(),
            })?;
            let fields = match kind {
                "BucketAccess" => crate::strict::unknown_fields(&crd_json::<BucketAccess>(), &json),
                "BucketAccessPolicy" => {
                    crate::strict::unknown_fields(&crd_json::<BucketAccessPolicy>(), &json)
                }
                _ => crate::strict::unknown_meta_fields(&json, NAMESPACE_TOP_LEVEL),
            };
            if !fields.is_empty() {
                return Err(ApplyError::UnknownFields {
                    path: shown.clone(),
                    index,
                    kind,
                    fields,
                });
            }
            let bad = |e: serde_json::Error| ApplyError::Object {
                path: shown.clone(),
                index,
                kind,
                message: e.to_string(),
            };
            match kind {
                "BucketAccess" => {
                    let object: BucketAccess = serde_json::from_value(json).map_err(bad)?;
                    let namespace = object
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    out.accesses.push(Source {
                        origin: format!("{shown}#{index}"),
                        namespace,
                        object,
                    });
                }
                "BucketAccessPolicy" => {
                    let policy: BucketAccessPolicy = serde_json::from_value(json).map_err(bad)?;
                    permit::check_policy(&policy.spec).map_err(|message| ApplyError::Policy {
                        path: shown.clone(),
                        index,
                        name: policy.metadata.name.clone().unwrap_or_default(),
                        message,
                    })?;
                    out.policies.push(policy);
                }
                _ => {
                    let ns: k8s_openapi::api::core::v1::Namespace =
                        serde_json::from_value(json).map_err(bad)?;
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    out.namespaces
                        .insert(name, ns.metadata.labels.unwrap_or_default());
                }
            }
        }
    }
    if out.accesses.is_empty() {
        return Err(ApplyError::Empty);
    }
    Ok(out)
}

/// The top-level keys of a Namespace document.
const NAMESPACE_TOP_LEVEL: &[&str] = &["apiVersion", "kind", "spec", "status"];

fn crd_json<K: CustomResourceExt>() -> serde_json::Value {
    serde_json::to_value(K::crd()).unwrap_or_default()
}

fn read(file: &Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
    }
}

/// Exit code of `broker apply`: refused input, not permitted, or a trust link failing.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code of `broker apply`: it could not run (a file, the config, AWS).
pub const EXIT_ERROR: u8 = 2;

/// What happens to one object.
pub struct Item {
    pub source: Source,
    pub outcome: Result<Planned, ItemError>,
}

/// Why an object has no plan. The two exit differently: a refusal is the
/// input's fault (fix the object or the policy), a failure is not (retry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ItemError {
    /// Invalid, or not allowed by any BucketAccessPolicy: decided before any AWS call.
    #[error("{0}")]
    Refused(String),
    /// AWS could not be read (credentials, the provisioning role, IAM).
    #[error("{0}")]
    Failed(String),
}

impl Item {
    /// Planned, but a link of the trust chain fails.
    pub fn trust_failed(&self) -> bool {
        self.outcome.as_ref().is_ok_and(|p| !p.trust.ok)
    }
}

/// The exit code of a whole apply: 2 when anything could not run, else 1
/// when anything was refused or a trust link fails, else 0.
pub fn exit_code(items: &[Item], execute_failed: bool) -> u8 {
    let failed = items
        .iter()
        .any(|i| matches!(i.outcome, Err(ItemError::Failed(_))));
    let refused = items
        .iter()
        .any(|i| matches!(i.outcome, Err(ItemError::Refused(_))) || i.trust_failed());
    if failed || execute_failed {
        EXIT_ERROR
    } else if refused {
        EXIT_REFUSED
    } else {
        0
    }
}

pub struct Planned {
    pub plan: Plan,
    /// Which policies allowed it (the `Permitted` condition's message).
    pub permitted: String,
    pub trust: TrustVerdict,
    pub annotations: Vec<(String, String)>,
}

/// Computes every plan (IAM reads only; none for a refused object).
pub async fn plan_all(inputs: &Inputs, accounts: &Accounts, gate: &TrustGate) -> Vec<Item> {
    let cfg = accounts.config();
    let mut items = Vec::new();
    for source in &inputs.accesses {
        let outcome = plan_one(source, inputs, accounts, gate, cfg).await;
        items.push(Item {
            source: source.clone(),
            outcome,
        });
    }
    items
}

async fn plan_one(
    source: &Source,
    inputs: &Inputs,
    accounts: &Accounts,
    gate: &TrustGate,
    cfg: &crate::config::BrokerConfig,
) -> Result<Planned, ItemError> {
    let refused = |e: &dyn std::fmt::Display| ItemError::Refused(e.to_string());
    let failed = |e: &dyn std::fmt::Display| ItemError::Failed(e.to_string());
    let name = source.object.metadata.name.clone().unwrap_or_default();
    let spec = source.object.spec.validate().map_err(|e| refused(&e))?;
    if let Some(claim) = spec.buckets.iter().find_map(|g| g.claim.as_deref()) {
        return Err(ItemError::Refused(format!(
            "bucketClaimName {claim}: broker apply does not grant by claim yet; name the bucket (spec.buckets[].name) or let the controller reconcile it"
        )));
    }
    let role = provision::desired_role(cfg, gate.issuer(), &source.namespace, &name, &spec)
        .map_err(|e| refused(&e))?;
    // Judged before the first AWS call: a refused object touches nothing.
    let decision = permit::decide(
        &inputs.policies,
        cfg.default_bucket_account.as_deref(),
        &inputs.namespace(&source.namespace),
        &role.account,
        &grant_requests(&spec),
    );
    let permitted = permitted_condition(&decision).message;
    decision.map_err(|e| ItemError::Refused(format!("refused: {e}")))?;
    let clients = accounts.get(&role.account).await.map_err(|e| failed(&e))?;
    let trust = gate.check(&clients, &role).await;
    let region = cfg.bucket_region(&role.account);
    let annotations =
        service_account_annotations(&cfg.annotation_prefix, &role.arn, &spec, region, &name)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
    let plan = if spec.suspended {
        provision::plan_revoke(&clients.iam, role).await
    } else {
        provision::plan(&clients.iam, role).await
    }
    // IAM failing is not the input's fault; a foreign or conflicting role is.
    .map_err(|e| {
        if e.transient() {
            failed(&e)
        } else {
            refused(&e)
        }
    })?;
    Ok(Planned {
        plan,
        permitted,
        trust,
        annotations,
    })
}

/// The plan as a reviewer reads it.
pub fn render_plan(items: &[Item]) -> String {
    let mut out = String::new();
    for item in items {
        let ns = &item.source.namespace;
        let name = item.source.object.metadata.name.as_deref().unwrap_or("");
        let _ = writeln!(out, "BucketAccess {ns}/{name} ({})", item.source.origin);
        match &item.outcome {
            Err(e) => {
                let _ = writeln!(out, "  ! error: {e}");
            }
            Ok(p) => {
                let _ = writeln!(out, "  permitted: {}", p.permitted);
                let _ = writeln!(out, "  role {}", p.plan.role.arn);
                if p.plan.steps.is_empty() {
                    let _ = writeln!(out, "  = no changes");
                }
                for step in &p.plan.steps {
                    let mark = if p.plan.existed { "~" } else { "+" };
                    let _ = writeln!(out, "  {mark} {step}");
                }
                let verdict = if p.trust.ok { "ok" } else { "FAIL" };
                let _ = writeln!(out, "  trust {verdict}: {}", p.trust.message);
                let _ = writeln!(
                    out,
                    "  ServiceAccount {ns}/{} annotations:",
                    p.plan.role.service_account
                );
                for (k, v) in &p.annotations {
                    let _ = writeln!(out, "    {k}: {v}");
                }
            }
        }
    }
    let changes: usize = items
        .iter()
        .filter_map(|i| i.outcome.as_ref().ok())
        .map(|p| p.plan.steps.len())
        .sum();
    let errors = items.iter().filter(|i| i.outcome.is_err()).count();
    let _ = writeln!(
        out,
        "Plan: {changes} change(s) to {} object(s), {errors} error(s).",
        items.len()
    );
    out
}

/// Executes the plans; returns one line per object.
pub async fn execute_all(items: &[Item], accounts: &Accounts) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    for item in items {
        let Ok(p) = &item.outcome else { continue };
        let role = &p.plan.role;
        let result = match accounts.get(&role.account).await {
            Err(e) => Err(e.to_string()),
            Ok(clients) => provision::execute(&clients.iam, &p.plan)
                .await
                .map(|_| {
                    format!(
                        "{}/{}: {} ({} change(s))",
                        role.namespace,
                        role.bucket_access,
                        role.arn,
                        p.plan.steps.len()
                    )
                })
                .map_err(|e| format!("{}/{}: {e}", role.namespace, role.bucket_access)),
        };
        out.push(result);
    }
    out
}
