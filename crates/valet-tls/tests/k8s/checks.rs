//! The install rules of issue 7, checked on a rendered set of documents
//! (kustomize overlay or Helm render alike). Each check returns problems
//! instead of panicking, so that one run lists all of them.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{id, named, of_kind, typed};

pub type Problems = Vec<String>;

pub fn all(docs: &[Value], namespace: &str) -> Problems {
    let mut p = Problems::new();
    let mut seen = BTreeSet::new();
    for doc in docs {
        if let Err(e) = typed::check(doc) {
            p.push(format!("{}: {e}", id(doc)));
        }
        if !seen.insert(id(doc)) {
            p.push(format!("{} is defined twice", id(doc)));
        }
    }
    webhook_configuration(docs, namespace, &mut p);
    workloads(docs, &mut p);
    super::rbac::check(docs, &mut p);
    certificates(docs, namespace, &mut p);
    p
}

pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn webhook_configuration(docs: &[Value], namespace: &str, p: &mut Problems) {
    let configs = of_kind(docs, "MutatingWebhookConfiguration");
    if configs.len() != 1 {
        p.push(format!(
            "expected one MutatingWebhookConfiguration, found {}",
            configs.len()
        ));
    }
    for config in configs {
        let hooks = config["webhooks"].as_array().cloned().unwrap_or_default();
        if hooks.is_empty() {
            p.push(format!("{}: no webhooks", id(config)));
        }
        for hook in &hooks {
            let name = hook["name"].as_str().unwrap_or("?");
            let mut expect = |what: &str, ok: bool| {
                if !ok {
                    p.push(format!("webhook {name}: {what}"));
                }
            };
            expect(
                "admissionReviewVersions must be [v1]",
                strs(&hook["admissionReviewVersions"]) == ["v1"],
            );
            expect("sideEffects must be None", hook["sideEffects"] == "None");
            expect(
                "failurePolicy must be Ignore",
                hook["failurePolicy"] == "Ignore",
            );
            expect(
                "reinvocationPolicy must be IfNeeded",
                hook["reinvocationPolicy"] == "IfNeeded",
            );
            let timeout = hook["timeoutSeconds"].as_i64().unwrap_or(30);
            expect(
                "timeoutSeconds must be set and at most 10",
                (1..=10).contains(&timeout),
            );
            let excluded: BTreeSet<String> = hook["namespaceSelector"]["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
                .flat_map(|e| strs(&e["values"]))
                .collect();
            expect(
                "namespaceSelector must exclude kube-system and storage-valet's namespace",
                excluded.contains("kube-system") && excluded.contains(namespace),
            );
            let selector: Vec<&Value> = hook["objectSelector"]["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let has = |key: &str, op: &str, values: &[&str]| {
                selector
                    .iter()
                    .any(|e| e["key"] == key && e["operator"] == op && strs(&e["values"]) == values)
            };
            expect(
                "objectSelector must honour the opt-out label storage-valet.dev/inject=false (or opt in with inject=true)",
                has("storage-valet.dev/inject", "NotIn", &["false"])
                    || has("storage-valet.dev/inject", "In", &["true"]),
            );
            expect(
                "objectSelector must honour the peer's opt-out label eks.amazonaws.com/skip-pod-identity-webhook",
                has(
                    "eks.amazonaws.com/skip-pod-identity-webhook",
                    "DoesNotExist",
                    &[],
                ),
            );
            let rules = hook["rules"].as_array().cloned().unwrap_or_default();
            let pods_create_only = rules.len() == 1
                && strs(&rules[0]["apiGroups"]) == [""]
                && strs(&rules[0]["apiVersions"]) == ["v1"]
                && strs(&rules[0]["operations"]) == ["CREATE"]
                && strs(&rules[0]["resources"]) == ["pods"];
            expect("rules must be exactly pods CREATE", pods_create_only);
            let svc = &hook["clientConfig"]["service"];
            expect(
                "clientConfig.service.path must be /mutate",
                svc["path"] == "/mutate",
            );
            expect(
                "clientConfig.service.namespace must be the install namespace",
                svc["namespace"] == namespace,
            );
            let port = svc["port"].as_i64().unwrap_or(443);
            let served = named(docs, "Service", svc["name"].as_str().unwrap_or(""))
                .map(|s| {
                    s["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|sp| sp["port"] == port)
                })
                .unwrap_or(false);
            expect(
                "clientConfig.service must name a Service port of this install",
                served,
            );
        }
    }
}

fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for doc in docs {
        let spec = match doc["kind"].as_str() {
            Some("Deployment") | Some("Job") => &doc["spec"]["template"]["spec"],
            Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        out.push((id(doc), spec));
    }
    out
}

fn workloads(docs: &[Value], p: &mut Problems) {
    for (who, spec) in pod_specs(docs) {
        let psc = &spec["securityContext"];
        if psc["runAsNonRoot"] != true || psc["seccompProfile"]["type"] != "RuntimeDefault" {
            p.push(format!(
                "{who}: pod needs runAsNonRoot and seccompProfile RuntimeDefault"
            ));
        }
        if psc["runAsUser"] != 65532 {
            p.push(format!(
                "{who}: pod should run as UID 65532 (the image's nonroot user)"
            ));
        }
        for c in spec["containers"].as_array().into_iter().flatten() {
            let sc = &c["securityContext"];
            if sc["allowPrivilegeEscalation"] != false
                || sc["readOnlyRootFilesystem"] != true
                || strs(&sc["capabilities"]["drop"]) != ["ALL"]
            {
                p.push(format!(
                    "{who}: container {} needs allowPrivilegeEscalation false, readOnlyRootFilesystem, drop ALL",
                    c["name"]
                ));
            }
            let r = &c["resources"];
            if r["requests"]["cpu"].is_null()
                || r["requests"]["memory"].is_null()
                || r["limits"]["memory"].is_null()
            {
                p.push(format!(
                    "{who}: container {} needs cpu/memory requests and a memory limit",
                    c["name"]
                ));
            }
        }
    }
    for deploy in of_kind(docs, "Deployment") {
        let who = id(deploy);
        if deploy["spec"]["replicas"].as_i64().unwrap_or(1) < 2 {
            p.push(format!("{who}: needs at least 2 replicas"));
        }
        let selector = &deploy["spec"]["selector"]["matchLabels"];
        let pdb = of_kind(docs, "PodDisruptionBudget")
            .into_iter()
            .any(|pdb| &pdb["spec"]["selector"]["matchLabels"] == selector);
        if !pdb {
            p.push(format!("{who}: no PodDisruptionBudget selects it"));
        }
        let spec = &deploy["spec"]["template"]["spec"];
        if spec["topologySpreadConstraints"]
            .as_array()
            .is_none_or(|t| t.is_empty())
        {
            p.push(format!("{who}: needs topologySpreadConstraints"));
        }
        let webhook = deploy["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook";
        for c in spec["containers"].as_array().into_iter().flatten() {
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &c[probe]["httpGet"];
                if get["path"] != path {
                    p.push(format!("{who}: {probe} must GET {path}"));
                }
                if webhook && get["scheme"] != "HTTPS" {
                    p.push(format!(
                        "{who}: {probe} must use HTTPS (the webhook serves probes on its TLS port)"
                    ));
                }
            }
        }
    }
}

fn arg<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("--{flag}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

/// The webhook serves the Secret that the certificate machinery fills, for
/// the Service and webhook configuration that exist.
fn certificates(docs: &[Value], namespace: &str, p: &mut Problems) {
    let Some(webhook) = of_kind(docs, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook")
    else {
        p.push("no webhook Deployment".into());
        return;
    };
    let secret = webhook["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .unwrap_or("");
    let service = of_kind(docs, "Service")
        .into_iter()
        .find(|s| s["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook");
    let service = service
        .and_then(|s| s["metadata"]["name"].as_str())
        .unwrap_or("");
    let mwc = of_kind(docs, "MutatingWebhookConfiguration");
    let mwc_name = mwc
        .first()
        .and_then(|m| m["metadata"]["name"].as_str())
        .unwrap_or("");

    let certs_jobs: Vec<Vec<String>> = pod_specs(docs)
        .into_iter()
        .flat_map(|(_, spec)| spec["containers"].as_array().cloned().unwrap_or_default())
        .map(|c| strs(&c["args"]))
        .filter(|args| args.first().is_some_and(|a| a == "certs"))
        .collect();
    let certificates = of_kind(docs, "Certificate");
    if certs_jobs.is_empty() && certificates.is_empty() {
        p.push(
            "no certificate source: neither a `valet certs` Job nor a cert-manager Certificate"
                .into(),
        );
    }
    for args in &certs_jobs {
        let expect = [
            ("secret", secret),
            ("service", service),
            ("namespace", namespace),
            ("webhook-config", mwc_name),
        ];
        for (flag, want) in expect {
            if arg(args, flag) != Some(want) {
                p.push(format!(
                    "valet certs --{flag} is {:?}, the install uses {want:?}",
                    arg(args, flag)
                ));
            }
        }
    }
    if let Some(serving) = certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == secret)
    {
        let inject = format!(
            "{namespace}/{}",
            serving["metadata"]["name"].as_str().unwrap_or("")
        );
        if mwc
            .first()
            .map(|m| &m["metadata"]["annotations"]["cert-manager.io/inject-ca-from"])
            != Some(&Value::from(inject.clone()))
        {
            p.push(format!(
                "the webhook configuration needs cert-manager.io/inject-ca-from: {inject}"
            ));
        }
        let names = strs(&serving["spec"]["dnsNames"]);
        for want in valet_tls::service_dns_names(service, namespace) {
            if !names.contains(&want) {
                p.push(format!("Certificate {} lacks DNS name {want}", id(serving)));
            }
        }
    } else if !certificates.is_empty() {
        p.push(format!(
            "no Certificate writes the webhook's Secret {secret}"
        ));
    }
}
