//! `valet broker apply -f FILE... [--dry-run]`: the controller's work for
//! teams without the controller, from files in a pipeline.
//!
//! Every plan is computed (IAM reads only) and printed before the first
//! write, so a reviewer sees the whole change; `--dry-run` stops there.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::accounts::Accounts;
use crate::crd::BucketAccess;
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
    #[error("{path}: document {index} is a BucketAccess but does not parse: {message}")]
    Object {
        path: String,
        index: usize,
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

/// Reads every BucketAccess from the files (`-` = stdin); other kinds are skipped.
pub fn read_sources(files: &[PathBuf]) -> Result<Vec<Source>, ApplyError> {
    let mut out = Vec::new();
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
            if meta.kind != "BucketAccess" || !meta.api_version.starts_with("storage-valet.dev/") {
                continue;
            }
            let object: BucketAccess =
                serde_yaml_ng::from_value(value).map_err(|e| ApplyError::Object {
                    path: shown.clone(),
                    index,
                    message: e.to_string(),
                })?;
            let namespace = object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            out.push(Source {
                origin: format!("{shown}#{index}"),
                namespace,
                object,
            });
        }
    }
    if out.is_empty() {
        return Err(ApplyError::Empty);
    }
    Ok(out)
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

/// What happens to one object.
pub struct Item {
    pub source: Source,
    pub outcome: Result<Planned, String>,
}

pub struct Planned {
    pub plan: Plan,
    pub trust: TrustVerdict,
    pub annotations: Vec<(String, String)>,
}

/// Computes every plan (IAM reads only).
pub async fn plan_all(sources: Vec<Source>, accounts: &Accounts, gate: &TrustGate) -> Vec<Item> {
    let cfg = accounts.config();
    let mut items = Vec::new();
    for source in sources {
        let outcome = plan_one(&source, accounts, gate, cfg).await;
        items.push(Item { source, outcome });
    }
    items
}

async fn plan_one(
    source: &Source,
    accounts: &Accounts,
    gate: &TrustGate,
    cfg: &crate::config::BrokerConfig,
) -> Result<Planned, String> {
    let name = source.object.metadata.name.clone().unwrap_or_default();
    let spec = source.object.spec.validate().map_err(|e| e.to_string())?;
    let role = provision::desired_role(cfg, gate.issuer(), &source.namespace, &name, &spec)
        .map_err(|e| e.to_string())?;
    let clients = accounts
        .get(&role.account)
        .await
        .map_err(|e| e.to_string())?;
    let trust = gate.check(&clients, &role).await;
    let region = cfg.bucket_region(&role.account);
    let annotations =
        service_account_annotations(&cfg.annotation_prefix, &role.arn, &spec, region, &name)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
    let plan = provision::plan(&clients.iam, role)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Planned {
        plan,
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
