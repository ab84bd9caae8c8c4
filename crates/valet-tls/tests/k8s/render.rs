//! Documents from YAML files, kustomize directories and the Helm chart.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

/// Every non-empty YAML document in `text`.
pub fn documents(text: &str, origin: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("{origin}: YAML document {i} does not parse"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// What `kustomize build DIR` produces for kustomizations that only list
/// `resources`; anything else in a kustomization.yaml is refused, so this
/// reading is exact.
pub fn kustomize(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
    let k: Value = serde_yaml_ng::from_str(&text).with_context(|| format!("{}", file.display()))?;
    let fields: Vec<&String> = k
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    for field in fields {
        if !["apiVersion", "kind", "resources"].contains(&field.as_str()) {
            bail!(
                "{}: only `resources` is supported here, found `{field}`",
                file.display()
            );
        }
    }
    let mut docs = Vec::new();
    for resource in k["resources"].as_array().into_iter().flatten() {
        let rel = resource.as_str().context("resources entries are paths")?;
        let path = dir.join(rel);
        if path.is_dir() {
            docs.extend(kustomize(&path)?);
        } else {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
            docs.extend(documents(&text, &path.display().to_string())?);
        }
    }
    Ok(docs)
}

/// The real kustomize's build of `dir`: the standalone `kustomize build`,
/// else the one built into `kubectl kustomize`. `None` when the machine has
/// neither; under scripts/test (which installs kustomize and sets
/// VALET_TESTS_REQUIRE_KUSTOMIZE) that is a failure, never a skip.
pub fn real_kustomize(dir: &Path) -> Option<anyhow::Result<Vec<Value>>> {
    for (program, verb) in [("kustomize", "build"), ("kubectl", "kustomize")] {
        let out = match Command::new(program).arg(verb).arg(dir).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Some(Err(anyhow::anyhow!("{program} {verb}: {e}"))),
        };
        if !out.status.success() {
            return Some(Err(anyhow::anyhow!(
                "{program} {verb} {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let origin = format!("{program} {verb}");
        return Some(documents(&String::from_utf8_lossy(&out.stdout), &origin));
    }
    if std::env::var_os("VALET_TESTS_REQUIRE_KUSTOMIZE").is_some() {
        panic!(
            "neither kustomize nor kubectl is on PATH (VALET_TESTS_REQUIRE_KUSTOMIZE is set: scripts/test installs kustomize)"
        )
    }
    None
}

/// Every YAML file under `dir`, recursively (kustomization files excluded).
pub fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(yaml_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Renders the chart with the real Helm v4 SDK (python `helm_python`,
/// from the `helm-python-sdk` package) through tests/render_chart.py.
pub fn helm(chart: &Path, values: &Value) -> anyhow::Result<Vec<Value>> {
    helm_as(chart, values, "storage-valet", "storage-valet")
}

/// Renders as release `release` in `namespace`.
pub fn helm_as(
    chart: &Path,
    values: &Value,
    release: &str,
    namespace: &str,
) -> anyhow::Result<Vec<Value>> {
    let out = helm_script_with("render", chart, values, &[release, namespace])?;
    let rendered: Value =
        serde_json::from_str(&out).context("render_chart.py output is not JSON")?;
    let mut docs = Vec::new();
    let mut templates: Vec<(&String, &Value)> = rendered
        .as_object()
        .context("render_chart.py prints {template: manifest}")?
        .iter()
        .collect();
    templates.sort_by_key(|(k, _)| k.as_str());
    for (template, text) in templates {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        docs.extend(documents(text.as_str().unwrap_or(""), template)?);
    }
    Ok(docs)
}

pub fn helm_notes(chart: &Path, values: &Value) -> anyhow::Result<String> {
    let out = helm_script("render", chart, values)?;
    let rendered: Value = serde_json::from_str(&out)?;
    let notes = rendered
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.ends_with("NOTES.txt")))
        .and_then(|(_, v)| v.as_str())
        .context("no NOTES.txt rendered")?;
    Ok(notes.to_string())
}

/// `helm lint` findings of severity error (3) or warning (2).
pub fn helm_lint(chart: &Path, values: &Value) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&helm_script("lint", chart, values)?)?)
}

pub fn helm_script(mode: &str, chart: &Path, values: &Value) -> anyhow::Result<String> {
    helm_script_with(mode, chart, values, &[])
}

fn helm_script_with(
    mode: &str,
    chart: &Path,
    values: &Value,
    extra: &[&str],
) -> anyhow::Result<String> {
    let script = super::repo_root().join("tests/render_chart.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(mode)
        .arg(chart)
        .arg(values.to_string())
        .args(extra)
        .output()
        .context("python3 must be installed to render the Helm chart")?;
    if !out.status.success() {
        bail!(
            "{} {mode} failed (install the renderer with `pip install helm-python-sdk`):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}
