//! Facts in, findings out: no I/O, so every finding kind is unit-tested.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::facts::{Facts, PodFacts, SaFacts};
use crate::judge_keys::static_keys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Stale,
    Missed,
    StaticKeys,
    InvalidAnnotation,
    BucketaccessNotReady,
    /// A BucketAccess whose grants no BucketAccessPolicy allows.
    OutsidePolicy,
    /// A broker role in a bucket account that no BucketAccess explains.
    UnexplainedRole,
    /// A Mountpoint for S3 CSI volume and the pods mounting it (inventory).
    S3CsiVolume,
    /// An S3 CSI volume read with driver-level credentials that pods of
    /// several namespaces share.
    SharedDriverCredentials,
    /// One IAM role behind several ServiceAccounts.
    SharedRole,
    /// A trust-chain link that FAILs or WARNs (`--with-trust`).
    Trust,
    /// The webhook configuration is missing or lets pods through unmutated.
    Webhook,
    /// Something the audit could not look at.
    Unchecked,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Stale => "stale",
            Kind::Missed => "missed",
            Kind::StaticKeys => "static-keys",
            Kind::InvalidAnnotation => "invalid-annotation",
            Kind::BucketaccessNotReady => "bucketaccess-not-ready",
            Kind::OutsidePolicy => "outside-policy",
            Kind::UnexplainedRole => "unexplained-role",
            Kind::S3CsiVolume => "s3-csi-volume",
            Kind::SharedDriverCredentials => "shared-driver-credentials",
            Kind::SharedRole => "shared-role",
            Kind::Trust => "trust",
            Kind::Webhook => "webhook",
            Kind::Unchecked => "unchecked",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: Kind,
    pub namespace: String,
    /// `pod/NAME`, `serviceaccount/NAME`, `bucketaccess/NAME`, `secret/NAME`.
    pub object: String,
    pub reason: String,
    pub fix: String,
}

/// Findings, most severe first, then by namespace, object and kind.
pub fn judge(facts: &Facts) -> Vec<Finding> {
    let sas: HashMap<(&str, &str), &SaFacts> = facts
        .service_accounts
        .iter()
        .map(|s| ((s.namespace.as_str(), s.name.as_str()), s))
        .collect();
    let mut out = Vec::new();
    for sa in &facts.service_accounts {
        for p in sa.config.problems.iter() {
            out.push(Finding {
                severity: Severity::Error,
                kind: Kind::InvalidAnnotation,
                namespace: sa.namespace.clone(),
                object: format!("serviceaccount/{}", sa.name),
                reason: p.to_string(),
                fix: format!(
                    "correct the annotation: kubectl -n {} annotate --overwrite serviceaccount {} {}=..., then restart its pods",
                    sa.namespace, sa.name, p.key
                ),
            });
        }
    }
    for pod in &facts.pods {
        let sa = sas.get(&(pod.namespace.as_str(), pod.service_account.as_str()));
        if let Some(sa) = sa {
            stale(pod, sa, &mut out);
            missed(pod, sa, facts.webhooks.as_deref(), &mut out);
        }
        static_keys(pod, &facts.secrets, &mut out);
    }
    for ba in &facts.bucket_accesses {
        let (severity, why) = match &ba.ready {
            Some(c) if c.status == "True" => continue,
            Some(c) if c.status == "False" => (
                Severity::Error,
                format!("Ready=False ({}): {}", c.reason, c.message),
            ),
            Some(c) => (
                Severity::Warning,
                format!("Ready={} ({}): {}", c.status, c.reason, c.message),
            ),
            None => (
                Severity::Warning,
                "no Ready condition yet: the broker has not reconciled it (is `valet broker` running?)".to_string(),
            ),
        };
        out.push(Finding {
            severity,
            kind: Kind::BucketaccessNotReady,
            namespace: ba.namespace.clone(),
            object: format!("bucketaccess/{}", ba.name),
            reason: why,
            fix: format!(
                "see kubectl -n {} describe bucketaccess {} and the broker's logs; fix what the condition names",
                ba.namespace, ba.name
            ),
        });
    }
    crate::judge_grants::outside_policies(facts, &mut out);
    crate::judge_grants::unexplained_roles(facts, &mut out);
    crate::judge_csi::s3_volumes(facts, &mut out);
    crate::judge_csi::shared_roles(facts, &mut out);
    webhook(facts, &mut out);
    out.extend(facts.extra.iter().cloned());
    for note in &facts.notes {
        out.push(Finding {
            severity: Severity::Info,
            kind: Kind::Unchecked,
            namespace: String::new(),
            object: String::new(),
            reason: note.clone(),
            fix: "grant the audit's identity read access to it, or ignore".into(),
        });
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.object.cmp(&b.object))
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.reason.cmp(&b.reason))
    });
    out
}

/// How to get a pod recreated with what its ServiceAccount grants now.
pub fn restart_fix(pod: &PodFacts) -> String {
    match &pod.controller {
        Some(c) if matches!(c.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") => {
            format!(
                "kubectl -n {} rollout restart {}/{}",
                pod.namespace,
                c.kind.to_lowercase(),
                c.name
            )
        }
        Some(c) => format!(
            "recreate the pod through its {} {} (kubectl -n {} delete pod {})",
            c.kind, c.name, pod.namespace, pod.name
        ),
        None => format!(
            "the pod has no controller: delete and create it again (kubectl -n {} get pod {} -o yaml > pod.yaml; kubectl replace --force -f pod.yaml)",
            pod.namespace, pod.name
        ),
    }
}

