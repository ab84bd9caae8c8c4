//! Pod + identity + settings -> RFC 6902 JSON Patch.
//!
//! Pure: the same input gives the same patch, so the webhook and `valet
//! mutate` agree, and mutating a mutated pod changes nothing. The patch only
//! ever *adds*: new keys, or entries appended to existing arrays. It never
//! replaces a list (the peer re-sends whole container arrays; a field our
//! types did not know would be lost that way), never overrides an env var a
//! container already sets, and never removes anything.

use json_patch::Patch;

use crate::consts::*;
use crate::identity::{SaConfig, parse_expiration};
use crate::pod::{ContainerView, PodView};
use crate::settings::Settings;

mod ops;
pub use ops::{AddOp, Path, Text, Tok, Val, write_str as write_json_str};
use ops::{add, add_at, obj};

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
pub struct Mutation<'a> {
    /// The patch, as `add` operations that borrow from the pod, the
    /// ServiceAccount and the settings until they are written.
    pub ops: Vec<AddOp<'a>>,
    pub outcome: Outcome,
    /// Shown to the kubectl user as admission warnings.
    pub warnings: Vec<String>,
}

impl Mutation<'_> {
    /// The patch as a typed RFC 6902 document.
    pub fn patch(&self) -> Patch {
        Patch(self.ops.iter().map(AddOp::to_operation).collect())
    }

    /// Writes the patch as JSON, as `serde_json::to_writer(&self.patch())`
    /// would, without building it first (the webhook's hot path).
    pub fn write_patch(&self, out: &mut Vec<u8>) {
        ops::write_patch(&self.ops, out)
    }
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
pub fn mutate<'a>(
    pod: &PodView<'_>,
    namespace: &str,
    sa: &'a SaConfig,
    container_credentials: bool,
    settings: &'a Settings,
    jitter: u64,
) -> Mutation<'a> {
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
            ops: Vec::new(),
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

    // The token file is the one value built here; every container shares it.
    let token_file: std::sync::Arc<str> = token_file.into();
    let aws_env: [(&str, Text<'a>); 2] = match mode {
        Mode::WebIdentity { role_arn } => [
            (ENV_ROLE_ARN, Text::Borrowed(role_arn)),
            (ENV_WEB_IDENTITY_TOKEN_FILE, Text::Shared(token_file)),
        ],
        Mode::ContainerCredentials => [
            (
                ENV_CONTAINER_CREDENTIALS_FULL_URI,
                Text::Borrowed(cc.full_uri.as_str()),
            ),
            (
                ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE,
                Text::Shared(token_file),
            ),
        ],
    };
    let plan = ContainerPlan {
        aws_env: &aws_env,
        regional_sts: sa.regional_sts.unwrap_or(settings.sts_regional_endpoint),
        // The flag wins, as in the peer; without it the bucket's region,
        // so that SDKs (STS first) find one.
        region: settings
            .aws_default_region
            .as_deref()
            .or(sa.bucket_region.as_deref()),
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
            let token = obj([
                ("audience", Val::from(audience)),
                ("expirationSeconds", Val::Int(expiration)),
                ("path", Val::from(token_path)),
            ]);
            let volume = obj([
                ("name", Val::from(volume_name)),
                (
                    "projected",
                    obj([(
                        "sources",
                        Val::Arr(vec![obj([("serviceAccountToken", token)])]),
                    )]),
                ),
            ]);
            push_to_array(
                &mut ops,
                Path::new(&["spec", "volumes"]),
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
                ops: Vec::new(),
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
            if !skip.contains(&c.name.as_str()) {
                plan.apply(&mut ops, field, i, c);
            }
        }
    }
    let outcome = if ops.is_empty() {
        Outcome::Unchanged
    } else {
        Outcome::Mutated
    };
    record(&mut ops, pod, &mode, sa);
    Mutation {
        ops,
        outcome,
        warnings,
    }
}

/// What each container gets.
struct ContainerPlan<'p, 'a> {
    aws_env: &'p [(&'a str, Text<'a>)],
    regional_sts: bool,
    region: Option<&'a str>,
    bucket_env: &'a [(Box<str>, Box<str>)],
    volume_name: &'a str,
    mount_path: &'a str,
}

impl<'a> ContainerPlan<'_, 'a> {
    fn apply(
        &self,
        ops: &mut Vec<AddOp<'a>>,
        field: &'static str,
        index: usize,
        c: &ContainerView,
    ) {
        let mut env: Vec<Val<'a>> = Vec::with_capacity(6 + self.bucket_env.len());
        let mut var = |name: &'a str, value: Text<'a>| env.push(Val::Env(name, value));
        let credentials_set = self.aws_env.iter().any(|(k, _)| c.has_env(k));
        let region_set = c.has_env(ENV_REGION) || c.has_env(ENV_DEFAULT_REGION);
        let sts_set = c.has_env(ENV_STS_REGIONAL_ENDPOINTS);
        // The peer's rule: a container that already sets its credentials,
        // its region and the STS setting is left alone, mount included.
        let complete = credentials_set && region_set && sts_set;
        if !complete {
            if !sts_set && self.regional_sts {
                var(ENV_STS_REGIONAL_ENDPOINTS, Text::Borrowed(STS_REGIONAL));
            }
            if let (false, Some(region)) = (region_set, self.region) {
                var(ENV_DEFAULT_REGION, Text::Borrowed(region));
                var(ENV_REGION, Text::Borrowed(region));
            }
            // Either variable set by the user means they chose their own
            // credentials: setting only the other one would mix two identities.
            if !credentials_set {
                for (k, v) in self.aws_env {
                    var(k, v.clone());
                }
            }
        }
        for (k, v) in self.bucket_env {
            if !c.has_env(k) {
                var(k, Text::Borrowed(v));
            }
        }
        let container = Path::new(&["spec", field]).with(Tok::Index(index));
        if !env.is_empty() {
            push_all(
                ops,
                container.with(Tok::Key("env")),
                c.env.is_some(),
                env.into_iter(),
            );
        }
        if !complete && !c.has_mount(self.volume_name) {
            let mount = obj([
                ("name", Val::from(self.volume_name)),
                ("readOnly", Val::Bool(true)),
                ("mountPath", Val::from(self.mount_path)),
            ]);
            push_to_array(
                ops,
                container.with(Tok::Key("volumeMounts")),
                c.volume_mounts.is_some(),
                mount,
            );
        }
    }
}

