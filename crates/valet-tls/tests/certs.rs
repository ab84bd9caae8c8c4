//! `valet certs` end to end: files, renewal, CA rotation, and the Secret +
//! caBundle path against the in-process API server.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use clap::Parser;
use common::{client_config, handshake, verify_for_names};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, WebhookClientConfig,
};
use rustls::version::TLS13;
use valet_testkit::apiserver::ApiServer;
use valet_tls::plan::Action;
use valet_tls::{CertsArgs, CertsError, ReloadingResolver, server_config, service_dns_names};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    certs: CertsArgs,
}

fn args(extra: &[&str]) -> CertsArgs {
    let argv = [
        "valet-certs",
        "--service",
        "valet-webhook",
        "--namespace",
        "storage-valet",
    ]
    .iter()
    .chain(extra)
    .copied();
    Cli::parse_from(argv).certs
}

fn names() -> Vec<String> {
    service_dns_names("valet-webhook", "storage-valet")
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode(b64: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(b64)?,
    )?)
}

#[tokio::test]
async fn directory_mode_creates_keeps_then_renews_with_the_same_ca() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("certs");
    let dir_arg = dir.to_str().unwrap_or_default().to_string();

    let first = valet_tls::cli::execute(&args(&[
        "--out-dir",
        &dir_arg,
        "--days",
        "10",
        "--renew-before",
        "5",
    ]))
    .await?;
    assert_eq!(
        (first.ca, first.serving),
        (Action::Created, Action::Created)
    );
    let (ca1, leaf1) = (read(&dir, "ca.crt"), read(&dir, "tls.crt"));
    verify_for_names(&ca1, &leaf1, &names())?;
    assert_eq!(decode(&first.ca_bundle)?, ca1);
    for key in ["tls.key", "ca.key"] {
        let mode = std::fs::metadata(dir.join(key))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key} must be private");
    }

    // Same policy again: nothing changes, nothing is rewritten.
    let again = valet_tls::cli::execute(&args(&[
        "--out-dir",
        &dir_arg,
        "--days",
        "10",
        "--renew-before",
        "5",
    ]))
    .await?;
    assert_eq!((again.ca, again.serving), (Action::Kept, Action::Kept));
    assert!(
        again.files.is_empty(),
        "kept certificates are not rewritten"
    );
    assert_eq!(read(&dir, "tls.crt"), leaf1);

    // The certificate now expires within the renewal window: renewed,
    // signed by the same CA, so the caBundle stays what it was.
    let renewed = valet_tls::cli::execute(&args(&[
        "--out-dir",
        &dir_arg,
        "--days",
        "40",
        "--renew-before",
        "30",
    ]))
    .await?;
    assert_eq!(
        (renewed.ca, renewed.serving),
        (Action::Kept, Action::Renewed)
    );
    assert!(
        renewed.reasons.iter().any(|r| r.contains("renewal window")),
        "{:?}",
        renewed.reasons
    );
    let leaf2 = read(&dir, "tls.crt");
    assert_ne!(leaf2, leaf1);
    assert_eq!(read(&dir, "ca.crt"), ca1);
    verify_for_names(&ca1, &leaf2, &names())?;
    // And the webhook can serve the renewed pair straight from the directory.
    ReloadingResolver::from_files(dir.join("tls.crt"), dir.join("tls.key"))?;
    Ok(())
}

#[tokio::test]
async fn a_short_lived_ca_is_rotated_and_the_old_one_stays_trusted() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir_arg = tmp.path().to_str().unwrap_or_default().to_string();
    valet_tls::cli::execute(&args(&[
        "--out-dir",
        &dir_arg,
        "--days",
        "10",
        "--renew-before",
        "2",
        "--ca-days",
        "20",
    ]))
    .await?;
    let (old_ca, old_leaf) = (read(tmp.path(), "ca.crt"), read(tmp.path(), "tls.crt"));

    // A 30-day certificate would outlive the 20-day CA: the CA is replaced.
    let rotated = valet_tls::cli::execute(&args(&[
        "--out-dir",
        &dir_arg,
        "--days",
        "30",
        "--renew-before",
        "25",
    ]))
    .await?;
    assert_eq!(
        (rotated.ca, rotated.serving),
        (Action::Renewed, Action::Renewed)
    );
    let bundle = read(tmp.path(), "ca.crt");
    assert!(
        bundle.contains(&old_ca),
        "the previous CA stays in the trust bundle"
    );
    assert_eq!(decode(&rotated.ca_bundle)?, bundle);
    // Pods still serving the old certificate and pods with the new one are
    // both trusted by the new caBundle: no window without a valid chain.
    verify_for_names(&bundle, &old_leaf, &names())?;
    verify_for_names(&bundle, &read(tmp.path(), "tls.crt"), &names())?;
    Ok(())
}

#[tokio::test]
async fn renew_window_must_be_shorter_than_validity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir_arg = tmp.path().to_str().unwrap_or_default().to_string();
    let err = valet_tls::cli::execute(&args(&[
        "--out-dir",
        &dir_arg,
        "--days",
        "10",
        "--renew-before",
        "10",
    ]))
    .await;
    assert!(
        matches!(err, Err(CertsError::RenewWindow { .. })),
        "{err:?}"
    );
}

fn webhook_config(name: &str, hooks: &[&str]) -> MutatingWebhookConfiguration {
    let mut config = MutatingWebhookConfiguration::default();
    config.metadata.name = Some(name.into());
    config.webhooks = Some(
        hooks
            .iter()
            .map(|hook| MutatingWebhook {
                name: (*hook).into(),
                admission_review_versions: vec!["v1".into()],
                side_effects: "None".into(),
                client_config: WebhookClientConfig::default(),
                ..Default::default()
            })
            .collect(),
    );
    config
}

