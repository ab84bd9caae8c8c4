//! `valet audit` against the in-process API server: every finding, every
//! output, exit codes, pagination, scope, and an unreachable server.

mod support;

use std::collections::BTreeSet;
use std::process::ExitCode;

use serde_json::Value;
use support::{ROLE_OLD, ROLE_WEB, args, forbid_team_b_secrets, load_fixture};
use valet_audit::cli::{Output, audit, client, exit_code, render};
use valet_audit::report::Report;
use valet_audit::{Kind, Severity};
use valet_testkit::apiserver::ApiServer;

struct Fixture {
    server: ApiServer,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = ApiServer::start().await;
        load_fixture(&server);
        forbid_team_b_secrets(&server);
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture { server, dir }
    }

    async fn audit(&self, extra: &[&str]) -> Report {
        let path = self
            .server
            .write_kubeconfig(self.dir.path())
            .expect("kubeconfig");
        let path = path.to_str().expect("utf-8 path").to_string();
        let mut argv = vec!["--kubeconfig", path.as_str()];
        argv.extend_from_slice(extra);
        let a = args(&argv);
        let c = client(a.kubeconfig.as_deref()).await.expect("client");
        audit(&c, &a).await.expect("audit runs")
    }
}

fn has(r: &Report, sev: Severity, kind: Kind, ns: &str, object: &str, text: &str) -> bool {
    r.findings.iter().any(|f| {
        f.severity == sev
            && f.kind == kind
            && f.namespace == ns
            && f.object == object
            && f.reason.contains(text)
    })
}

#[tokio::test]
async fn every_finding_kind() {
    let fx = Fixture::new().await;
    let r = fx.audit(&[]).await;
    let table = render(&r, Output::Table).expect("table");
    println!("{table}");
    let expect = [
        (
            Severity::Warning,
            Kind::Stale,
            "team-a",
            "pod/api-1",
            ROLE_OLD,
        ),
        (
            Severity::Warning,
            Kind::Stale,
            "team-a",
            "pod/media-1",
            "S3_BUCKET=acme-old",
        ),
        (
            Severity::Warning,
            Kind::Missed,
            "team-a",
            "pod/worker-1",
            "failurePolicy Ignore",
        ),
        (
            Severity::Info,
            Kind::Missed,
            "team-a",
            "pod/gateway-1",
            "proxy",
        ),
        (
            Severity::Error,
            Kind::InvalidAnnotation,
            "team-a",
            "serviceaccount/batch",
            "role",
        ),
        (
            Severity::Error,
            Kind::InvalidAnnotation,
            "team-a",
            "serviceaccount/batch",
            "token-expiration",
        ),
        (
            Severity::Error,
            Kind::StaticKeys,
            "team-a",
            "pod/legacy-1",
            "literal",
        ),
        (
            Severity::Error,
            Kind::StaticKeys,
            "team-a",
            "pod/legacy-1",
            "key AWS_SECRET_ACCESS_KEY",
        ),
        (
            Severity::Error,
            Kind::StaticKeys,
            "team-a",
            "pod/legacy-1",
            "envFrom secret/aws-creds",
        ),
        (
            Severity::Info,
            Kind::StaticKeys,
            "team-b",
            "secret/etl-env",
            "403",
        ),
        (
            Severity::Error,
            Kind::BucketaccessNotReady,
            "team-a",
            "bucketaccess/media-writer",
            "AccessDenied",
        ),
        (
            Severity::Info,
            Kind::Webhook,
            "",
            "mutatingwebhookconfiguration/storage-valet",
            "Ignore",
        ),
    ];
    for (sev, kind, ns, obj, text) in expect {
        assert!(
            has(&r, sev, kind, ns, obj, text),
            "missing {sev:?} {kind:?} {ns} {obj} {text:?}\n{table}"
        );
    }
    assert_eq!(r.findings.len(), expect.len(), "{table}");
    // Fresh pods and the Ready BucketAccess say nothing.
    assert!(
        !r.findings
            .iter()
            .any(|f| f.object == "pod/web-fresh" || f.object == "bucketaccess/media-reader")
    );
    // The stale fix restarts the Deployment; Secret values never appear.
    assert!(
        table.contains("kubectl -n team-a rollout restart deployment/api"),
        "{table}"
    );
    for secret in ["QUtJQUVYQU1QTEU=", "c2VjcmV0LXZhbHVlLTQy", "AKIAEXAMPLE"] {
        assert!(!table.contains(secret), "secret value printed");
    }
    // Read top-down: summary, then errors before warnings before info.
    let pos = |s: &str| {
        table
            .find(s)
            .unwrap_or_else(|| panic!("{s} not in table\n{table}"))
    };
    assert!(pos("findings: 6 error, 3 warning, 3 info") < pos("\nERROR (6)"));
    assert!(pos("\nERROR (6)") < pos("\nWARNING (3)"));
    assert!(pos("\nWARNING (3)") < pos("\nINFO (3)"));
    assert!(pos("\nINFO (3)") < pos("\nINVENTORY"));
    assert_eq!(r.summary.pods, 7, "completed job-1 is skipped");
}

