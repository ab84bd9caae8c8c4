//! The chart's Grafana dashboard queries only metrics the real binaries
//! export: every panel's metric names are looked up in a scrape of `valet
//! webhook` (Webhook row) and `valet broker` (Broker row), both run against
//! the in-process API server.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use valet_testkit::apiserver::ApiServer;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed when the test ends, its stderr kept for failures.
struct Running {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_valet"))
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("valet runs");
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample names a scrape can hold, from its `# TYPE` lines (a family
/// with no series yet, such as a counter nothing has counted, still has one).
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

/// Waits (generously: two busy cores) for a scrape of `port` to hold `needle`.
async fn scrape(port: u16, needle: &str, process: &mut Running) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(resp) = reqwest::get(&url).await
            && let Ok(text) = resp.text().await
            && text.contains(needle)
        {
            return text;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!(
                "valet exited ({status}) before serving metrics:\n{}",
                process.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {needle} on {url} after 90 s; log:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Metric names in a PromQL expression: identifiers followed by a selector,
/// a range or the end, minus functions, keywords and label names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut depth_braces = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '{' {
            depth_braces += 1;
        } else if c == '}' {
            depth_braces -= 1;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
        } else if depth_braces == 0 && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            if word.starts_with("storage_valet_") && next != Some('(') {
                names.insert(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    names
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/storage-valet/dashboards/storage-valet.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard JSON");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// (row title, panel title, metric names) for every panel.
fn panels(dash: &Value) -> Vec<(String, String, BTreeSet<String>)> {
    let mut row = String::new();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        if p["type"] == "row" {
            row = title;
            continue;
        }
        let names: BTreeSet<String> = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .flat_map(metric_names)
            .collect();
        out.push((row.clone(), title, names));
    }
    out
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(storage_valet_x_bucket{namespace="storage_valet_no", a="b"}[5m]))) - storage_valet_y"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["storage_valet_x_bucket", "storage_valet_y"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_queries_a_metric_the_binaries_export() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = api.write_kubeconfig(dir.path()).expect("kubeconfig");
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path");

    let ca = valet_tls::generate_ca("test CA", Duration::from_secs(3600)).expect("CA");
    let pair =
        valet_tls::generate_serving(&ca, &["localhost".to_string()], Duration::from_secs(3600))
            .expect("serving pair");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pair.cert_pem).expect("write cert");
    std::fs::write(&key, &pair.key_pem).expect("write key");

    let webhook_metrics = free_port();
    let mut webhook = Running::start(&[
        "webhook",
        "--bind-address=127.0.0.1",
        &format!("--port={}", free_port()),
        &format!("--metrics-port={webhook_metrics}"),
        &format!("--tls-cert={}", cert.display()),
        &format!("--tls-key={}", key.display()),
        &format!("--kubeconfig={kubeconfig}"),
    ]);
    let config = dir.path().join("broker.yaml");
    std::fs::write(&config, "clusterName: test\nregion: eu-west-1\n").expect("broker config");
    let broker_metrics = free_port();
    let mut broker = Running::start(&[
        "broker",
        &format!("--config={}", config.display()),
        "--oidc-issuer=https://oidc.example.com/cluster",
        &format!("--kubeconfig={kubeconfig}"),
        &format!("--metrics-port={broker_metrics}"),
        "--identity=dashboard-test",
    ]);

    let webhook_scrape = scrape(webhook_metrics, "storage_valet_build_info", &mut webhook).await;
    // The leader gauge turns 1 once the broker holds the Lease: its metrics are all registered.
    let broker_scrape = scrape(broker_metrics, "storage_valet_broker_leader 1", &mut broker).await;
    let by_row = [
        ("Webhook", exported(&webhook_scrape)),
        ("Broker", exported(&broker_scrape)),
    ];

    let mut checked = 0;
    for (row, panel, names) in panels(&dashboard()) {
        let (_, names_exported) = by_row
            .iter()
            .find(|(r, _)| *r == row)
            .unwrap_or_else(|| panic!("panel {panel:?} is in row {row:?}, not Webhook or Broker"));
        assert!(
            !names.is_empty(),
            "panel {panel:?} queries no storage-valet metric"
        );
        for name in names {
            assert!(
                names_exported.contains(&name),
                "panel {panel:?} ({row}) queries {name}, which the {row} binary does not export:\n{names_exported:?}"
            );
            println!("{row:8} {panel:40} {name}");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} panel metrics checked");
}
