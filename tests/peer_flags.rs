//! A Deployment of amazon-eks-pod-identity-webhook switching only its image:
//! its command `/webhook`, its arguments as its deploy/ manifests write them,
//! and every flag of its `main.go` (klog's included), on the real binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use support::*;

/// The binary under the name the peer's image runs, `webhook`.
fn as_webhook(dir: &Path) -> PathBuf {
    let link = dir.join("webhook");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_valet"), &link).unwrap();
    link
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every flag of the peer's main.go and of klog's `InitFlags`, with a value a
/// deployment could give, in the forms Go's flag packages accept (`--f=v`,
/// `-f=v`, `-f v`, a bare boolean). The flags only a test must set (ports,
/// certificate files, kubeconfig) are added by `Cluster::spawn`.
const EVERY_PEER_FLAG: &[&str] = &[
    "--in-cluster=false",
    "--kube-api=",
    "--service-name=pod-identity-webhook",
    "-namespace=eks",
    "--tls-secret",
    "pod-identity-webhook",
    "--annotation-prefix=eks.amazonaws.com",
    "-token-audience",
    "sts.amazonaws.com",
    "--token-mount-path=/var/run/secrets/eks.amazonaws.com/serviceaccount",
    "--token-expiration=86400",
    "--aws-default-region=eu-west-1",
    "--sts-regional-endpoint=true",
    "--watch-config-map=false",
    "--compose-role-arn=false",
    "--watch-container-credentials-config=",
    "--container-credentials-audience=pods.eks.amazonaws.com",
    "--container-credentials-token-mount-path=/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
    "--container-credentials-token-volume-name=eks-pod-identity-token",
    "--container-credentials-token-path=eks-pod-identity-token",
    "--container-credentials-full-uri=http://169.254.170.23/v1/credentials",
    "--version=false",
    "--enable-debugging-handlers=false",
    "--service-account-lookup-grace-period=100ms",
    "--resync-period=60s",
    "--tls-min-version=VersionTLS12",
    "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_AES_128_GCM_SHA256",
    // klog
    "-v=4",
    "--vmodule=handler=5",
    "--logtostderr",
    "--alsologtostderr=false",
    "-stderrthreshold=INFO",
    "--log_dir=/tmp",
    "--log_file=/tmp/webhook.log",
    "--log_file_max_size=1800",
    "--log_backtrace_at=",
    "--add_dir_header=false",
    "--skip_headers",
    "--skip_log_headers=false",
    "--one_output=true",
    "--legacy_stderr_threshold_behavior=true",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_deployment_runs_unchanged_as_slash_webhook() {
    let cluster = Cluster::start(&[sa(
        "default",
        "app",
        json!({"eks.amazonaws.com/role-arn": ARN}),
    )])
    .await;
    let bin = tempfile::tempdir().unwrap();
    // deploy/deployment-base.yaml's command, after `/webhook`.
    let args = strings(&[
        "--in-cluster=false",
        "--namespace=default",
        "--service-name=pod-identity-webhook",
        "--annotation-prefix=eks.amazonaws.com",
        "--token-audience=sts.amazonaws.com",
        "--logtostderr",
    ]);
    let hook = cluster.spawn(&as_webhook(bin.path()), &args);
    let c = client(&cluster.ca_pem);
    hook.wait_ready(&c).await;
    let pod = pod("app", json!([]));
    let patch = admit(&c, hook.port, &review("u1", "default", pod.clone())).await;
    let env = env_of(&patched(&pod, &patch));
    assert!(env.contains(&format!("AWS_ROLE_ARN={ARN}")), "{env:?}");
    for flag in [
        "--in-cluster",
        "--namespace",
        "--service-name",
        "--logtostderr",
    ] {
        let log = hook.log_text();
        assert_eq!(hook.accepted_notes(flag), 1, "{flag}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_of_the_peer_main_go_is_accepted() {
    let cluster =
        Cluster::start(&[sa("eks", "app", json!({"eks.amazonaws.com/role-arn": ARN}))]).await;
    let hook = cluster.spawn(
        Path::new(env!("CARGO_BIN_EXE_valet")),
        &[vec!["webhook".to_string()], strings(EVERY_PEER_FLAG)].concat(),
    );
    let c = client(&cluster.ca_pem);
    hook.wait_ready(&c).await;
    let pod = pod("app", json!([]));
    let env = env_of(&patched(
        &pod,
        &admit(&c, hook.port, &review("u1", "eks", pod.clone())).await,
    ));
    // The flags that shape the mutation took effect.
    for want in [
        format!("AWS_ROLE_ARN={ARN}"),
        "AWS_REGION=eu-west-1".into(),
        "AWS_DEFAULT_REGION=eu-west-1".into(),
        "AWS_STS_REGIONAL_ENDPOINTS=regional".into(),
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    for flag in [
        "--resync-period",
        "--v",
        "--vmodule",
        "--log_file",
        "--skip_headers",
        "--stderrthreshold",
    ] {
        let log = hook.log_text();
        assert_eq!(hook.accepted_notes(flag), 1, "{flag}:\n{log}");
    }
}

#[test]
fn behaviour_we_lack_is_refused_at_start_saying_what_to_use() {
    let cases: &[(&[&str], &str)] = &[
        (&["--watch-config-map"], "annotate each ServiceAccount"),
        (&["-compose-role-arn=true"], "write full ARNs"),
        (&["--enable-debugging-handlers=true"], "valet audit"),
        (
            &["--tls-min-version=VersionTLS10"],
            "use one of VersionTLS12, VersionTLS13",
        ),
        (
            &["--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA"],
            "supported: TLS_AES_128_GCM_SHA256,",
        ),
        (
            &["--tls-cipher-suites=TLS_AES_128_GCM_SHA256"],
            "--tls-min-version=VersionTLS13",
        ),
        (&["--kube-api=not a url"], "--kube-api="),
        (&["-stderrthreshold=LOUD"], "not a severity"),
    ];
    for (args, message) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_valet"))
            .arg("webhook")
            .args(*args)
            .args([
                "--tls-cert=/nonexistent/tls.crt",
                "--kubeconfig=/nonexistent",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("/nonexistent"),
            "{args:?} was not refused first: {stderr}"
        );
    }
}

#[test]
fn slash_webhook_is_valet_webhook() {
    let bin = tempfile::tempdir().unwrap();
    let out = Command::new(as_webhook(bin.path()))
        .arg("-version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valet webhook "));
    // Under its own name the binary still wants a subcommand.
    let out = Command::new(env!("CARGO_BIN_EXE_valet"))
        .arg("-version")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A TLS client offering only `suites` and `versions`; true when the
/// handshake with the webhook succeeds.
async fn handshake(
    port: u16,
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: &[rustls::CipherSuite],
) -> bool {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|s| suites.is_empty() || suites.contains(&s.suite()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.is_ok()
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_and_cipher_suites_apply_for_real() {
    use rustls::CipherSuite as S;
    use rustls::version::{TLS12, TLS13};
    let cluster = Cluster::start(&[]).await;
    let c = client(&cluster.ca_pem);
    let valet = Path::new(env!("CARGO_BIN_EXE_valet"));

    let tls13 = cluster.spawn(
        valet,
        &strings(&["webhook", "-tls-min-version", "VersionTLS13"]),
    );
    tls13.wait_ready(&c).await;
    assert!(handshake(tls13.port, &cluster.ca_pem, &[&TLS13], &[]).await);
    assert!(!handshake(tls13.port, &cluster.ca_pem, &[&TLS12], &[]).await);
    drop(tls13);

    // The test CA issues ECDSA keys: ECDHE_ECDSA suites are the ones in play.
    let one_suite = cluster.spawn(
        valet,
        &strings(&[
            "webhook",
            "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ]),
    );
    one_suite.wait_ready(&c).await;
    // (version, the one suite the client offers, handshake succeeds)
    let cases: [(&'static rustls::SupportedProtocolVersion, S, bool); 4] = [
        (&TLS12, S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, true),
        (&TLS12, S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false),
        (
            &TLS12,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            false,
        ),
        // As in Go, TLS 1.3 keeps its suites whatever the list says.
        (&TLS13, S::TLS13_CHACHA20_POLY1305_SHA256, true),
    ];
    for (version, suite, ok) in cases {
        let got = handshake(one_suite.port, &cluster.ca_pem, &[version], &[suite]).await;
        assert_eq!(got, ok, "{suite:?}");
    }
}

#[test]
fn the_image_ships_the_binary_as_slash_webhook_too() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let copies: Vec<(&str, &str)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY --from=build "))
        .filter_map(|l| l.trim().split_once(' '))
        .collect();
    let source_of = |dest: &str| copies.iter().find(|(_, d)| *d == dest).map(|(s, _)| *s);
    assert!(
        source_of("/webhook").is_some(),
        "no /webhook in the image: {copies:?}"
    );
    assert_eq!(source_of("/webhook"), source_of("/usr/local/bin/valet"));
}