#[tokio::test]
async fn completed_pods_only_when_asked() {
    let fx = Fixture::new().await;
    let pods = |r: &Report| -> BTreeSet<String> {
        r.service_accounts
            .iter()
            .flat_map(|s| s.pods.iter().map(|p| p.name.clone()))
            .collect()
    };
    assert!(!pods(&fx.audit(&[]).await).contains("job-1"));
    let r = fx.audit(&["--include-completed"]).await;
    assert!(pods(&r).contains("job-1"));
    assert!(has(
        &r,
        Severity::Warning,
        Kind::Missed,
        "team-a",
        "pod/job-1",
        "did not mutate"
    ));
}

#[tokio::test]
async fn json_matches_the_documented_schema() {
    let fx = Fixture::new().await;
    let r = fx.audit(&["-o", "json"]).await;
    let text = render(&r, Output::Json).expect("json");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    let schema: Value = serde_json::from_str(include_str!("../audit-schema.json")).expect("schema");
    assert_eq!(support::schema::validate(&schema, &v), Vec::<String>::new());
    assert_eq!(v["apiVersion"], "storage-valet.dev/audit/v1");
    assert_eq!(v["findings"][0]["severity"], "error");
    let web = v["serviceAccounts"]
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["name"] == "web")
        .expect("web SA");
    assert_eq!(web["grants"]["roleArn"], ROLE_WEB);
    assert_eq!(web["grants"]["bucketEnv"]["S3_BUCKET"], "acme-media");
    let api = web["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .find(|p| p["name"] == "api-1")
        .expect("api-1");
    assert_eq!(api["received"]["roleArn"], ROLE_OLD);
    // The validator does reject what the schema does not allow.
    let mut bad = v.clone();
    bad["findings"][0]["severity"] = Value::from("fatal");
    bad["summary"]["extra"] = Value::from(1);
    bad["serviceAccounts"][0]
        .as_object_mut()
        .expect("object")
        .remove("exists");
    assert_eq!(support::schema::validate(&schema, &bad).len(), 3);
}

#[tokio::test]
async fn dot_is_a_valid_graph_with_findings_in_red() {
    let fx = Fixture::new().await;
    let r = fx.audit(&[]).await;
    let text = render(&r, Output::Dot).expect("dot");
    let g = support::dot::parse(&text).unwrap_or_else(|e| panic!("invalid DOT: {e}\n{text}"));
    let edge = |a: &str, b: &str| g.edges.iter().find(|(x, y, _)| x == a && y == b);
    let role = format!("role/{ROLE_WEB}");
    assert!(edge("ns/team-a", "sa/team-a/web").is_some(), "{text}");
    assert!(edge("sa/team-a/web", &role).is_some(), "{text}");
    assert!(edge(&role, "bucket/acme-media").is_some(), "{text}");
    let stale = edge("sa/team-a/web", &format!("role/{ROLE_OLD}")).expect("stale role edge");
    assert_eq!(stale.2.get("color").map(String::as_str), Some("red"));
    let red = |id: &str| {
        g.nodes
            .get(id)
            .and_then(|a| a.get("color"))
            .map(String::as_str)
            == Some("red")
    };
    assert!(
        red("sa/team-a/web")
            && red("sa/team-a/batch")
            && red("ba/team-a/media-writer")
            && red("cluster")
    );
    assert!(!red("ba/team-a/media-reader") && !red("ns/team-a"));
    assert!(
        support::dot::parse("digraph { a -> ; }").is_err(),
        "the parser rejects bad DOT"
    );
}

