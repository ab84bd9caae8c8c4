//! The real `valet webhook` binary over TLS (HTTP/2 and HTTP/1.1), fed by the
//! in-process API server, answering real AdmissionReview bodies.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use valet_testkit::apiserver::ApiServer;

const ARN: &str = "arn:aws:iam::222222222222:role/storage-valet/prod/team-a-app";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Certs {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca = valet_tls::generate_ca("test CA", Duration::from_secs(3600)).unwrap();
        let certs = Certs {
            dir,
            ca_pem: ca.cert_pem.clone(),
        };
        certs.write_pair(&ca);
        certs
    }
    fn write_pair(&self, ca: &valet_tls::CaBundle) {
        let pair =
            valet_tls::generate_serving(ca, &["localhost".to_string()], Duration::from_secs(3600))
                .unwrap();
        // Write then rename, as cert-manager and the kubelet do: never a half file.
        for (name, text) in [("tls.key", &pair.key_pem), ("tls.crt", &pair.cert_pem)] {
            let tmp = self.dir.path().join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Webhook {
    child: Child,
    port: u16,
    metrics_port: u16,
    /// Its stderr, shown when it does not become ready.
    log: tempfile::NamedTempFile,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `valet webhook` on two free ports. A port found free can be
/// taken before the webhook binds it (by another test's connection, say):
/// the webhook then exits at once, and is started again on other ports.
fn start_webhook(kubeconfig: &Path, certs: &Certs, extra: &[&str]) -> Webhook {
    for _ in 0..5 {
        let (port, metrics_port) = (free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_valet"));
        command
            .args(["webhook", "--bind-address", "127.0.0.1"])
            .args([
                "--port",
                &port.to_string(),
                "--metrics-port",
                &metrics_port.to_string(),
            ])
            .arg("--tls-cert")
            .arg(certs.path("tls.crt"))
            .arg("--tls-key")
            .arg(certs.path("tls.key"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            // The peer's arguments, as a deployment of it passes them.
            .args([
                "--in-cluster=false",
                "--logtostderr",
                "-v=4",
                "--aws-default-region=eu-west-1",
            ])
            .args(extra);
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command
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
        // Both ports are bound before anything else can fail slowly.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if hook.child.try_wait().unwrap().is_some() {
                break;
            }
            let bound = [port, metrics_port]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if bound {
                std::thread::sleep(Duration::from_millis(100));
                if hook.child.try_wait().unwrap().is_none() {
                    return hook;
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("valet webhook did not start (5 attempts)");
}

/// An API server holding some ServiceAccounts, a kubeconfig for it, and
/// serving certificates: what every test starts a webhook against.
struct Cluster {
    api: ApiServer,
    kubeconfig: PathBuf,
    certs: Certs,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(sas: &[Value]) -> Cluster {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let api = ApiServer::start().await;
        for sa in sas {
            api.insert(sa.clone()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.write_kubeconfig(dir.path()).unwrap();
        Cluster {
            api,
            kubeconfig,
            certs: Certs::new(),
            _dir: dir,
        }
    }

    fn webhook(&self, extra: &[&str]) -> Webhook {
        start_webhook(&self.kubeconfig, &self.certs, extra)
    }
}

fn client(ca_pem: &str, http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10));
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

impl Webhook {
    /// Waits for `/readyz` (certificate loaded, cache synced).
    async fn wait_ready(&self, c: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
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
                "webhook not ready within 60s; its log:\n{}",
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The AdmissionReview a kube-apiserver sends for a pod created by a
/// ReplicaSet (shape of the Kubernetes documentation's example).
fn review(uid: &str, sa: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "2b8f8a3e-0000-4000-8000-000000000001", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "app-7d9f-", "namespace": "team-a", "labels": {"app": "app"}},
                "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "app:1",
                    "resources": {}, "terminationMessagePath": "/dev/termination-log"}]}},
            "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn sa(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": "team-a", "annotations": annotations}})
}

async fn admit(c: &reqwest::Client, port: u16, body: &Value) -> Value {
    let r = c
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn patch_of(resp: &Value) -> Option<Value> {
    let b64 = resp["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_end_to_end() {
    let cluster = Cluster::start(&[
        sa("app", json!({"eks.amazonaws.com/role-arn": ARN, "storage-valet.dev/bucket": "acme-media/team-a/"})),
        sa("plain", json!({})),
        sa("broken", json!({"eks.amazonaws.com/role-arn": "s3-reader"})),
    ])
    .await;
    let (api, certs) = (&cluster.api, &cluster.certs);
    let hook = cluster.webhook(&["--service-account-lookup-grace-period=3s"]);
    let h2 = client(&certs.ca_pem, false);
    let h1 = client(&certs.ca_pem, true);
    hook.wait_ready(&h2).await;

    // Annotated SA, over HTTP/2 and HTTP/1.1: uid echoed, base64 JSON patch.
    for (c, version) in [
        (&h2, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        let r = c
            .get(format!("https://localhost:{}/healthz", hook.port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), version);
        let resp = admit(c, hook.port, &review("uid-1", "app")).await;
        assert_eq!(resp["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(resp["response"]["uid"], "uid-1");
        assert_eq!(resp["response"]["allowed"], true);
        assert_eq!(resp["response"]["patchType"], "JSONPatch");
        let text = patch_of(&resp).unwrap().to_string();
        assert!(
            text.contains(ARN) && text.contains("S3_BUCKET") && text.contains("aws-iam-token"),
            "{text}"
        );
        assert!(text.contains("eu-west-1"));
    }

    // Unannotated SA: allowed, no patch, no warning.
    let resp = admit(&h2, hook.port, &review("uid-2", "plain")).await;
    assert!(resp["response"].get("patch").is_none() && resp["response"].get("warnings").is_none());

    // Invalid annotation: not mutated, a warning kubectl shows.
    let resp = admit(&h2, hook.port, &review("uid-3", "broken")).await;
    assert!(resp["response"].get("patch").is_none());
    let warning = resp["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("eks.amazonaws.com/role-arn") && warning.contains("not a role ARN"),
        "{warning}"
    );

    // SA annotated after start-up: visible as soon as the watch delivers it.
    api.upsert(sa("plain", json!({"eks.amazonaws.com/role-arn": ARN})))
        .unwrap();
    eventually("annotation change reaches the cache", async || {
        patch_of(&admit(&h2, hook.port, &review("uid-4", "plain")).await).is_some()
    })
    .await;

    // SA created just before the pod: the grace period waits for the watch.
    api.insert(sa("fresh", json!({"eks.amazonaws.com/role-arn": ARN})))
        .unwrap();
    let resp = admit(&h2, hook.port, &review("uid-5", "fresh")).await;
    assert!(patch_of(&resp).is_some(), "fresh SA not seen: {resp}");

    // SA removed: pods are no longer mutated.
    api.delete("v1", "ServiceAccount", "team-a", "app").unwrap();
    eventually("deleted SA leaves the cache", async || {
        patch_of(&admit(&h2, hook.port, &review("uid-6", "app")).await).is_none()
    })
    .await;

    // Bad input: every path answers, none kills the server.
    let url = format!("https://localhost:{}/mutate", hook.port);
    let post = |body: Vec<u8>, ct: &'static str| {
        h2.post(&url).header("content-type", ct).body(body).send()
    };
    let r = post(b"{not json".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("not an AdmissionReview")
    );
    let r = post(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(vec![b' '; 4 * 1024 * 1024], "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = post(b"{}".to_vec(), "text/plain").await.unwrap();
    assert_eq!(r.status(), 415);

    // Metrics: outcomes, latency, cache and certificate expiry.
    let m = reqwest::get(format!("http://127.0.0.1:{}/metrics", hook.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "storage_valet_admission_requests_total{outcome=\"mutated\"}",
        "storage_valet_admission_requests_total{outcome=\"skipped\"}",
        "storage_valet_admission_requests_total{outcome=\"error\"}",
        "storage_valet_admission_duration_seconds_bucket",
        "storage_valet_serviceaccount_cache_size",
        "storage_valet_serviceaccount_cache_misses_total",
        "storage_valet_tls_certificate_expiration_timestamp_seconds",
        "storage_valet_build_info{version=\"",
    ] {
        assert!(m.contains(needle), "metric {needle} missing:\n{m}");
    }
    // Every outcome's series exists from start-up: the counts must have moved.
    for outcome in ["mutated", "skipped", "error"] {
        let series = format!("storage_valet_admission_requests_total{{outcome=\"{outcome}\"}} ");
        let count: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no value for {series}:\n{m}"));
        assert!(
            count >= 1.0,
            "{series}is {count} after requests of that outcome"
        );
    }

    // API server down after sync: an unknown SA cannot be read; allowed with a warning.
    api.set_down(true).await;
    let resp = admit(&h2, hook.port, &review("uid-7", "unknown")).await;
    assert_eq!(resp["response"]["allowed"], true);
    assert!(
        resp["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("could not read ServiceAccount team-a/unknown")
    );
    // ...while cached SAs keep working.
    assert!(patch_of(&admit(&h2, hook.port, &review("uid-8", "fresh")).await).is_some());
    api.set_down(false).await;
}

/// A replica: the same pod as [`review`] with a realistic env, as a
/// ReplicaSet sends them (byte for byte the same object, its own uid).
fn replica(uid: &str, namespace: &str, operation: &str) -> Value {
    let mut r = review(uid, "app");
    r["request"]["namespace"] = json!(namespace);
    r["request"]["operation"] = json!(operation);
    let env: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("SETTING_{i}"), "value": "x".repeat(40)}))
        .collect();
    r["request"]["object"]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    r["request"]["object"]["spec"]["containers"][0]["env"] = json!(env);
    r
}

/// Every replica is decided afresh: the same answer with its own uid, and a
/// changed ServiceAccount reaches the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_decided_afresh_and_see_sa_changes() {
    let cluster = Cluster::start(&[sa("app", json!({"eks.amazonaws.com/role-arn": ARN}))]).await;
    let api = &cluster.api;
    let hook = cluster.webhook(&[]);
    let c = client(&cluster.certs.ca_pem, false);
    hook.wait_ready(&c).await;

    let first = admit(&c, hook.port, &replica("r-1", "team-a", "CREATE")).await;
    assert!(patch_of(&first).unwrap().to_string().contains(ARN));
    for uid in ["r-2", "r-3"] {
        let next = admit(&c, hook.port, &replica(uid, "team-a", "CREATE")).await;
        assert_eq!(next["response"]["uid"], uid);
        let mut same = next.clone();
        same["response"]["uid"] = json!("r-1");
        assert_eq!(same, first, "the same pod, the same answer");
    }

    // The same pod in another namespace (whose SA does not exist), or not
    // a CREATE, gets no patch.
    let other = admit(&c, hook.port, &replica("r-3b", "team-b", "CREATE")).await;
    assert!(patch_of(&other).is_none(), "{other}");
    let update = admit(&c, hook.port, &replica("r-4", "team-a", "UPDATE")).await;
    assert!(patch_of(&update).is_none(), "{update}");

    // A changed annotation reaches the next replica.
    let new_arn = "arn:aws:iam::111122223333:role/other";
    api.upsert(sa("app", json!({"eks.amazonaws.com/role-arn": new_arn})))
        .unwrap();
    eventually("the new role reaches replicas", async || {
        let r = admit(&c, hook.port, &replica("r-5", "team-a", "CREATE")).await;
        let text = patch_of(&r).unwrap().to_string();
        assert!(text.contains(new_arn) != text.contains(ARN), "{text}");
        text.contains(new_arn)
    })
    .await;

    // Annotation removed: no patch from then on.
    api.upsert(sa("app", json!({}))).unwrap();
    eventually("the removal reaches replicas", async || {
        patch_of(&admit(&c, hook.port, &replica("r-7", "team-a", "CREATE")).await).is_none()
    })
    .await;
    let mutated = metric(
        hook.metrics_port,
        "storage_valet_admission_requests_total{outcome=\"mutated\"}",
    )
    .await;
    assert!(mutated >= 4.0, "{mutated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_on_lookup_failure_and_sigterm_drains() {
    let cluster = Cluster::start(&[]).await;
    let (api, certs) = (&cluster.api, &cluster.certs);
    let mut hook = cluster.webhook(&[
        "--on-lookup-failure=deny",
        "--service-account-lookup-grace-period=2s",
    ]);
    let c = client(&certs.ca_pem, false);
    hook.wait_ready(&c).await;

    api.set_down(true).await;
    let resp = admit(&c, hook.port, &review("uid-d", "unknown")).await;
    assert_eq!(resp["response"]["allowed"], false);
    assert!(
        resp["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("retry")
    );
    api.set_down(false).await;

    // A request in flight (waiting out the grace period for an SA that
    // never comes) completes although SIGTERM arrives meanwhile.
    let port = hook.port;
    let c2 = c.clone();
    let in_flight = tokio::spawn(async move { admit(&c2, port, &review("uid-t", "never")).await });
    // The second cache miss is this request, now waiting in the handler.
    let metrics_port = hook.metrics_port;
    eventually("request in flight", async || {
        metric(
            metrics_port,
            "storage_valet_serviceaccount_cache_misses_total",
        )
        .await
            >= 2.0
    })
    .await;
    let pid = hook.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let resp = in_flight.await.unwrap();
    assert_eq!(resp["response"]["uid"], "uid-t");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = hook.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook did not exit within 15s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_nothing() {
    let cluster = Cluster::start(&[sa("app", json!({"eks.amazonaws.com/role-arn": ARN}))]).await;
    let certs = &cluster.certs;
    let hook = cluster.webhook(&[]);
    let new_ca = valet_tls::generate_ca("rotated CA", Duration::from_secs(3600)).unwrap();
    let both = format!("{}{}", certs.ca_pem, new_ca.cert_pem);
    let c = client(&both, false);
    hook.wait_ready(&c).await;

    // Load: new connections each time (so every request is a handshake)
    // while the pair is rotated to one signed by a new CA.
    let port = hook.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, both) = (stop.clone(), both.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let c = client(&both, w % 2 == 0);
                match c
                    .post(format!("https://localhost:{port}/mutate"))
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&review("uid-r", "app")).unwrap())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    certs.write_pair(&new_ca);
    // Only a client trusting the new CA alone proves the new pair is served.
    let only_new = client(&new_ca.cert_pem, false);
    eventually("new certificate served", async || {
        only_new
            .get(format!("https://localhost:{port}/healthz"))
            .send()
            .await
            .is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed += f;
    }
    println!("rotation under load: {ok} requests ok, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0);
}

/// One series of the webhook's `/metrics`, 0 when absent.
async fn metric(metrics_port: u16, series: &str) -> f64 {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await else {
        return 0.0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_credentials_config_reloads_and_refuses_bad_content() {
    let cluster = Cluster::start(&[sa("app", json!({}))]).await;
    // As a ConfigMap volume: the file is replaced by rename, never edited.
    let cdir = tempfile::tempdir().unwrap();
    let config = cdir.path().join("config.json");
    let write = |text: &str| {
        let tmp = cdir.path().join(".config.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    write(r#"{"identities":[]}"#);
    let hook = cluster.webhook(&[&format!(
        "--watch-container-credentials-config={}",
        config.display()
    )]);
    let c = client(&cluster.certs.ca_pem, false);
    hook.wait_ready(&c).await;
    assert!(patch_of(&admit(&c, hook.port, &review("uid-c1", "app")).await).is_none());

    write(r#"{"identities":[{"namespace":"team-a","serviceAccount":"app"}]}"#);
    let uses_cc = async || {
        patch_of(&admit(&c, hook.port, &review("uid-c2", "app")).await)
            .is_some_and(|p| p.to_string().contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
    };
    eventually("new container credentials config applied", uses_cc).await;

    // Bad content is refused: the previous identities keep applying.
    write("{not json");
    eventually("bad config refused", async || {
        metric(
            hook.metrics_port,
            "storage_valet_container_credentials_config_refused_total",
        )
        .await
            >= 1.0
    })
    .await;
    assert!(uses_cc().await);
    write(r#"{"identities":[]}"#);
    eventually("emptied config applied", async || {
        patch_of(&admit(&c, hook.port, &review("uid-c3", "app")).await).is_none()
    })
    .await;
}

#[test]
fn peer_version_flag_prints_and_exits() {
    let out = Command::new(env!("CARGO_BIN_EXE_valet"))
        .args(["webhook", "--version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valet webhook "));
}
