//! Read-only collection: paginated lists, facts extracted page by page so a
//! large cluster costs the facts, not the objects.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, ObjectList};
use kube::core::NamespaceResourceScope;
use serde::de::DeserializeOwned;
use tracing::debug;
use valet_broker::access_policy::BucketAccessPolicy;
use valet_broker::crd::BucketAccess;
use valet_core::settings::AnnotationKeys;

use crate::facts::{
    BucketAccessFacts, Facts, PodFacts, ReadyCondition, S3VolumeFacts, SaFacts, SecretKeys,
    WebhookFacts,
};

/// What to collect.
#[derive(Clone, Debug)]
pub struct Scope {
    /// `None`: all namespaces.
    pub namespace: Option<String>,
    pub include_completed: bool,
    pub page_size: u32,
    pub keys: AnnotationKeys,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(
        "cannot list {what} from the Kubernetes API server: {source} (check --kubeconfig / the current context, that the server is reachable, and that this identity may list {what})"
    )]
    List {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Lists every page of `api`, handing each item to `each` and dropping the
/// page before the next is fetched.
async fn for_each_page<K, F>(api: &Api<K>, page_size: u32, mut each: F) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    F: FnMut(K),
{
    let mut params = ListParams::default().limit(page_size);
    loop {
        let page: ObjectList<K> = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        page.items.into_iter().for_each(&mut each);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// The API server's own words, without the client's debug dump.
pub fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} (HTTP {} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

fn forbidden_or_missing(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) if matches!(s.code, 401 | 403 | 404) => Some(s.code),
        _ => None,
    }
}

pub async fn collect(client: &kube::Client, scope: &Scope) -> Result<Facts, CollectError> {
    let ns = scope.namespace.as_deref();
    let mut facts = Facts::default();

    let sas: Api<ServiceAccount> = api(client, ns);
    for_each_page(&sas, scope.page_size, |sa| {
        facts
            .service_accounts
            .push(SaFacts::from_sa(&sa, &scope.keys))
    })
    .await
    .map_err(|source| CollectError::List {
        what: "serviceaccounts",
        source,
    })?;

    let pods: Api<Pod> = api(client, ns);
    let mut skipped_completed = 0usize;
    let mut progress = crate::progress::Progress::new("pods", 0);
    for_each_page(&pods, scope.page_size, |pod| {
        progress.step();
        let facts_of = PodFacts::from_pod(&pod, &scope.keys);
        let done = matches!(facts_of.phase.as_deref(), Some("Succeeded" | "Failed"));
        if done && !scope.include_completed {
            skipped_completed += 1;
        } else {
            facts.pods.push(facts_of);
        }
    })
    .await
    .map_err(|source| CollectError::List {
        what: "pods",
        source,
    })?;
    progress.finish();
    debug!(pods = facts.pods.len(), skipped_completed, "pods collected");

    let bas: Api<BucketAccess> = api(client, ns);
    let mut bucket_accesses = Vec::new();
    let listed = for_each_page(&bas, scope.page_size, |ba| {
        bucket_accesses.push(bucket_access_facts(&ba))
    })
    .await;
    match listed {
        Ok(()) => {
            facts.bucket_accesses = bucket_accesses;
            facts.bucket_accesses_listed = true;
        }
        Err(e) => match forbidden_or_missing(&e) {
            Some(404) => facts.notes.push(
                "BucketAccess is not served (CRD not installed): BucketAccess objects not checked"
                    .into(),
            ),
            Some(_) => facts.notes.push(format!(
                "cannot list bucketaccesses ({}): not checked",
                short(&e)
            )),
            None => {
                return Err(CollectError::List {
                    what: "bucketaccesses",
                    source: e,
                });
            }
        },
    }

    if !facts.bucket_accesses.is_empty() {
        policies_and_namespaces(client, scope.page_size, &mut facts).await?;
    }

    facts.webhooks = match webhooks(client, scope.page_size).await {
        Ok(w) => Some(w),
        Err(e) if forbidden_or_missing(&e).is_some() => {
            facts.notes.push(format!(
                "cannot list mutatingwebhookconfigurations ({}): the webhook's configuration and failurePolicy not checked",
                short(&e)
            ));
            None
        }
        Err(source) => {
            return Err(CollectError::List {
                what: "mutatingwebhookconfigurations",
                source,
            });
        }
    };

    s3_volumes(client, scope, &mut facts).await?;
    secrets(client, &mut facts).await;
    Ok(facts)
}

/// PersistentVolumes of the Mountpoint for S3 CSI driver (cluster-scoped;
/// forbidden or not served is a note). With a namespace scope, only the
/// volumes bound to claims there.
async fn s3_volumes(
    client: &kube::Client,
    scope: &Scope,
    facts: &mut Facts,
) -> Result<(), CollectError> {
    let in_scope = |v: &S3VolumeFacts| match &scope.namespace {
        Some(ns) => v.claim.as_ref().is_some_and(|(c, _)| c == ns),
        None => true,
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let mut found = Vec::new();
    let mut progress = crate::progress::Progress::new("persistentvolumes", 0);
    let listed = for_each_page(&pvs, scope.page_size, |pv| {
        progress.step();
        found.extend(S3VolumeFacts::from_pv(&pv).filter(in_scope));
    })
    .await;
    progress.finish();
    match listed {
        Ok(()) => facts.s3_volumes = Some(found),
        Err(e) if forbidden_or_missing(&e).is_some() => facts.notes.push(format!(
            "cannot list persistentvolumes ({}): Mountpoint for S3 CSI volumes not checked",
            short(&e)
        )),
        Err(source) => {
            return Err(CollectError::List {
                what: "persistentvolumes",
                source,
            });
        }
    }
    Ok(())
}

/// What the policy judgement needs: every BucketAccessPolicy and the
/// labels of the namespaces holding BucketAccesses. Forbidden or not
/// served: said as a note, and grants are not judged.
async fn policies_and_namespaces(
    client: &kube::Client,
    page_size: u32,
    facts: &mut Facts,
) -> Result<(), CollectError> {
    let policies: Api<BucketAccessPolicy> = Api::all(client.clone());
    let mut all = Vec::new();
    match for_each_page(&policies, page_size, |p| all.push(p)).await {
        Ok(()) => facts.policies = Some(all),
        Err(e) => match forbidden_or_missing(&e) {
            Some(404) => facts.notes.push(
                "BucketAccessPolicy is not served (CRD not installed): grants outside policies not checked"
                    .into(),
            ),
            Some(_) => facts.notes.push(format!(
                "cannot list bucketaccesspolicies ({}): grants outside policies not checked",
                short(&e)
            )),
            None => {
                return Err(CollectError::List {
                    what: "bucketaccesspolicies",
                    source: e,
                });
            }
        },
    }
    let wanted: BTreeSet<String> = facts
        .bucket_accesses
        .iter()
        .map(|b| b.namespace.clone())
        .collect();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in wanted {
        match namespaces.get_opt(&name).await {
            Ok(ns) => {
                let labels = ns.and_then(|n| n.metadata.labels).unwrap_or_default();
                facts.namespace_labels.insert(name, labels);
            }
            Err(e) if forbidden_or_missing(&e).is_some() => {
                facts.notes.push(format!(
                    "cannot read namespace {name} ({}): policies with a namespaceSelector judged without its labels",
                    short(&e)
                ));
            }
            Err(source) => {
                return Err(CollectError::List {
                    what: "namespaces",
                    source,
                });
            }
        }
    }
    Ok(())
}

fn bucket_access_facts(ba: &BucketAccess) -> BucketAccessFacts {
    let ready = ba
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| ReadyCondition {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
    BucketAccessFacts {
        namespace: ba.metadata.namespace.clone().unwrap_or_default(),
        name: ba.metadata.name.clone().unwrap_or_default(),
        service_account: Some(ba.spec.service_account_name.clone()),
        ready,
        spec: ba.spec.validate().ok(),
        role_arn: ba.status.as_ref().and_then(|s| s.role_arn.clone()),
    }
}

/// Ours: webhooks calling `/mutate` whose name says storage-valet or
/// pod-identity (the peer's name, which a drop-in replacement keeps).
pub fn is_ours(name: &str, path: Option<&str>, url: Option<&str>) -> bool {
    let calls_mutate = path.is_some_and(|p| p.trim_end_matches('/') == "/mutate")
        || url.is_some_and(|u| {
            u.split('?')
                .next()
                .is_some_and(|u| u.trim_end_matches('/').ends_with("/mutate"))
        });
    let lower = name.to_ascii_lowercase();
    calls_mutate && (lower.contains("storage-valet") || lower.contains("pod-identity"))
}

async fn webhooks(client: &kube::Client, page_size: u32) -> Result<Vec<WebhookFacts>, kube::Error> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut out = Vec::new();
    for_each_page(&api, page_size, |cfg| {
        let cfg_name = cfg.metadata.name.clone().unwrap_or_default();
        for w in cfg.webhooks.iter().flatten() {
            let cc = &w.client_config;
            let path = cc.service.as_ref().and_then(|s| s.path.as_deref());
            let named = format!("{cfg_name} {}", w.name);
            if is_ours(&named, path, cc.url.as_deref()) {
                out.push(WebhookFacts {
                    configuration: cfg_name.clone(),
                    name: w.name.clone(),
                    failure_policy: w.failure_policy.clone().unwrap_or_else(|| "Fail".into()),
                });
            }
        }
    })
    .await?;
    Ok(out)
}

/// Reads only the Secrets pods take through `envFrom`, and only their keys.
async fn secrets(client: &kube::Client, facts: &mut Facts) {
    let wanted: BTreeSet<(String, String)> = facts
        .pods
        .iter()
        .flat_map(|p| {
            p.containers
                .iter()
                .flat_map(|c| c.env_from_secrets.iter())
                .map(|s| (p.namespace.clone(), s.clone()))
        })
        .collect();
    let mut out = BTreeMap::new();
    for (ns, name) in wanted {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let keys = match api.get_opt(&name).await {
            Ok(Some(secret)) => {
                let mut keys: Vec<String> = secret.data.unwrap_or_default().into_keys().collect();
                keys.extend(secret.string_data.unwrap_or_default().into_keys());
                SecretKeys::Keys(keys)
            }
            Ok(None) => SecretKeys::Unreadable("not found".into()),
            // The judge says so as an info finding per Secret.
            Err(e) => SecretKeys::Unreadable(short(&e)),
        };
        out.insert((ns, name), keys);
    }
    facts.secrets = out;
}