pub(crate) fn pod_finding(
    pod: &PodFacts,
    severity: Severity,
    kind: Kind,
    reason: String,
    fix: String,
) -> Finding {
    Finding {
        severity,
        kind,
        namespace: pod.namespace.clone(),
        object: format!("pod/{}", pod.name),
        reason,
        fix,
    }
}

fn stale(pod: &PodFacts, sa: &SaFacts, out: &mut Vec<Finding>) {
    let granted = sa.config.role_arn.as_deref();
    // Container-credentials pods get their role from a Pod Identity
    // association, not from the annotation: only web-identity roles compare.
    let cc = pod.recorded.mode.as_deref() == Some(valet_core::consts::MODE_CONTAINER_CREDENTIALS);
    let running = pod.recorded.role_arn.as_deref().or(pod.env_role());
    if !cc
        && let Some(running) = running
        && granted != Some(running)
    {
        let now = granted.map_or("no role".to_string(), |g| format!("role {g}"));
        out.push(pod_finding(
            pod,
            Severity::Warning,
            Kind::Stale,
            format!(
                "runs with role {running} but serviceaccount/{} now grants {now}",
                sa.name
            ),
            restart_fix(pod),
        ));
    }
    if pod.recorded.is_empty() {
        return;
    }
    let granted_env: BTreeMap<String, String> = sa
        .config
        .bucket_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let running_env = match &pod.recorded.bucket_env {
        None => BTreeMap::new(),
        Some(Ok(m)) => m.clone(),
        Some(Err(raw)) => {
            out.push(pod_finding(
                pod,
                Severity::Warning,
                Kind::Stale,
                format!(
                    "annotation {} is not a JSON object of strings ({raw:?}): cannot tell which buckets the pod has",
                    valet_core::consts::ANN_INJECTED_BUCKET_ENV
                ),
                restart_fix(pod),
            ));
            return;
        }
    };
    if running_env != granted_env {
        out.push(pod_finding(
            pod,
            Severity::Warning,
            Kind::Stale,
            format!(
                "runs with bucket env {} but serviceaccount/{} now grants {}",
                env_text(&running_env),
                sa.name,
                env_text(&granted_env)
            ),
            restart_fix(pod),
        ));
    }
}

fn env_text(env: &BTreeMap<String, String>) -> String {
    if env.is_empty() {
        return "{}".into();
    }
    let parts: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn webhook(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(hooks) = &facts.webhooks else {
        return;
    };
    let annotated = facts
        .service_accounts
        .iter()
        .any(|s| s.config.role_arn.is_some());
    if hooks.is_empty() && annotated {
        out.push(Finding {
            severity: Severity::Error,
            kind: Kind::Webhook,
            namespace: String::new(),
            object: "mutatingwebhookconfiguration".into(),
            reason: "ServiceAccounts have roles but no MutatingWebhookConfiguration sends pods to a storage-valet or pod-identity webhook (/mutate): new pods get no credentials".into(),
            fix: "install the webhook (helm chart or manifests/), then restart the pods of annotated ServiceAccounts".into(),
        });
    }
    for h in hooks.iter().filter(|h| h.failure_policy == "Ignore") {
        out.push(Finding {
            severity: Severity::Info,
            kind: Kind::Webhook,
            namespace: String::new(),
            object: format!("mutatingwebhookconfiguration/{}", h.configuration),
            reason: format!(
                "webhook {} has failurePolicy Ignore: pods created while it is down or slow are admitted without credentials",
                h.name
            ),
            fix: "keep it if availability matters more; run several webhook replicas with a PodDisruptionBudget, or set failurePolicy Fail".into(),
        });
    }
}

fn missed(
    pod: &PodFacts,
    sa: &SaFacts,
    hooks: Option<&[crate::facts::WebhookFacts]>,
    out: &mut Vec<Finding>,
) {
    let Some(role) = sa.config.role_arn.as_deref() else {
        return;
    };
    let skipped: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| c.skipped)
        .map(|c| c.name.as_str())
        .collect();
    if !skipped.is_empty() {
        out.push(pod_finding(
            pod,
            Severity::Info,
            Kind::Missed,
            format!(
                "containers {} are listed in the pod's skip-containers annotation: they run without role {role}",
                skipped.join(", ")
            ),
            "intended for sidecars that need no AWS access; otherwise remove them from skip-containers and restart the pod".into(),
        ));
    }
    if !pod.recorded.is_empty() {
        return;
    }
    let without: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| !c.skipped && c.role_arn.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if without.is_empty() {
        return;
    }
    let ignore = hooks
        .into_iter()
        .flatten()
        .find(|h| h.failure_policy == "Ignore");
    let cause = match (hooks, ignore) {
        (Some([]), _) => "no webhook configuration sends pods to the webhook".to_string(),
        (_, Some(h)) => format!(
            "it was created before the webhook or the ServiceAccount annotation, or while webhook {} (failurePolicy Ignore) was down",
            h.name
        ),
        _ => "it was created before the webhook or the ServiceAccount annotation".to_string(),
    };
    out.push(pod_finding(
        pod,
        Severity::Warning,
        Kind::Missed,
        format!(
            "serviceaccount/{} grants role {role} but the webhook did not mutate this pod (containers without {}: {}); {cause}",
            sa.name,
            valet_core::consts::ENV_ROLE_ARN,
            without.join(", ")
        ),
        format!(
            "check that the webhook is running and selects namespace {}, then {}",
            pod.namespace,
            restart_fix(pod)
        ),
    ));
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