/// Records on the pod what it was given, for `valet audit`.
fn record<'a>(ops: &mut Vec<AddOp<'a>>, pod: &PodView, mode: &Mode<'a>, sa: &'a SaConfig) {
    let existing = pod.metadata.annotations.as_ref();
    // After the first `add` creates a missing map, later keys go into it.
    let mut created = false;
    let mut set = |ops: &mut Vec<AddOp<'a>>, key: &'static str, value: Val<'a>| match existing {
        Some(m) if m.get(key) == Some(value.as_str()) => {}
        None if !created => {
            created = true;
            ops.push(add(&["metadata", "annotations"], obj([(key, value)])));
        }
        _ => ops.push(add(&["metadata", "annotations", key], value)),
    };
    match mode {
        Mode::WebIdentity { role_arn } => {
            set(ops, ANN_INJECTED_MODE, Val::from(MODE_WEB_IDENTITY));
            set(ops, ANN_INJECTED_ROLE_ARN, Val::from(*role_arn));
        }
        Mode::ContainerCredentials => set(
            ops,
            ANN_INJECTED_MODE,
            Val::from(MODE_CONTAINER_CREDENTIALS),
        ),
    }
    if !sa.bucket_env.is_empty() {
        let json = if sa.bucket_env_json.is_empty() {
            // A config built by hand rather than parsed.
            Val::Str(Text::Shared(bucket_env_json(&sa.bucket_env).into()))
        } else {
            Val::from(&*sa.bucket_env_json)
        };
        set(ops, ANN_INJECTED_BUCKET_ENV, json);
    }
}

/// Container names of the pod's `skip-containers` annotation (comma-separated;
/// the peer reads it as one CSV record).
fn skipped_containers<'p>(
    pod: &'p PodView<'_>,
    settings: &Settings,
    warnings: &mut Vec<String>,
) -> Vec<&'p str> {
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
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `add` of a map entry under `/metadata/<field>`, creating the map if absent,
/// skipped when the entry already has the value.
fn add_map_entry<'a>(
    ops: &mut Vec<AddOp<'a>>,
    field: &'static str,
    map: Option<&crate::pod::StrMap<'_>>,
    key: &'static str,
    value: &'static str,
) {
    match map {
        Some(m) if m.get(key) == Some(value) => {}
        Some(_) => ops.push(add(&["metadata", field, key], Val::from(value))),
        None => ops.push(add(&["metadata", field], obj([(key, Val::from(value))]))),
    }
}

fn push_to_array<'a>(ops: &mut Vec<AddOp<'a>>, path: Path<'a>, exists: bool, value: Val<'a>) {
    push_all(ops, path, exists, std::iter::once(value));
}

/// Appends to an existing array entry by entry, or adds the array.
fn push_all<'a>(
    ops: &mut Vec<AddOp<'a>>,
    path: Path<'a>,
    exists: bool,
    values: impl Iterator<Item = Val<'a>>,
) {
    if exists {
        let append = path.with(Tok::End);
        ops.extend(values.map(|v| add_at(append, v)));
    } else {
        ops.push(add_at(path, Val::Arr(values.collect())));
    }
}

/// The recorded bucket env: a JSON object with sorted keys (canonical, as
/// serde_json's map would write it).
pub(crate) fn bucket_env_json(bucket_env: &[(Box<str>, Box<str>)]) -> String {
    let mut sorted: Vec<&(Box<str>, Box<str>)> = bucket_env.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        ops::write_str(&mut out, k);
        out.push(b':');
        ops::write_str(&mut out, v);
    }
    out.push(b'}');
    // Only whole UTF-8 strings and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Go's `filepath.Join` on Unix: joins and cleans (the peer builds the token
/// path this way, so `/path/` and `/path` give the same file).
pub fn clean_join(dir: &str, file: &str) -> String {
    // The usual case, an absolute clean directory and a plain file name,
    // needs no cleaning.
    let plain = |s: &str| !s.is_empty() && s != "." && s != "..";
    if dir.len() > 1
        && dir.starts_with('/')
        && dir[1..].split('/').all(plain)
        && !file.contains('/')
        && plain(file)
    {
        return format!("{dir}/{file}");
    }
    clean_join_general(dir, file)
}

fn clean_join_general(dir: &str, file: &str) -> String {
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
