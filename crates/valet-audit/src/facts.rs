//! The few fields the audit judges, extracted from API objects as each list
//! page arrives, so whole pods never stay in memory.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use valet_core::SaConfig;
use valet_core::consts::{
    ANN_INJECTED_BUCKET_ENV, ANN_INJECTED_MODE, ANN_INJECTED_ROLE_ARN, ENV_ROLE_ARN,
};
use valet_core::settings::AnnotationKeys;

/// Env var names that carry long-lived AWS keys.
pub const STATIC_KEY_NAMES: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

pub fn is_static_key_name(name: &str) -> bool {
    STATIC_KEY_NAMES.contains(&name)
}

/// What the webhook recorded on a pod when it mutated it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub mode: Option<String>,
    pub role_arn: Option<String>,
    /// `None` when the annotation is absent; an unparsable value is kept as
    /// `Err(raw)` so the judge can say so instead of guessing.
    pub bucket_env: Option<Result<BTreeMap<String, String>, String>>,
}

impl Recorded {
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.role_arn.is_none() && self.bucket_env.is_none()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    pub name: String,
    /// Listed in the pod's `<prefix>/skip-containers` annotation.
    pub skipped: bool,
    pub role_arn: Option<String>,
    /// `S3_*` env with literal values.
    pub s3_env: BTreeMap<String, String>,
    /// Static key env vars set with a literal value.
    pub static_key_literals: Vec<String>,
    /// `env[].valueFrom.secretKeyRef`: (env name, secret, key).
    pub secret_key_refs: Vec<(String, String, String)>,
    /// `envFrom[].secretRef.name`.
    pub env_from_secrets: Vec<String>,
}

/// The owner to restart so a pod is recreated (kind, name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub phase: Option<String>,
    pub recorded: Recorded,
    pub containers: Vec<ContainerFacts>,
    pub controller: Option<Controller>,
    /// `spec.volumes[].persistentVolumeClaim.claimName`.
    pub claims: Vec<String>,
}

/// The Mountpoint for S3 CSI driver's name in a PersistentVolume.
pub const S3_CSI_DRIVER: &str = "s3.csi.aws.com";

/// A PersistentVolume of the Mountpoint for S3 CSI driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3VolumeFacts {
    pub name: String,
    /// `volumeAttributes.bucketName`.
    pub bucket: Option<String>,
    /// `volumeAttributes.authenticationSource` absent or `driver`: every
    /// pod mounting it reads S3 as the driver's own IAM identity.
    pub driver_credentials: bool,
    /// The bound claim (`spec.claimRef`): namespace, name.
    pub claim: Option<(String, String)>,
}

