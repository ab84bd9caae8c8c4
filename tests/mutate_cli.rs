//! `valet mutate` as a user runs it: files in, pod or patch out, and a
//! one-line error naming the file for every kind of bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn valet(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const SA: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: team-a\n  annotations:\n    eks.amazonaws.com/role-arn: arn:aws:iam::111122223333:role/app\n";
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: team-a\nspec:\n  serviceAccountName: app\n  containers:\n  - name: app\n    image: x\n";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn example_from_the_readme_mutates() {
    let o = valet(
        &[
            "mutate",
            "--pod",
            "examples/pod.yaml",
            "--service-account",
            "examples/serviceaccount.yaml",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let pod: serde_json::Value = serde_yaml_ng::from_slice(&o.stdout).unwrap();
    let env = &pod["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "S3_BUCKET_MEDIA" && e["value"] == "acme-media")
    );
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "AWS_ROLE_ARN")
    );
}

#[test]
fn patch_output_from_stdin_and_empty_patch_when_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let sa = write(dir.path(), "sa.yaml", SA);
    let o = valet(
        &[
            "mutate",
            "--pod",
            "-",
            "--service-account",
            sa.to_str().unwrap(),
            "-o",
            "patch",
        ],
        Some(POD),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let patch: json_patch::Patch = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!patch.0.is_empty());

    // Apply it, then mutate the result: nothing left to do.
    let mut pod: serde_json::Value = serde_yaml_ng::from_str(POD).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    let o = valet(
        &[
            "mutate",
            "--pod",
            "-",
            "--service-account",
            sa.to_str().unwrap(),
            "-o",
            "patch",
        ],
        Some(&serde_json::to_string(&pod).unwrap()),
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}

#[test]
fn bad_input_is_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let sa = write(dir.path(), "sa.yaml", SA);
    let pod = write(dir.path(), "pod.yaml", POD);
    let cases: Vec<(String, String, &str)> = vec![
        (
            dir.path().join("missing.yaml").display().to_string(),
            sa.display().to_string(),
            "missing.yaml: cannot read",
        ),
        (
            write(dir.path(), "bad.yaml", "kind: Pod\n  spec: [")
                .display()
                .to_string(),
            sa.display().to_string(),
            "bad.yaml: not valid YAML",
        ),
        (
            write(
                dir.path(),
                "deploy.yaml",
                "apiVersion: apps/v1\nkind: Deployment\n",
            )
            .display()
            .to_string(),
            sa.display().to_string(),
            "deploy.yaml: kind is \"Deployment\", expected Pod",
        ),
        (
            write(dir.path(), "two.yaml", &format!("{POD}---\n{POD}"))
                .display()
                .to_string(),
            sa.display().to_string(),
            "two.yaml: holds 2 documents",
        ),
        (
            write(
                dir.path(),
                "badspec.yaml",
                "apiVersion: v1\nkind: Pod\nspec:\n  containers: 5\n",
            )
            .display()
            .to_string(),
            sa.display().to_string(),
            "badspec.yaml: not a valid Pod",
        ),
        (
            pod.display().to_string(),
            write(
                dir.path(),
                "other.yaml",
                &SA.replace("name: app", "name: other"),
            )
            .display()
            .to_string(),
            "the pod runs as \"app\"",
        ),
        (
            pod.display().to_string(),
            write(
                dir.path(),
                "badarn.yaml",
                &SA.replace("arn:aws:iam::111122223333:role/app", "my-role"),
            )
            .display()
            .to_string(),
            "badarn.yaml: annotation eks.amazonaws.com/role-arn: \"my-role\" is not a role ARN",
        ),
    ];
    for (pod, sa, want) in cases {
        let o = valet(&["mutate", "--pod", &pod, "--service-account", &sa], None);
        let err = stderr(&o);
        assert!(!o.status.success(), "{want}: succeeded");
        assert!(err.contains(want), "want {want:?} in {err:?}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
        assert!(o.stdout.is_empty(), "no output on error");
    }
}

#[test]
fn peer_flags_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sa = write(dir.path(), "sa.yaml", SA);
    let pod = write(dir.path(), "pod.yaml", POD);
    let o = valet(
        &[
            "mutate",
            "--pod",
            pod.to_str().unwrap(),
            "--service-account",
            sa.to_str().unwrap(),
            "--annotation-prefix=eks.amazonaws.com",
            "--token-audience=sts.amazonaws.com",
            "--token-mount-path=/var/run/secrets/eks.amazonaws.com/serviceaccount",
            "--token-expiration=3600",
            "--aws-default-region=eu-west-1",
            "--sts-regional-endpoint",
            "-o",
            "patch",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("\"expirationSeconds\":3600") && text.contains("AWS_STS_REGIONAL_ENDPOINTS"),
        "{text}"
    );
    assert!(text.contains("eu-west-1"));
}

/// `valet mutate ... | head`: the reader leaves early. The command ends
/// quietly with its own exit code instead of panicking on the closed pipe.
#[test]
fn a_reader_that_leaves_early_ends_output_quietly() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    // Well past a pipe's 64 KiB buffer, so the write meets the closed pipe.
    let containers: String = (0..3000)
        .map(|i| format!("  - name: c{i}\n    image: x\n"))
        .collect();
    let pod = POD.replace("  - name: app\n    image: x\n", &containers);
    let pod = write(dir.path(), "pod.yaml", &pod);
    let sa = write(dir.path(), "sa.yaml", SA);
    let mut child = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["mutate", "--pod"])
        .arg(&pod)
        .arg("--service-account")
        .arg(&sa)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here, as `head` exits.
    let o = child.wait_with_output().unwrap();
    assert!(first.starts_with(b"apiVersion"), "{first:?}");
    assert!(o.status.success(), "{:?} {}", o.status, stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
