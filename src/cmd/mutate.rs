//! `valet mutate`: the webhook's exact decision on files, no cluster needed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;
use valet_core::mutate::Outcome;
use valet_core::out;
use valet_core::settings::{ContainerCredentialsIdentities, Settings};
use valet_core::{PodView, SaConfig, mutate};
use valet_webhook::MutationFlags;

#[derive(clap::Args)]
pub struct MutateArgs {
    /// Pod manifest (YAML or JSON); `-` reads standard input.
    #[arg(long)]
    pod: String,
    /// ServiceAccount manifest (YAML or JSON) the pod runs as.
    #[arg(long)]
    service_account: PathBuf,
    /// What to print: the mutated pod (YAML) or the RFC 6902 JSON Patch.
    #[arg(long, short, value_enum, default_value = "pod")]
    output: Output,
    /// The random draw for container-credentials token lifetimes (the
    /// webhook draws it per pod); fixed here so a dry run is reproducible.
    #[arg(long, hide = true, default_value_t = DRY_RUN_JITTER)]
    token_jitter: u64,
    #[command(flatten)]
    flags: MutationFlags,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Pod,
    Patch,
}

/// The webhook draws container-credentials token lifetimes from
/// [600, 86400]; the dry run shows the upper bound, deterministically.
const DRY_RUN_JITTER: u64 = 85_800;

pub fn run(args: MutateArgs) -> anyhow::Result<ExitCode> {
    let (pod_name, pod_text) = read_input(&args.pod)?;
    let mut pod_value = parse_manifest(&pod_name, &pod_text, "Pod")?;
    let sa_name = args.service_account.display().to_string();
    let sa_text = std::fs::read_to_string(&args.service_account)
        .with_context(|| format!("{sa_name}: cannot read"))?;
    let sa_value = parse_manifest(&sa_name, &sa_text, "ServiceAccount")?;

    let pod = PodView::deserialize(pod_value.clone())
        .with_context(|| format!("{pod_name}: not a valid Pod"))?;
    let annotations: BTreeMap<String, String> = match sa_value.pointer("/metadata/annotations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(a) => serde_json::from_value(a.clone()).with_context(|| {
            format!("{sa_name}: metadata.annotations must map strings to strings")
        })?,
    };
    let sa_meta_name = sa_value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if sa_meta_name != pod.service_account() {
        bail!(
            "{sa_name}: ServiceAccount is {sa_meta_name:?} but the pod runs as {:?} (spec.serviceAccountName)",
            pod.service_account()
        );
    }
    let namespace = pod
        .metadata
        .namespace
        .as_deref()
        .or(sa_value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str))
        .unwrap_or("default")
        .to_string();
    if let Some(sa_ns) = sa_value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        && sa_ns != namespace
    {
        bail!(
            "{sa_name}: ServiceAccount is in namespace {sa_ns:?} but the pod is in {namespace:?}"
        );
    }

    let settings = Settings::from(&args.flags);
    let cc = container_credentials(&args.flags.watch_container_credentials_config)?;
    let sa = SaConfig::from_annotations(&annotations, &settings.keys);
    let uses_cc = cc.contains(&namespace, pod.service_account());
    let mutation = mutate(&pod, &namespace, &sa, uses_cc, &settings, args.token_jitter);

    if mutation.outcome == Outcome::Invalid || !sa.problems.is_empty() {
        for problem in sa.problems.iter() {
            eprintln!("valet: error: {sa_name}: {problem}");
        }
        for w in mutation
            .warnings
            .iter()
            .filter(|w| !w.starts_with("ServiceAccount "))
        {
            eprintln!("valet: error: {w}");
        }
        return Ok(ExitCode::FAILURE);
    }
    for w in &mutation.warnings {
        eprintln!("valet: warning: {w}");
    }
    match args.output {
        Output::Patch => out::print(&format!("{}\n", serde_json::to_string(&mutation.patch())?))?,
        Output::Pod => {
            json_patch::patch(&mut pod_value, &mutation.patch()).with_context(|| {
                format!("{pod_name}: the patch does not apply (please report this bug)")
            })?;
            out::print(&serde_yaml_ng::to_string(&pod_value)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(path: &str) -> anyhow::Result<(String, String)> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("<stdin>: cannot read")?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{path}: cannot read"))?;
    Ok((path.to_string(), text))
}

/// Parses one YAML (or JSON) document and checks its kind.
fn parse_manifest(name: &str, text: &str, kind: &str) -> anyhow::Result<Value> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(doc)
            .with_context(|| format!("{name}: not valid YAML"))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    let value = match docs.len() {
        1 => docs.remove(0),
        0 => bail!("{name}: empty, expected one {kind}"),
        n => bail!("{name}: holds {n} documents, expected one {kind}"),
    };
    let found = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if found != kind {
        bail!("{name}: kind is {found:?}, expected {kind}");
    }
    if value.get("apiVersion").and_then(Value::as_str) != Some("v1") {
        bail!("{name}: apiVersion must be v1 for a {kind}");
    }
    Ok(value)
}

fn container_credentials(path: &str) -> anyhow::Result<ContainerCredentialsIdentities> {
    if path.is_empty() {
        return Ok(ContainerCredentialsIdentities::default());
    }
    let bytes = std::fs::read(Path::new(path)).with_context(|| format!("{path}: cannot read"))?;
    ContainerCredentialsIdentities::parse(&bytes).with_context(|| path.to_string())
}