impl S3VolumeFacts {
    /// `None` for a volume of another driver.
    pub fn from_pv(pv: &k8s_openapi::api::core::v1::PersistentVolume) -> Option<S3VolumeFacts> {
        let csi = pv.spec.as_ref()?.csi.as_ref()?;
        if csi.driver != S3_CSI_DRIVER {
            return None;
        }
        let attr = |k: &str| {
            csi.volume_attributes
                .as_ref()
                .and_then(|a| a.get(k))
                .cloned()
        };
        let source = attr("authenticationSource");
        let claim = pv
            .spec
            .as_ref()?
            .claim_ref
            .as_ref()
            .and_then(|c| Some((c.namespace.clone().unwrap_or_default(), c.name.clone()?)));
        Some(S3VolumeFacts {
            name: pv.metadata.name.clone().unwrap_or_default(),
            bucket: attr("bucketName"),
            driver_credentials: source.as_deref().is_none_or(|s| s == "driver"),
            claim,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaFacts {
    pub namespace: String,
    pub name: String,
    pub config: SaConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadyCondition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketAccessFacts {
    pub namespace: String,
    pub name: String,
    pub service_account: Option<String>,
    pub ready: Option<ReadyCondition>,
    /// The spec as the broker reads it; `None` when it is invalid (the
    /// broker then grants nothing, and says so in Ready).
    pub spec: Option<valet_broker::crd::ValidSpec>,
    /// `status.roleArn`: the role the broker made for it.
    pub role_arn: Option<String>,
}

/// A role under the broker's path in a bucket account that carries the
/// broker's ownership tags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleFacts {
    pub account: String,
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
}

/// The keys (never the values) of a Secret referenced through `envFrom`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretKeys {
    Keys(Vec<String>),
    /// Could not be read (forbidden, missing): why.
    Unreadable(String),
}

/// One webhook of a MutatingWebhookConfiguration that looks like ours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookFacts {
    pub configuration: String,
    pub name: String,
    /// `Fail` or `Ignore` (the API server's default is `Fail`).
    pub failure_policy: String,
}

/// Everything the judge looks at.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `None` when the configurations could not be listed.
    pub webhooks: Option<Vec<WebhookFacts>>,
    pub service_accounts: Vec<SaFacts>,
    pub pods: Vec<PodFacts>,
    pub bucket_accesses: Vec<BucketAccessFacts>,
    /// (namespace, secret name) -> keys.
    pub secrets: BTreeMap<(String, String), SecretKeys>,
    /// Whether the BucketAccesses could be listed (roles are judged against them).
    pub bucket_accesses_listed: bool,
    /// The BucketAccessPolicies; `None` when they could not be listed.
    pub policies: Option<Vec<valet_broker::access_policy::BucketAccessPolicy>>,
    /// Namespace name -> labels (what the policies' selectors see).
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// The broker's roles in the bucket accounts (`--broker-config`);
    /// `None` when not listed.
    pub roles: Option<Vec<RoleFacts>>,
    /// Mountpoint for S3 CSI volumes; `None` when PersistentVolumes could not be listed.
    pub s3_volumes: Option<Vec<S3VolumeFacts>>,
    /// Findings made while collecting (`--with-trust`).
    pub extra: Vec<crate::judge::Finding>,
    /// Things the collection could not look at, said as info findings.
    pub notes: Vec<String>,
}

impl SaFacts {
    pub fn from_sa(sa: &ServiceAccount, keys: &AnnotationKeys) -> SaFacts {
        let empty = BTreeMap::new();
        let annotations = sa.metadata.annotations.as_ref().unwrap_or(&empty);
        SaFacts {
            namespace: sa.metadata.namespace.clone().unwrap_or_default(),
            name: sa.metadata.name.clone().unwrap_or_default(),
            config: SaConfig::from_annotations(annotations, keys),
        }
    }
}

impl PodFacts {
    pub fn from_pod(pod: &Pod, keys: &AnnotationKeys) -> PodFacts {
        let annotations = pod.metadata.annotations.as_ref();
        let ann = |k: &str| annotations.and_then(|a| a.get(k)).cloned();
        let skipped: Vec<String> = ann(&keys.skip_containers)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let recorded = Recorded {
            mode: ann(ANN_INJECTED_MODE),
            role_arn: ann(ANN_INJECTED_ROLE_ARN),
            bucket_env: ann(ANN_INJECTED_BUCKET_ENV)
                .map(|raw| serde_json::from_str::<BTreeMap<String, String>>(&raw).map_err(|_| raw)),
        };
        let spec = pod.spec.as_ref();
        let containers = spec
            .map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
                    .map(|c| container_facts(c, &skipped))
                    .collect()
            })
            .unwrap_or_default();
        PodFacts {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string()),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            recorded,
            containers,
            controller: controller_of(pod),
            claims: spec
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.clone())
                .collect(),
        }
    }

    /// The role a running container actually has in its env.
    pub fn env_role(&self) -> Option<&str> {
        self.containers
            .iter()
            .filter(|c| !c.skipped)
            .find_map(|c| c.role_arn.as_deref())
    }
}

fn container_facts(c: &Container, skipped: &[String]) -> ContainerFacts {
    let mut f = ContainerFacts {
        name: c.name.clone(),
        skipped: skipped.contains(&c.name),
        ..ContainerFacts::default()
    };
    for e in c.env.iter().flatten() {
        let secret_ref = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        if let Some(r) = secret_ref {
            f.secret_key_refs
                .push((e.name.clone(), r.name.clone(), r.key.clone()));
            continue;
        }
        let Some(value) = e.value.as_ref() else {
            continue;
        };
        if e.name == ENV_ROLE_ARN {
            f.role_arn = Some(value.clone());
        } else if e.name.starts_with("S3_") {
            f.s3_env.insert(e.name.clone(), value.clone());
        } else if is_static_key_name(&e.name) {
            f.static_key_literals.push(e.name.clone());
        }
    }
    for from in c.env_from.iter().flatten() {
        if let Some(s) = from.secret_ref.as_ref() {
            f.env_from_secrets.push(s.name.clone());
        }
    }
    f
}

/// The object `kubectl rollout restart` acts on: a ReplicaSet's Deployment is
/// named by the ReplicaSet minus its pod-template-hash suffix.
fn controller_of(pod: &Pod) -> Option<Controller> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))?;
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let deployment = owner
                .name
                .rsplit_once('-')
                .map_or(owner.name.as_str(), |(d, _)| d);
            Some(Controller {
                kind: "Deployment".into(),
                name: deployment.into(),
            })
        }
        kind => Some(Controller {
            kind: kind.into(),
            name: owner.name.clone(),
        }),
    }
}
