//! Pod + identity + settings -> RFC 6902 JSON Patch.
//!
//! Pure: the same input gives the same patch, so the webhook and `valet
//! mutate` agree, and mutating a mutated pod changes nothing. The patch only
//! ever *adds*: new keys, or entries appended to existing arrays. It never
//! replaces a list (the peer re-sends whole container arrays; a field our
//! types did not know would be lost that way), never overrides an env var a
//! container already sets, and never removes anything.

use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use serde_json::{Map, Value, json};

use crate::consts::*;
use crate::identity::{SaConfig, parse_expiration};
use crate::pod::{ContainerView, PodView};
use crate::settings::Settings;

/// Why the pod was or was not changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The patch injects credentials and/or bucket env.
    Mutated,
    /// The pod already has everything (e.g. it was mutated before).
    Unchanged,
    /// The ServiceAccount has no role and no container-credentials identity.
    NotConfigured,
    /// The ServiceAccount's annotations are invalid: nothing injected, warnings say why.
    Invalid,
    /// The pod already has a volume of the token's name that is not the
    /// token: nothing injected, a warning says why.
    Conflict,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::NotConfigured => "not-configured",
            Outcome::Invalid => "invalid-annotation",
            Outcome::Conflict => "volume-conflict",
        }
    }
}

/// The decision for one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    pub outcome: Outcome,
    /// Shown to the kubectl user as admission warnings.
    pub warnings: Vec<String>,
}

/// Which credentials the pod gets.
enum Mode<'a> {
    WebIdentity { role_arn: &'a str },
    ContainerCredentials,
}

