//! Every subcommand finds the cluster the same way (crates/valet-kube):
//! `--kubeconfig` or `KUBECONFIG`, a colon-separated list merged as kubectl
//! merges it, and the old `VALET_KUBECONFIG` still honoured. The real binary
//! against the in-process API server.

use std::path::Path;
use std::process::Output;

use valet_testkit::apiserver::ApiServer;

/// `valet ARGS` with only the given kubeconfig environment (and a HOME
/// without ~/.kube/config, so nothing is found by accident).
async fn valet(args: &[&str], env: &[(&str, &str)], home: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_valet"));
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env_remove("VALET_KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run valet")
}

/// A kubeconfig with a cluster and context of its own but no
/// current-context: alone it selects nothing.
fn decoy(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("decoy");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: elsewhere\n  cluster:\n    server: http://127.0.0.1:9\n\
         contexts:\n- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: nobody\n\
         users:\n- name: nobody\n  user: {}\n",
    )
    .expect("write decoy kubeconfig");
    path
}

fn assert_audit_ran(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the audit printed its JSON report");
    assert!(report.get("findings").is_some(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colon_list_whose_second_file_holds_the_context() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let real = api.write_kubeconfig(dir.path()).expect("kubeconfig");
    let list = format!("{}:{}", decoy(dir.path()).display(), real.display());

    // The decoy alone has no current context: the list is what works.
    let alone = valet(
        &["audit", "-o", "json"],
        &[("KUBECONFIG", &decoy(dir.path()).display().to_string())],
        dir.path(),
    )
    .await;
    assert_eq!(alone.status.code(), Some(2));

    let via_env = valet(
        &["audit", "-o", "json"],
        &[("KUBECONFIG", &list)],
        dir.path(),
    )
    .await;
    assert_audit_ran(&via_env);
    let via_flag = valet(
        &["audit", "-o", "json", "--kubeconfig", &list],
        &[],
        dir.path(),
    )
    .await;
    assert_audit_ran(&via_flag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valet_kubeconfig_still_works_and_says_once_it_is_deprecated() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let real = api.write_kubeconfig(dir.path()).expect("kubeconfig");
    let out = valet(
        &["audit", "-o", "json"],
        &[("VALET_KUBECONFIG", &real.display().to_string())],
        dir.path(),
    )
    .await;
    assert_audit_ran(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("deprecated").count(),
        1,
        "said once: {stderr}"
    );
    assert!(stderr.contains("VALET_KUBECONFIG"), "{stderr}");

    // KUBECONFIG wins over the old name, and says the old one was ignored.
    let out = valet(
        &["audit", "-o", "json"],
        &[
            ("KUBECONFIG", &real.display().to_string()),
            ("VALET_KUBECONFIG", "/nonexistent/old"),
        ],
        dir.path(),
    )
    .await;
    assert_audit_ran(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_kubeconfig_path_names_the_flag_on_every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = "/nonexistent/kubeconfig";
    for argv in [
        &["audit", "--kubeconfig", bad][..],
        &[
            "trust",
            "check",
            "-n",
            "ns",
            "--service-account",
            "sa",
            "--kubeconfig",
            bad,
        ],
        &[
            "certs",
            "--namespace",
            "ns",
            "--secret",
            "tls",
            "--kubeconfig",
            bad,
        ],
    ] {
        let out = valet(argv, &[], dir.path()).await;
        // `trust check` reports it as its first link, on stdout.
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{argv:?}: {stderr}");
        assert!(
            stderr.contains(bad) && stderr.contains("--kubeconfig") && !stderr.contains("panicked"),
            "{argv:?}: {stderr}"
        );
        assert_eq!(
            stderr.matches("No such file").count(),
            1,
            "{argv:?}: the cause said once: {stderr}"
        );
    }
}