#[tokio::test]
async fn exit_codes_follow_fail_on() {
    let fx = Fixture::new().await;
    let r = fx.audit(&[]).await;
    assert_eq!(exit_code(&r, Severity::Error), ExitCode::from(1));
    assert_eq!(exit_code(&r, Severity::Info), ExitCode::from(1));

    // Only info findings (a skipped sidecar): fails on info, passes on warning.
    let quiet = ApiServer::start().await;
    quiet
        .insert(support::webhook_config("Ignore"))
        .expect("webhook");
    quiet
        .insert(support::sa(
            "ns",
            "web",
            serde_json::json!({"eks.amazonaws.com/role-arn": ROLE_WEB}),
        ))
        .expect("sa");
    let mut ann = support::mutated(ROLE_WEB, serde_json::json!({}));
    ann["eks.amazonaws.com/skip-containers"] = "proxy".into();
    quiet
        .insert(support::pod(
            "ns",
            "web-1",
            "web",
            ann,
            serde_json::json!([
        {"name": "main", "env": [{"name": "AWS_ROLE_ARN", "value": ROLE_WEB}]}, {"name": "proxy"}]),
        ))
        .expect("pod");
    let a = args(&["--fail-on", "warning"]);
    let r = audit(&quiet.client(), &a).await.expect("audit");
    assert_eq!(r.summary.findings.info, 2, "{:?}", r.findings);
    assert_eq!(exit_code(&r, Severity::Warning), ExitCode::SUCCESS);
    assert_eq!(exit_code(&r, Severity::Info), ExitCode::from(1));

    // With failurePolicy Fail and nothing skipped: clean, exit 0 at any level.
    quiet
        .upsert(support::webhook_config("Fail"))
        .expect("webhook");
    quiet
        .delete("v1", "Pod", "ns", "web-1")
        .expect("delete pod");
    let r = audit(&quiet.client(), &a).await.expect("audit");
    assert_eq!(r.findings, vec![]);
    assert_eq!(exit_code(&r, Severity::Info), ExitCode::SUCCESS);
}

#[tokio::test]
async fn lists_are_paginated() {
    let fx = Fixture::new().await;
    fx.server.clear_requests();
    let r = fx.audit(&["--page-size", "2"]).await;
    assert_eq!(r.summary.pods, 7);
    let pod_lists: Vec<String> = fx
        .server
        .requests()
        .into_iter()
        .filter(|q| q.method == "GET" && q.path.starts_with("/api/v1/pods"))
        .map(|q| q.path)
        .collect();
    // 8 pods in the store, 2 per page: 4 pages, each after the first with a continue token.
    assert_eq!(pod_lists.len(), 4, "{pod_lists:#?}");
    assert!(
        pod_lists.iter().all(|p| p.contains("limit=2")),
        "{pod_lists:#?}"
    );
    assert!(
        pod_lists.iter().skip(1).all(|p| p.contains("continue=")),
        "{pod_lists:#?}"
    );
    assert!(!pod_lists[0].contains("continue="));
}

#[tokio::test]
async fn namespace_scope_reads_one_namespace() {
    let fx = Fixture::new().await;
    fx.server.clear_requests();
    let r = fx.audit(&["--namespace", "team-a"]).await;
    assert_eq!(r.namespace.as_deref(), Some("team-a"));
    assert!(r.service_accounts.iter().all(|s| s.namespace == "team-a"));
    assert!(!r.findings.iter().any(|f| f.namespace == "team-b"));
    let paths: Vec<String> = fx.server.requests().into_iter().map(|q| q.path).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/api/v1/namespaces/team-a/pods?")),
        "{paths:#?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with("/api/v1/pods")),
        "{paths:#?}"
    );
}

#[tokio::test]
async fn with_trust_fails_become_errors() {
    let fx = Fixture::new().await;
    let r = fx
        .audit(&[
            "--with-trust",
            "--issuer",
            "https://127.0.0.1:1",
            "--region",
            "us-east-1",
        ])
        .await;
    println!("{}", render(&r, Output::Table).expect("table"));
    let trust: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Trust)
        .collect();
    assert!(!trust.is_empty(), "{:#?}", r.findings);
    assert!(
        trust
            .iter()
            .any(|f| f.severity == Severity::Error && f.object == "serviceaccount/web"),
        "{trust:#?}"
    );
    // Only ServiceAccounts with a valid role are checked.
    assert!(
        trust.iter().all(|f| f.object == "serviceaccount/web"),
        "{trust:#?}"
    );
}

#[tokio::test]
async fn unreadable_kinds_are_info_not_failures() {
    let fx = Fixture::new().await;
    fx.server.fail_times(
        "GET",
        "/apis/storage-valet.dev/v1alpha1/bucketaccesses",
        404,
        1,
    );
    fx.server.fail_times(
        "GET",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        403,
        1,
    );
    let r = fx.audit(&[]).await;
    assert!(
        has(
            &r,
            Severity::Info,
            Kind::Unchecked,
            "",
            "",
            "CRD not installed"
        ),
        "{:#?}",
        r.findings
    );
    assert!(
        has(&r, Severity::Info, Kind::Unchecked, "", "", "HTTP 403"),
        "{:#?}",
        r.findings
    );
    assert!(r.webhooks.is_none() && r.bucket_accesses.is_empty());
    assert!(
        !r.findings
            .iter()
            .any(|f| f.kind == Kind::Webhook || f.kind == Kind::BucketaccessNotReady)
    );
    let table = render(&r, Output::Table).expect("table");
    assert!(table.contains("webhook: not checked"), "{table}");
}