fn secret_field(server: &ApiServer, name: &str, key: &str) -> anyhow::Result<String> {
    let secret = server
        .get("v1", "Secret", "storage-valet", name)
        .ok_or_else(|| anyhow::anyhow!("Secret {name} missing"))?;
    let b64 = secret["data"][key]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("Secret {name} has no {key}"))?;
    decode(b64)
}

fn ca_bundles(server: &ApiServer, name: &str) -> Vec<Option<String>> {
    let config = server
        .get(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            "",
            name,
        )
        .unwrap_or_default();
    config["webhooks"]
        .as_array()
        .map(|hooks| {
            hooks
                .iter()
                .map(|h| h["clientConfig"]["caBundle"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn secret_mode_patches_every_webhook_and_serves_the_pair() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let tmp = tempfile::tempdir()?;
    let kubeconfig: PathBuf = server.write_kubeconfig(tmp.path())?;
    let kubeconfig = kubeconfig.to_str().unwrap_or_default().to_string();
    server.insert(webhook_config(
        "storage-valet",
        &["pods.storage-valet.dev", "pods-reinvoke.storage-valet.dev"],
    ))?;
    let flags = |days: &'static str, renew: &'static str| {
        args(&[
            "--secret",
            "valet-webhook-tls",
            "--webhook-config",
            "storage-valet",
            "--kubeconfig",
            &kubeconfig,
            "--days",
            days,
            "--renew-before",
            renew,
        ])
    };

    // A conflicting writer on the first update: retried, not fatal.
    server.fail_next(
        "PUT",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        409,
    );
    let first = valet_tls::cli::execute(&flags("10", "5")).await?;
    assert_eq!(
        (first.ca, first.serving),
        (Action::Created, Action::Created)
    );
    assert_eq!(first.patched_webhooks, 2);
    assert!(
        first.files.is_empty(),
        "--secret without --out-dir writes no files"
    );
    let puts = server
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path
                    .contains("mutatingwebhookconfigurations/storage-valet")
        })
        .count();
    assert_eq!(puts, 2, "one refused with 409, one retried");

    let secret = server
        .get("v1", "Secret", "storage-valet", "valet-webhook-tls")
        .ok_or_else(|| anyhow::anyhow!("serving Secret missing"))?;
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let (leaf, key, bundle) = (
        secret_field(&server, "valet-webhook-tls", "tls.crt")?,
        secret_field(&server, "valet-webhook-tls", "tls.key")?,
        secret_field(&server, "valet-webhook-tls", "ca.crt")?,
    );
    assert!(
        secret["data"].get("ca.key").is_none(),
        "the CA key never goes to the mounted Secret"
    );
    assert!(secret_field(&server, "valet-webhook-tls-ca", "ca.key")?.contains("PRIVATE KEY"));
    assert_eq!(
        ca_bundles(&server, "storage-valet"),
        vec![Some(first.ca_bundle.clone()); 2]
    );
    verify_for_names(&bundle, &leaf, &names())?;

    // What the API server does: trust the caBundle, dial the Service name,
    // speak h2 to a server running on the Secret's pair.
    let mounted = tempfile::tempdir()?;
    std::fs::write(mounted.path().join("tls.crt"), &leaf)?;
    std::fs::write(mounted.path().join("tls.key"), &key)?;
    let resolver = ReloadingResolver::from_files(
        mounted.path().join("tls.crt"),
        mounted.path().join("tls.key"),
    )?;
    let served = handshake(
        Arc::new(server_config(resolver)?),
        client_config(&decode(&first.ca_bundle)?, &[&TLS13], &[b"h2"])?,
        "valet-webhook.storage-valet.svc",
    )
    .await?;
    assert_eq!(served.alpn.as_deref(), Some(&b"h2"[..]));

    // Second run: everything kept, no writes at all.
    let writes = server.write_count();
    let again = valet_tls::cli::execute(&flags("10", "5")).await?;
    assert_eq!(
        (again.ca, again.serving, again.patched_webhooks),
        (Action::Kept, Action::Kept, 0)
    );
    assert_eq!(server.write_count(), writes, "a no-op run writes nothing");

    // Renewal: new leaf in the Secret, same CA, caBundle untouched.
    let renewed = valet_tls::cli::execute(&flags("40", "30")).await?;
    assert_eq!(
        (renewed.ca, renewed.serving),
        (Action::Kept, Action::Renewed)
    );
    assert_eq!(renewed.patched_webhooks, 0);
    assert_eq!(renewed.ca_bundle, first.ca_bundle);
    let new_leaf = secret_field(&server, "valet-webhook-tls", "tls.crt")?;
    assert_ne!(new_leaf, leaf);
    verify_for_names(&bundle, &new_leaf, &names())?;
    Ok(())
}

#[tokio::test]
async fn a_missing_webhook_configuration_is_a_clear_error() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let tmp = tempfile::tempdir()?;
    let kubeconfig = server.write_kubeconfig(tmp.path())?;
    let out = tmp.path().join("certs");
    let result = valet_tls::cli::execute(&args(&[
        "--out-dir",
        out.to_str().unwrap_or_default(),
        "--webhook-config",
        "nope",
        "--kubeconfig",
        kubeconfig.to_str().unwrap_or_default(),
    ]))
    .await;
    match result {
        Err(e @ CertsError::NoWebhookConfig { .. }) => {
            assert!(e.to_string().contains("apply the manifests first"), "{e}");
        }
        other => panic!("expected NoWebhookConfig, got {other:?}"),
    }
    Ok(())
}
