//! Every subcommand is reachable through the real binary, and the CRD that
//! `valet crd` prints is the one the manifests and the chart install.

use std::process::Command;

fn valet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn crd_matches_the_manifests_and_the_chart() {
    use serde::Deserialize;
    let out = valet(&["crd"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = printed
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "bucketaccesses.storage-valet.dev",
            "bucketaccesspolicies.storage-valet.dev"
        ]
    );
    for (crd, files) in printed.iter().zip([
        [
            "manifests/base/crd.yaml",
            "charts/storage-valet/crds/bucketaccesses.yaml",
        ],
        [
            "manifests/base/bucketaccesspolicy-crd.yaml",
            "charts/storage-valet/crds/bucketaccesspolicies.yaml",
        ],
    ]) {
        for file in files {
            let text = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file),
            )
            .unwrap();
            let installed: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(
                installed["spec"], crd["spec"],
                "{file} is stale: regenerate with `valet crd`"
            );
        }
    }
}

#[test]
fn every_subcommand_has_help() {
    for cmd in [
        &["webhook", "--help"][..],
        &["mutate", "--help"],
        &["broker", "--help"],
        &["broker", "apply", "--help"],
        &["trust", "check", "--help"],
        &["certs", "--help"],
        &["crd", "--help"],
        &["audit", "--help"],
    ] {
        let out = valet(cmd);
        assert!(
            out.status.success(),
            "valet {cmd:?} --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: valet"));
    }
}

#[test]
fn unknown_flags_fail_with_usage() {
    let out = valet(&["webhook", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn audit_of_an_unreachable_cluster_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let out = valet(&["audit", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("valet: error:") && !err.contains("panicked"),
        "{err}"
    );
}
