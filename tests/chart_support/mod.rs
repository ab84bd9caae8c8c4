//! The Helm chart rendered by the real Helm SDK (tests/render_chart.py).

// Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(mode: &str, values: &Value) -> Result<String, String> {
    let out = Command::new("python3")
        .arg(root().join("tests/render_chart.py"))
        .arg(mode)
        .arg(root().join("charts/storage-valet"))
        .arg(values.to_string())
        .output()
        .expect("python3 (scripts/test installs helm-python-sdk)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Template path -> rendered text, or Helm's error (schema or `fail`).
pub fn try_render(values: &Value) -> Result<serde_json::Map<String, Value>, String> {
    let text = run("render", values)?;
    Ok(serde_json::from_str(&text).expect("render_chart.py prints a JSON object"))
}

pub fn render(values: &Value) -> serde_json::Map<String, Value> {
    try_render(values).unwrap_or_else(|e| panic!("helm render failed: {e}"))
}

/// The one document of `kind` named `name` in the rendered chart.
pub fn object(rendered: &serde_json::Map<String, Value>, kind: &str, name: &str) -> Value {
    rendered
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .filter_map(|(_, text)| text.as_str())
        .flat_map(|text| {
            // A document that does not parse ends that file's documents
            // (the deserializer would yield the same error again).
            serde_yaml_ng::Deserializer::from_str(text)
                .map(<Value as serde::Deserialize>::deserialize)
                .map_while(Result::ok)
        })
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the chart"))
}
