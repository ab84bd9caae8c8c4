//! The report every output format renders: the JSON form is the documented
//! schema (`crates/valet-audit/audit-schema.json`), so field names here are a
//! contract.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::facts::{Facts, PodFacts};
use crate::judge::{Finding, Severity};

pub const API_VERSION: &str = "storage-valet.dev/audit/v1";

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub api_version: &'static str,
    /// The namespace audited, `null` for all namespaces.
    pub namespace: Option<String>,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// `null` when the configurations could not be listed.
    pub webhooks: Option<Vec<Webhook>>,
    pub service_accounts: Vec<SaEntry>,
    pub bucket_accesses: Vec<BucketAccessEntry>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub namespaces: usize,
    pub service_accounts: usize,
    pub service_accounts_with_role: usize,
    pub pods: usize,
    pub pods_with_role: usize,
    pub bucket_accesses: usize,
    pub findings: SeverityCounts,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SeverityCounts {
    pub error: usize,
    pub warning: usize,
    pub info: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub configuration: String,
    pub name: String,
    pub failure_policy: String,
}

/// What a ServiceAccount grants now, and what each of its pods received.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaEntry {
    pub namespace: String,
    pub name: String,
    /// `false` for pods naming a ServiceAccount that is not there.
    pub exists: bool,
    pub grants: Grant,
    pub pods: Vec<PodEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub role_arn: Option<String>,
    pub bucket_env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEntry {
    pub name: String,
    pub phase: Option<String>,
    /// `web-identity`, `container-credentials`, or `null` when not mutated.
    pub mode: Option<String>,
    /// From the webhook's annotations on the pod, else from its env.
    pub received: Grant,
    pub containers: Vec<ContainerEntry>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEntry {
    pub name: String,
    pub skipped: bool,
    pub role_arn: Option<String>,
    pub s3_env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketAccessEntry {
    pub namespace: String,
    pub name: String,
    pub service_account: Option<String>,
    /// `True`, `False`, `Unknown`, or `null` when there is no Ready condition.
    pub ready: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

fn received(p: &PodFacts) -> Grant {
    let role_arn = p
        .recorded
        .role_arn
        .clone()
        .or_else(|| p.env_role().map(str::to_string));
    let bucket_env = match &p.recorded.bucket_env {
        Some(Ok(env)) => env.clone(),
        // Not recorded (or unreadable): what the containers actually carry.
        _ => p
            .containers
            .iter()
            .filter(|c| !c.skipped)
            .flat_map(|c| c.s3_env.clone())
            .collect(),
    };
    Grant {
        role_arn,
        bucket_env,
    }
}

pub fn build(namespace: Option<String>, facts: Facts, findings: Vec<Finding>) -> Report {
    let mut by_sa: BTreeMap<(String, String), SaEntry> = BTreeMap::new();
    for sa in &facts.service_accounts {
        by_sa.insert(
            (sa.namespace.clone(), sa.name.clone()),
            SaEntry {
                namespace: sa.namespace.clone(),
                name: sa.name.clone(),
                exists: true,
                grants: Grant {
                    role_arn: sa.config.role_arn.as_deref().map(str::to_string),
                    bucket_env: sa
                        .config
                        .bucket_env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                },
                pods: Vec::new(),
            },
        );
    }
    let mut pods_with_role = 0;
    for p in &facts.pods {
        let entry = by_sa
            .entry((p.namespace.clone(), p.service_account.clone()))
            .or_insert_with(|| SaEntry {
                namespace: p.namespace.clone(),
                name: p.service_account.clone(),
                exists: false,
                grants: Grant::default(),
                pods: Vec::new(),
            });
        let got = received(p);
        if got.role_arn.is_some() {
            pods_with_role += 1;
        }
        entry.pods.push(PodEntry {
            name: p.name.clone(),
            phase: p.phase.clone(),
            mode: p.recorded.mode.clone(),
            received: got,
            containers: p
                .containers
                .iter()
                .map(|c| ContainerEntry {
                    name: c.name.clone(),
                    skipped: c.skipped,
                    role_arn: c.role_arn.clone(),
                    s3_env: c.s3_env.clone(),
                })
                .collect(),
        });
    }
    let mut service_accounts: Vec<SaEntry> = by_sa.into_values().collect();
    for sa in &mut service_accounts {
        sa.pods.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut counts = SeverityCounts::default();
    for f in &findings {
        match f.severity {
            Severity::Error => counts.error += 1,
            Severity::Warning => counts.warning += 1,
            Severity::Info => counts.info += 1,
        }
    }
    let mut namespaces: std::collections::BTreeSet<&str> = service_accounts
        .iter()
        .map(|s| s.namespace.as_str())
        .collect();
    namespaces.extend(facts.bucket_accesses.iter().map(|b| b.namespace.as_str()));
    let summary = Summary {
        namespaces: namespaces.len(),
        service_accounts: facts.service_accounts.len(),
        service_accounts_with_role: facts
            .service_accounts
            .iter()
            .filter(|s| s.config.role_arn.is_some())
            .count(),
        pods: facts.pods.len(),
        pods_with_role,
        bucket_accesses: facts.bucket_accesses.len(),
        findings: counts,
    };
    let mut bucket_accesses: Vec<BucketAccessEntry> = facts
        .bucket_accesses
        .iter()
        .map(|b| BucketAccessEntry {
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            service_account: b.service_account.clone(),
            ready: b.ready.as_ref().map(|c| c.status.clone()),
            reason: b.ready.as_ref().map(|c| c.reason.clone()),
            message: b.ready.as_ref().map(|c| c.message.clone()),
        })
        .collect();
    bucket_accesses.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Report {
        api_version: API_VERSION,
        namespace,
        summary,
        findings,
        webhooks: facts.webhooks.map(|w| {
            w.into_iter()
                .map(|h| Webhook {
                    configuration: h.configuration,
                    name: h.name,
                    failure_policy: h.failure_policy,
                })
                .collect()
        }),
        service_accounts,
        bucket_accesses,
    }
}