/// Decides the patch for `pod` in `namespace`, run by the ServiceAccount
/// whose parsed annotations are `sa`.
///
/// `container_credentials` says whether the SA is listed in the
/// container-credentials config (that mode takes precedence over role-arn).
/// `jitter` is any random number: like the peer, container-credentials tokens
/// with the default lifetime get a lifetime drawn from [600, 86400] so that
/// refreshes spread out; passing it in keeps this function pure.
pub fn mutate(
    pod: &PodView,
    namespace: &str,
    sa: &SaConfig,
    container_credentials: bool,
    settings: &Settings,
    jitter: u64,
) -> Mutation {
    let sa_name = pod.service_account();
    let mut warnings: Vec<String> = sa
        .problems
        .iter()
        .map(|p| format!("ServiceAccount {namespace}/{sa_name}: {p}"))
        .collect();

    let mode = if container_credentials {
        Mode::ContainerCredentials
    } else if let Some(arn) = sa.role_arn.as_deref() {
        Mode::WebIdentity { role_arn: arn }
    } else {
        if !sa.bucket_env.is_empty() && sa.problems.is_empty() {
            warnings.push(format!(
                "ServiceAccount {namespace}/{sa_name} names buckets but has no {} annotation: \
                 the pod gets no AWS credentials and no bucket env",
                settings.keys.role_arn
            ));
        }
        let outcome = if warnings.is_empty() {
            Outcome::NotConfigured
        } else {
            Outcome::Invalid
        };
        return Mutation {
            patch: Patch(Vec::new()),
            outcome,
            warnings,
        };
    };

    // Token lifetime: pod annotation > SA annotation > flag.
    let mut expiration = sa.token_expiration.unwrap_or(settings.token_expiration);
    if let Some(v) = pod.annotation(&settings.keys.token_expiration) {
        match parse_expiration(v) {
            Ok(s) => expiration = s,
            Err(e) => warnings.push(format!(
                "pod annotation {}: {e}; using {expiration} seconds",
                settings.keys.token_expiration
            )),
        }
    }
    let skip = skipped_containers(pod, settings, &mut warnings);

    let cc = &settings.container_credentials;
    let (volume_name, mount_path, token_path, audience) = match mode {
        Mode::ContainerCredentials => {
            if expiration == DEFAULT_TOKEN_EXPIRATION {
                let span = (DEFAULT_TOKEN_EXPIRATION - MIN_TOKEN_EXPIRATION + 1) as u64;
                expiration = MIN_TOKEN_EXPIRATION + (jitter % span) as i64;
            }
            (
                cc.volume_name.as_str(),
                cc.mount_path.as_str(),
                cc.token_path.as_str(),
                cc.audience.as_str(),
            )
        }
        Mode::WebIdentity { .. } => (
            TOKEN_VOLUME_NAME,
            settings.token_mount_path.as_str(),
            TOKEN_FILE_NAME,
            sa.audience.as_deref().unwrap_or(&settings.token_audience),
        ),
    };
    let mut token_file = clean_join(mount_path, token_path);
    if pod.is_windows() {
        token_file = format!("C:{}", token_file.replace('/', "\\"));
    }

    let aws_env: Vec<(&str, &str)> = match mode {
        Mode::WebIdentity { role_arn } => vec![
            (ENV_ROLE_ARN, role_arn),
            (ENV_WEB_IDENTITY_TOKEN_FILE, &token_file),
        ],
        Mode::ContainerCredentials => vec![
            (ENV_CONTAINER_CREDENTIALS_FULL_URI, cc.full_uri.as_str()),
            (ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE, &token_file),
        ],
    };
    let plan = ContainerPlan {
        aws_env: &aws_env,
        regional_sts: sa.regional_sts.unwrap_or(settings.sts_regional_endpoint),
        region: settings.aws_default_region.as_deref(),
        bucket_env: &sa.bucket_env,
        volume_name,
        mount_path,
    };

    let mut ops = Vec::new();
    match pod
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume_name)
    {
        None => {
            let volume = json!({
                "name": volume_name,
                "projected": {"sources": [{"serviceAccountToken": {
                    "audience": audience,
                    "expirationSeconds": expiration,
                    "path": token_path,
                }}]},
            });
            push_to_array(
                &mut ops,
                &["spec", "volumes"],
                pod.spec.volumes.is_some(),
                volume,
            );
        }
        // Already injected (webhook reinvocation, or written by hand): keep it.
        Some(v) if v.token_audiences().any(|a| a == audience) => {}
        Some(_) => {
            warnings.push(format!(
                "pod volume {volume_name:?} already exists and is not a ServiceAccount token for audience \
                 {audience:?}: storage-valet injected nothing; rename that volume to get AWS credentials"
            ));
            return Mutation {
                patch: Patch(Vec::new()),
                outcome: Outcome::Conflict,
                warnings,
            };
        }
    }
    if matches!(mode, Mode::ContainerCredentials) {
        add_map_entry(
            &mut ops,
            "labels",
            pod.metadata.labels.as_ref(),
            POD_IDENTITY_LABEL,
            POD_IDENTITY_LABEL_VALUE,
        );
    }
    for (field, list) in [
        ("initContainers", &pod.spec.init_containers),
        ("containers", &pod.spec.containers),
    ] {
        for (i, c) in list.iter().flatten().enumerate() {
            if !skip.iter().any(|s| s == &c.name) {
                plan.apply(&mut ops, field, i, c);
            }
        }
    }
    let outcome = if ops.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Mutated
    };
    record(&mut ops, pod, &mode, &sa.bucket_env);
    Mutation {
        patch: Patch(ops),
        outcome,
        warnings,
    }
}

/// What each container gets.
struct ContainerPlan<'a> {
    aws_env: &'a [(&'a str, &'a str)],
    regional_sts: bool,
    region: Option<&'a str>,
    bucket_env: &'a [(Box<str>, Box<str>)],
    volume_name: &'a str,
    mount_path: &'a str,
}

impl ContainerPlan<'_> {
    fn apply(&self, ops: &mut Vec<PatchOperation>, field: &str, index: usize, c: &ContainerView) {
        let mut env: Vec<(&str, &str)> = Vec::new();
        let credentials_set = self.aws_env.iter().any(|(k, _)| c.has_env(k));
        let region_set = c.has_env(ENV_REGION) || c.has_env(ENV_DEFAULT_REGION);
        let sts_set = c.has_env(ENV_STS_REGIONAL_ENDPOINTS);
        // The peer's rule: a container that already sets its credentials,
        // its region and the STS setting is left alone, mount included.
        let complete = credentials_set && region_set && sts_set;
        if !complete {
            if !sts_set && self.regional_sts {
                env.push((ENV_STS_REGIONAL_ENDPOINTS, STS_REGIONAL));
            }
            if let (false, Some(region)) = (region_set, self.region) {
                env.push((ENV_DEFAULT_REGION, region));
                env.push((ENV_REGION, region));
            }
            // Either variable set by the user means they chose their own
            // credentials: setting only the other one would mix two identities.
            if !credentials_set {
                env.extend_from_slice(self.aws_env);
            }
        }
        for (k, v) in self.bucket_env {
            if !c.has_env(k) {
                env.push((k, v));
            }
        }
        let index = index.to_string();
        if !env.is_empty() {
            let vars = env.iter().map(|(k, v)| json!({"name": k, "value": v}));
            push_all(ops, &["spec", field, &index, "env"], c.env.is_some(), vars);
        }
        if !complete && !c.has_mount(self.volume_name) {
            let mount =
                json!({"name": self.volume_name, "readOnly": true, "mountPath": self.mount_path});
            push_to_array(
                ops,
                &["spec", field, &index, "volumeMounts"],
                c.volume_mounts.is_some(),
                mount,
            );
        }
    }
}

