//! Starting the real `valet webhook` with a command line written the way a
//! Deployment writes it, against the in-process API server.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use valet_testkit::apiserver::ApiServer;

pub const ARN: &str = "arn:aws:iam::222222222222:role/storage-valet/team-a-app";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An API server with ServiceAccounts, its kubeconfig, a CA and a serving
/// pair for `localhost` in a temporary directory.
pub struct Cluster {
    pub api: ApiServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub ca_pem: String,
}

impl Cluster {
    pub async fn start(sas: &[Value]) -> Cluster {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let api = ApiServer::start().await;
        for sa in sas {
            api.insert(sa.clone()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.write_kubeconfig(dir.path()).unwrap();
        let ca = valet_tls::generate_ca("test CA", Duration::from_secs(3600)).unwrap();
        let pair =
            valet_tls::generate_serving(&ca, &["localhost".to_string()], Duration::from_secs(3600))
                .unwrap();
        std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &pair.key_pem).unwrap();
        Cluster {
            api,
            kubeconfig,
            ca_pem: ca.cert_pem,
            dir,
        }
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `program ARGS` plus the flags only a test must set (ports, files),
    /// themselves in Go's single-dash form as a peer Deployment may write
    /// them. Retries on other ports when one was taken before binding.
    pub fn spawn(&self, program: &Path, args: &[String]) -> Webhook {
        for _ in 0..5 {
            let (port, metrics_port) = (free_port(), free_port());
            let log = tempfile::NamedTempFile::new().unwrap();
            let child = Command::new(program)
                .args(args)
                .args([
                    format!("-port={port}"),
                    "-metrics-port".into(),
                    metrics_port.to_string(),
                    format!("-tls-cert={}", self.file("tls.crt")),
                    format!("-tls-key={}", self.file("tls.key")),
                    format!("-kubeconfig={}", self.kubeconfig.display()),
                    "--bind-address=127.0.0.1".into(),
                ])
                // JSON logs: the tests look for fields.
                .env("VALET_LOG_FORMAT", "json")
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap();
            let mut hook = Webhook {
                child,
                port,
                metrics_port,
                log,
            };
            if hook.bound() {
                return hook;
            }
        }
        panic!("valet webhook did not start (5 attempts)");
    }
}

pub struct Webhook {
    pub child: Child,
    pub port: u16,
    pub metrics_port: u16,
    pub log: tempfile::NamedTempFile,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    /// Both ports bound and the process still running.
    fn bound(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let up = [self.port, self.metrics_port]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Log lines saying that peer flag `flag` was accepted without effect.
    pub fn accepted_notes(&self, flag: &str) -> usize {
        let field = format!("\"flag\":\"{flag}\"");
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"message\":\"peer flag\"") && l.contains(&field))
            .count()
    }

    /// Waits for `/readyz` (certificate loaded, ServiceAccount cache synced).
    pub async fn wait_ready(&self, c: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(r) = c
                .get(format!("https://localhost:{}/readyz", self.port))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "webhook not ready within 90s; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The body of `/metrics`.
    pub async fn scrape(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn sa(ns: &str, name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations}})
}

/// A pod-create AdmissionReview as kube-apiserver sends it.
pub fn review(uid: &str, ns: &str, pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false
        }
    })
}

pub fn pod(sa: &str, env: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "app-", "labels": {"app": "app"}},
        "spec": {"serviceAccountName": sa,
            "containers": [{"name": "app", "image": "app:1", "env": env}]}})
}

/// POSTs a review to `/mutate` and returns the JSON Patch (`[]` when none).
pub async fn admit(c: &reqwest::Client, port: u16, body: &Value) -> Value {
    use base64::Engine;
    let r = c
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let resp: Value = r.json().await.unwrap();
    assert_eq!(resp["response"]["allowed"], true, "{resp}");
    match resp["response"]["patch"].as_str() {
        Some(b64) => serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap(),
        None => json!([]),
    }
}

/// The pod as the API server stores it after applying the patch.
pub fn patched(pod: &Value, patch: &Value) -> Value {
    let mut pod = pod.clone();
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    pod
}

/// The env of the pod's first container, as `NAME=VALUE` strings.
pub fn env_of(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some(format!("{}={}", e["name"].as_str()?, e["value"].as_str()?)))
        .collect()
}

/// `valet broker apply ARGS`, the real binary, as a pipeline runs it: with
/// static keys of its own (moto's default account, which reaches a bucket
/// account through its provisioning role) and nothing from the caller's AWS
/// or broker environment. Waited for off the test's runtime, where the
/// issuer and any proxy run.
pub async fn broker_apply(args: Vec<std::ffi::OsString>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_valet"));
    cmd.args(["broker", "apply"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "AKIDPIPELINE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env_remove("AWS_PROFILE")
        .env_remove("VALET_BROKER_CONFIG");
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}
