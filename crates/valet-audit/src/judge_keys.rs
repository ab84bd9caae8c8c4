//! Static AWS keys in a pod's env: literal values, `secretKeyRef`s, and
//! Secrets taken whole through `envFrom` (their keys only, never values).

use std::collections::BTreeMap;

use crate::facts::{PodFacts, SecretKeys, is_static_key_name};
use crate::judge::{Finding, Kind, Severity, pod_finding};

pub(crate) fn static_keys(
    pod: &PodFacts,
    secrets: &BTreeMap<(String, String), SecretKeys>,
    out: &mut Vec<Finding>,
) {
    let fix = "remove the static AWS keys (and rotate them): the pod's ServiceAccount role gives short-lived credentials";
    for c in &pod.containers {
        for name in &c.static_key_literals {
            out.push(pod_finding(
                pod,
                Severity::Error,
                Kind::StaticKeys,
                format!("container {} sets {name} as a literal env value", c.name),
                fix.into(),
            ));
        }
        for (env, secret, key) in &c.secret_key_refs {
            if is_static_key_name(env) || is_static_key_name(key) {
                out.push(pod_finding(
                    pod,
                    Severity::Error,
                    Kind::StaticKeys,
                    format!(
                        "container {} sets {env} from secret/{secret} key {key}",
                        c.name
                    ),
                    fix.into(),
                ));
            }
        }
        for secret in &c.env_from_secrets {
            match secrets.get(&(pod.namespace.clone(), secret.clone())) {
                Some(SecretKeys::Keys(keys)) => {
                    let found: Vec<&str> = keys
                        .iter()
                        .map(String::as_str)
                        .filter(|k| is_static_key_name(k))
                        .collect();
                    if !found.is_empty() {
                        out.push(pod_finding(
                            pod,
                            Severity::Error,
                            Kind::StaticKeys,
                            format!(
                                "container {} takes envFrom secret/{secret}, which holds {}",
                                c.name,
                                found.join(", ")
                            ),
                            fix.into(),
                        ));
                    }
                }
                Some(SecretKeys::Unreadable(why)) => out.push(Finding {
                    severity: Severity::Info,
                    kind: Kind::StaticKeys,
                    namespace: pod.namespace.clone(),
                    object: format!("secret/{secret}"),
                    reason: format!(
                        "cannot read Secret {}/{secret} keys (used by pod/{} envFrom): {why}",
                        pod.namespace, pod.name
                    ),
                    fix: "grant the audit get on secrets to check it for AWS keys".into(),
                }),
                None => {}
            }
        }
    }
}