/// Records on the pod what it was given, for `valet audit`.
fn record(
    ops: &mut Vec<PatchOperation>,
    pod: &PodView,
    mode: &Mode<'_>,
    bucket_env: &[(Box<str>, Box<str>)],
) {
    let existing = pod.metadata.annotations.as_ref();
    // After the first `add` creates a missing map, later keys go into it.
    let mut created = false;
    let mut set = |ops: &mut Vec<PatchOperation>, key: &str, value: &str| match existing {
        Some(m) if m.get(key).map(String::as_str) == Some(value) => {}
        None if !created => {
            created = true;
            ops.push(add(&["metadata", "annotations"], json!({ key: value })));
        }
        _ => ops.push(add(&["metadata", "annotations", key], Value::from(value))),
    };
    match mode {
        Mode::WebIdentity { role_arn } => {
            set(ops, ANN_INJECTED_MODE, MODE_WEB_IDENTITY);
            set(ops, ANN_INJECTED_ROLE_ARN, role_arn);
        }
        Mode::ContainerCredentials => set(ops, ANN_INJECTED_MODE, MODE_CONTAINER_CREDENTIALS),
    }
    if !bucket_env.is_empty() {
        let map: Map<String, Value> = bucket_env
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.as_ref())))
            .collect();
        set(
            ops,
            ANN_INJECTED_BUCKET_ENV,
            &Value::Object(map).to_string(),
        );
    }
}

/// Container names of the pod's `skip-containers` annotation (comma-separated;
/// the peer reads it as one CSV record).
fn skipped_containers(
    pod: &PodView,
    settings: &Settings,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let Some(value) = pod.annotation(&settings.keys.skip_containers) else {
        return Vec::new();
    };
    if value.contains('"') {
        warnings.push(format!(
            "pod annotation {}: {value:?} is not a comma-separated list of container names; no container is skipped",
            settings.keys.skip_containers
        ));
        return Vec::new();
    }
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `add` of a map entry under `/metadata/<field>`, creating the map if absent,
/// skipped when the entry already has the value.
fn add_map_entry(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    map: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
    value: &str,
) {
    match map {
        Some(m) if m.get(key).map(String::as_str) == Some(value) => {}
        Some(_) => ops.push(add(&["metadata", field, key], Value::from(value))),
        None => ops.push(add(&["metadata", field], json!({ key: value }))),
    }
}

fn push_to_array(ops: &mut Vec<PatchOperation>, path: &[&str], exists: bool, value: Value) {
    push_all(ops, path, exists, std::iter::once(value));
}

/// Appends to an existing array entry by entry, or adds the array.
fn push_all(
    ops: &mut Vec<PatchOperation>,
    path: &[&str],
    exists: bool,
    values: impl Iterator<Item = Value>,
) {
    if exists {
        for v in values {
            let mut p = PointerBuf::from_tokens(path.iter().copied());
            p.push_back("-");
            ops.push(PatchOperation::Add(AddOperation { path: p, value: v }));
        }
    } else {
        ops.push(add(path, Value::Array(values.collect())));
    }
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

/// Go's `filepath.Join` on Unix: joins and cleans (the peer builds the token
/// path this way, so `/path/` and `/path` give the same file).
pub fn clean_join(dir: &str, file: &str) -> String {
    let joined = format!("{dir}/{file}");
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests;
