//! Peer conformance: the fixtures of amazon-eks-pod-identity-webhook, run
//! through the real `valet mutate` binary (the webhook's code path), compared
//! as tests/conformance/eks-pod-identity-webhook/README.md says.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

const TESTING: &str = "testing.eks.amazonaws.com/";

/// The peer's tests mock their random source; this draw reproduces the
/// lifetime their container-credentials fixtures expect (600 + 78600 = 79200).
const PEER_MOCKED_JITTER: &str = "78600";

fn fixtures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".pod.yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][format!("{TESTING}{key}")].as_str()
}

/// Runs one fixture; returns an error message describing the difference.
fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap();
    let fixture: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let tmp = tempfile::tempdir().unwrap();

    // The input pod: testing annotations stripped, namespace/SA forced.
    let mut pod = fixture.clone();
    let anns = pod["metadata"]["annotations"].as_object_mut().unwrap();
    anns.retain(|k, _| !k.starts_with(TESTING));
    pod["metadata"]["namespace"] = json!("default");
    pod["spec"]["serviceAccountName"] = json!("default");

    let mut sa_ann = Map::new();
    let mut set = |key: &str, v: Option<&str>| {
        if let Some(v) = v {
            sa_ann.insert(format!("eks.amazonaws.com/{key}"), json!(v));
        }
    };
    set("role-arn", annotation(&fixture, "serviceAccount/roleArn"));
    set("audience", annotation(&fixture, "serviceAccount/audience"));
    set(
        "sts-regional-endpoints",
        annotation(&fixture, "serviceAccount/sts-regional-endpoints")
            .or(annotation(&fixture, "handler/injectSTS")),
    );
    set(
        "token-expiration",
        annotation(&fixture, "serviceAccount/token-expiration")
            .or(annotation(&fixture, "handler/expiration")),
    );
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "default", "annotations": sa_ann}});

    let pod_file = tmp.path().join("pod.yaml");
    let sa_file = tmp.path().join("sa.yaml");
    std::fs::write(&pod_file, serde_json::to_string(&pod).unwrap()).unwrap();
    std::fs::write(&sa_file, serde_json::to_string(&sa).unwrap()).unwrap();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_valet"));
    cmd.args([
        "mutate",
        "--output",
        "patch",
        "--token-jitter",
        PEER_MOCKED_JITTER,
    ])
    .arg("--pod")
    .arg(&pod_file)
    .arg("--service-account")
    .arg(&sa_file);
    let flag = |cmd: &mut Command, name: &str, key: &str| {
        if let Some(v) = annotation(&fixture, key) {
            cmd.arg(format!("--{name}={v}"));
        }
    };
    flag(&mut cmd, "aws-default-region", "handler/region");
    flag(&mut cmd, "token-mount-path", "handler/mountPath");
    if let Some(uri) = annotation(&fixture, "containercredentials/uri") {
        let cfg = tmp.path().join("cc.json");
        std::fs::write(
            &cfg,
            r#"{"identities":[{"namespace":"default","serviceAccount":"default"}]}"#,
        )
        .unwrap();
        cmd.arg("--watch-container-credentials-config").arg(&cfg);
        cmd.arg(format!("--container-credentials-full-uri={uri}"));
        flag(
            &mut cmd,
            "container-credentials-audience",
            "containercredentials/audience",
        );
        flag(
            &mut cmd,
            "container-credentials-token-mount-path",
            "containercredentials/mountPath",
        );
        flag(
            &mut cmd,
            "container-credentials-token-volume-name",
            "containercredentials/volumeName",
        );
        flag(
            &mut cmd,
            "container-credentials-token-path",
            "containercredentials/tokenPath",
        );
    }
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "valet mutate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let ours: json_patch::Patch =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("our patch: {e}"))?;
    let expected: Option<json_patch::Patch> = match annotation(&fixture, "expectedPatch") {
        None | Some("null") => None,
        Some(p) => Some(serde_json::from_str(p).map_err(|e| format!("expected patch: {e}"))?),
    };

    let mut expected_pod = pod.clone();
    if let Some(p) = &expected {
        json_patch::patch(&mut expected_pod, p)
            .map_err(|e| format!("expected patch does not apply: {e}"))?;
    }
    let mut our_pod = pod.clone();
    json_patch::patch(&mut our_pod, &ours).map_err(|e| format!("our patch does not apply: {e}"))?;
    let (e, o) = (normalize(expected_pod), normalize(our_pod));
    if e != o {
        return Err(format!(
            "pods differ\nexpected: {}\nours:     {}",
            serde_json::to_string(&e).unwrap(),
            serde_json::to_string(&o).unwrap()
        ));
    }
    Ok(())
}

/// Drops nulls and empty objects/arrays, sorts name-keyed lists, and ignores
/// our own annotations and labels.
fn normalize(v: Value) -> Value {
    fn go(key: &str, v: Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let m: Map<String, Value> = m
                    .into_iter()
                    .filter(|(k, _)| {
                        !((key == "annotations" || key == "labels")
                            && k.starts_with("storage-valet.dev/"))
                    })
                    .filter_map(|(k, v)| go(&k, v).map(|v| (k, v)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) => {
                let mut a: Vec<Value> = a.into_iter().filter_map(|v| go("", v)).collect();
                if matches!(key, "env" | "volumes" | "volumeMounts") {
                    a.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
                }
                (!a.is_empty()).then_some(Value::Array(a))
            }
            other => Some(other),
        }
    }
    go("", v).unwrap_or(Value::Null)
}

fn run_dir(dir: &Path, min: usize) {
    let files = fixtures(dir);
    assert!(
        files.len() >= min,
        "expected at least {min} fixtures in {}",
        dir.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    println!(
        "conformance: {} fixtures in {}, {} failed",
        files.len(),
        dir.display(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn peer_fixtures_in_repo() {
    run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/eks-pod-identity-webhook"),
        16,
    );
}

/// The shared copy beside the repository (CI has it): run it too, so an
/// updated fixture set is checked as it is.
#[test]
fn peer_fixtures_shared() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/conformance/eks-pod-identity-webhook");
    if shared.is_dir() {
        run_dir(&shared, 1);
    } else {
        println!(
            "conformance: no shared fixtures at {} (fresh clone without shared/)",
            shared.display()
        );
    }
}
