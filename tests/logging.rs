//! What operators read: logs piped to a file or a log pipeline (no colour,
//! JSON when asked, the level as asked), the fatal error of a command said
//! once, and the shell completions.

use std::process::{Command, Output};

fn valet(args: &[&str]) -> Output {
    // Output() pipes stderr: it is not a terminal, as in a pod.
    Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("VALET_LOG_FORMAT")
        .env_remove("VALET_LOG_LEVEL")
        .output()
        .unwrap_or_else(|e| panic!("cannot run valet: {e}"))
}

/// A webhook that logs a start-up line (an accepted peer flag), then fails
/// on a certificate file that does not exist.
const FAILING_WEBHOOK: [&str; 6] = [
    "webhook",
    "--in-cluster",
    "--tls-cert",
    "/nonexistent/tls.crt",
    "--tls-key",
    "/nonexistent/tls.key",
];

fn run_failing_webhook(log_flags: &[&str]) -> String {
    let mut args = log_flags.to_vec();
    args.extend(FAILING_WEBHOOK);
    let out = valet(&args);
    assert!(
        !out.status.success(),
        "the webhook started without a certificate"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn piped_text_logs_have_no_colour_and_the_error_once() {
    let err = run_failing_webhook(&[]);
    assert!(err.contains("peer flag"), "no start-up log line:\n{err}");
    assert!(
        !err.contains('\x1b'),
        "escape codes in piped logs:\n{err:?}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("valet: error: "), "{err}");
    assert_eq!(
        last.matches("cannot read certificate file /nonexistent/tls.crt")
            .count(),
        1,
        "the cause is repeated: {last}"
    );
    assert_eq!(
        last.matches("No such file or directory").count(),
        1,
        "{last}"
    );
    assert!(last.contains("--tls-cert"), "no fix hint: {last}");
}

#[test]
fn json_logs_are_json_to_the_last_line() {
    let err = run_failing_webhook(&["--log-format", "json"]);
    let records: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(records.iter().any(|r| r["flag"] == "--in-cluster"), "{err}");
    let fatal = records.last().expect("no log record");
    assert_eq!(fatal["level"], "ERROR", "{fatal}");
    assert_eq!(fatal["message"], "fatal", "{fatal}");
    let error = fatal["error"].as_str().unwrap_or_default();
    assert_eq!(
        error.matches("cannot read certificate file").count(),
        1,
        "{error}"
    );
}

#[test]
fn log_level_filters_and_a_bad_one_is_refused() {
    let err = run_failing_webhook(&["--log-level", "warn"]);
    assert!(
        !err.contains("peer flag"),
        "info line shown at warn:\n{err}"
    );
    assert!(err.contains("valet: error: "), "{err}");

    let out = valet(&["--log-level", "loud", "crd"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-level"), "{err}");
    assert!(err.contains("info"), "no example of a valid level: {err}");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = valet(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["valet", "webhook", "broker", "log-format"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    // The bash script at least parses.
    let out = valet(&["completions", "bash"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("valet.bash");
    std::fs::write(&path, &out.stdout).expect("write completions");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = valet(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is refused");
}
