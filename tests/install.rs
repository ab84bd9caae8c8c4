//! The install path through the real `valet` binary: `valet certs` into a
//! directory (create, keep, renew), and every `valet` command line written
//! in the manifests and the chart parses with the binary's own flags.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

fn valet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run valet: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Standard base64 (the caBundle printed on stdout), decoded without padding tricks.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("not base64: {c}"));
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn verify(bundle_pem: &str, leaf_pem: &str, name: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn valet_certs_creates_keeps_and_renews_in_a_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("certs");
    let dir_arg = dir.to_str().expect("utf-8 temp path");
    let base = [
        "certs",
        "--service",
        "storage-valet-webhook",
        "--namespace",
        "storage-valet",
        "--out-dir",
        dir_arg,
    ];

    let first = valet(&[&base[..], &["--days", "10", "--renew-before", "5"]].concat());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let (ca, leaf) = (read(&dir, "ca.crt"), read(&dir, "tls.crt"));
    assert_eq!(
        text(&base64_decode(text(&first.stdout).trim())),
        ca,
        "stdout is the caBundle"
    );
    for name in [
        "storage-valet-webhook",
        "storage-valet-webhook.storage-valet",
        "storage-valet-webhook.storage-valet.svc",
        "storage-valet-webhook.storage-valet.svc.cluster.local",
    ] {
        verify(&ca, &leaf, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify(&ca, &leaf, "storage-valet-webhook.other.svc").is_err());
    assert!(
        text(&first.stderr).contains("created"),
        "{}",
        text(&first.stderr)
    );

    let again = valet(&[&base[..], &["--days", "10", "--renew-before", "5"]].concat());
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("serving certificate: kept"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(read(&dir, "tls.crt"), leaf);

    let renewed = valet(&[&base[..], &["--days", "40", "--renew-before", "30"]].concat());
    assert!(renewed.status.success(), "{}", text(&renewed.stderr));
    assert!(
        text(&renewed.stderr).contains("serving certificate: renewed"),
        "{}",
        text(&renewed.stderr)
    );
    assert_ne!(read(&dir, "tls.crt"), leaf);
    assert_eq!(
        read(&dir, "ca.crt"),
        ca,
        "renewal keeps the CA, so the caBundle stays valid"
    );
    assert_eq!(text(&renewed.stdout), text(&first.stdout));
}

#[test]
fn valet_certs_replaces_a_broken_key_instead_of_failing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir_arg = tmp.path().to_str().expect("utf-8 temp path");
    let base = [
        "certs",
        "--service",
        "svc",
        "--namespace",
        "ns",
        "--out-dir",
        dir_arg,
    ];
    assert!(valet(&base).status.success());
    std::fs::write(tmp.path().join("tls.key"), "garbage").expect("write");
    let out = valet(&base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("renewed"),
        "{}",
        text(&out.stderr)
    );
    verify(
        &read(tmp.path(), "ca.crt"),
        &read(tmp.path(), "tls.crt"),
        "svc.ns.svc",
    )
    .expect("valid again");
}

/// `valet ARGS --help` fails on an unknown flag or a bad value before the
/// help is printed: every command line in the install must pass.
fn assert_args_parse(origin: &str, args: &[String]) {
    let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
    with_help.push("--help");
    let out = valet(&with_help);
    assert!(
        out.status.success(),
        "{origin}: `valet {}` is refused by the binary:\n{}",
        args.join(" "),
        text(&out.stderr)
    );
}

fn container_args(doc: &serde_json::Value) -> Vec<Vec<String>> {
    let spec = match doc["kind"].as_str() {
        Some("Deployment") | Some("Job") => &doc["spec"]["template"]["spec"],
        Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => return Vec::new(),
    };
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn every_certs_command_line_in_the_manifests_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for file in ["manifests/webhook/certs.yaml"] {
        let yaml =
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
            let doc: serde_json::Value =
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            for args in container_args(&doc) {
                assert_eq!(args.first().map(String::as_str), Some("certs"));
                assert_args_parse(file, &args);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2, "the Job and the CronJob");
}
