//! Chart knobs and the values the chart refuses, rendered by the real Helm SDK.

use serde_json::{Value, json};

mod chart_support;
use chart_support::{object, render, try_render};

const ROLE: &str = "arn:aws:iam::111111111111:role/storage-valet-broker";

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn checksum(values: Value) -> String {
    let broker = object(&render(&values), "Deployment", "storage-valet-broker");
    broker["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        .as_str()
        .expect("checksum/config")
        .to_string()
}

#[test]
fn changing_the_broker_role_restarts_the_broker() {
    let a = checksum(json!({ "broker": { "roleArn": ROLE } }));
    let b = checksum(json!({ "broker": { "roleArn": "arn:aws:iam::111111111111:role/other" } }));
    let c = checksum(
        json!({ "broker": { "roleArn": ROLE, "config": { "clusterName": "other", "region": "eu-west-1" } } }),
    );
    assert_ne!(a, b, "checksum/config ignores broker.roleArn");
    assert_ne!(a, c, "checksum/config ignores broker.config");
}

#[test]
fn a_pdb_that_blocks_every_drain_is_refused() {
    for (values, component) in [
        (json!({ "webhook": { "replicas": 1 } }), "webhook"),
        (
            json!({ "broker": { "replicas": 1, "roleArn": ROLE } }),
            "broker",
        ),
        (
            json!({ "broker": { "replicas": 3, "minAvailable": "100%", "roleArn": ROLE } }),
            "broker",
        ),
        (
            json!({ "webhook": { "replicas": 1, "minAvailable": "50%" } }),
            "webhook",
        ),
        (
            json!({ "webhook": { "replicas": 2, "minAvailable": 2 } }),
            "webhook",
        ),
    ] {
        let err = try_render(&values).expect_err(&format!("accepted {values}"));
        assert!(
            err.contains("would block every node drain")
                && err.contains(&format!(
                    "Raise {component}.replicas or lower {component}.minAvailable"
                )),
            "{values}: {err}"
        );
    }
    // Satisfiable budgets render, a single replica with no budget too.
    for values in [
        json!({ "webhook": { "replicas": 3, "minAvailable": "50%" } }),
        json!({ "webhook": { "replicas": 1, "minAvailable": 0 } }),
        json!({ "broker": { "replicas": 2, "minAvailable": 1, "roleArn": ROLE } }),
    ] {
        try_render(&values).unwrap_or_else(|e| panic!("{values} refused: {e}"));
    }
    let err = try_render(&json!({ "webhook": { "minAvailable": "half" } })).expect_err("half");
    assert!(err.contains("webhook.minAvailable"), "{err}");
}

#[test]
fn notes_warn_about_a_broker_without_a_role() {
    let notes = |values: Value| {
        render(&values)
            .get("storage-valet/templates/NOTES.txt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let without = notes(json!({}));
    assert!(
        without.contains("WARNING: broker.roleArn is empty"),
        "{without}"
    );
    assert!(without.contains("--set broker.roleArn="), "{without}");
    assert!(!notes(json!({ "broker": { "roleArn": ROLE } })).contains("WARNING"));
    assert!(!notes(json!({ "broker": { "enabled": false } })).contains("WARNING"));
}

#[test]
fn operator_knobs_reach_the_pods_and_services() {
    let rendered = render(&json!({
        "webhook": {
            "logFormat": "json",
            "logLevel": "info,valet_webhook=debug",
            "extraEnv": [{ "name": "HTTPS_PROXY", "value": "http://proxy:3128" }],
            "serviceAnnotations": { "service.beta.kubernetes.io/x": "y" },
            "hostNetwork": true,
            "podAnnotations": { "team": "platform" },
        },
        "broker": {
            "roleArn": ROLE,
            "logFormat": "json",
            "logLevel": "debug",
            "extraEnv": [{ "name": "AWS_MAX_ATTEMPTS", "value": "5" }],
            "serviceAnnotations": { "prometheus.io/scrape": "true" },
            "priorityClassName": "platform-critical",
            "podAnnotations": { "team": "platform" },
        },
    }));
    let webhook = object(&rendered, "Deployment", "storage-valet-webhook");
    let a = args(&webhook);
    assert!(a.contains(&"--log-format=json".to_string()), "{a:?}");
    assert!(
        a.contains(&"--log-level=info,valet_webhook=debug".to_string()),
        "{a:?}"
    );
    let pod = &webhook["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(container(&webhook)["env"][0]["name"], "HTTPS_PROXY");
    assert_eq!(
        webhook["spec"]["template"]["metadata"]["annotations"]["team"],
        "platform"
    );
    let service = object(&rendered, "Service", "storage-valet-webhook");
    assert_eq!(
        service["metadata"]["annotations"]["service.beta.kubernetes.io/x"],
        "y"
    );

    let broker = object(&rendered, "Deployment", "storage-valet-broker");
    let a = args(&broker);
    assert!(a.contains(&"--log-format=json".to_string()), "{a:?}");
    assert!(a.contains(&"--log-level=debug".to_string()), "{a:?}");
    assert_eq!(
        broker["spec"]["template"]["spec"]["priorityClassName"],
        "platform-critical"
    );
    let env: Vec<&str> = container(&broker)["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        env.contains(&"AWS_MAX_ATTEMPTS") && env.contains(&"AWS_ROLE_ARN"),
        "{env:?}"
    );
    assert_eq!(
        broker["spec"]["template"]["metadata"]["annotations"]["team"],
        "platform"
    );
    let service = object(&rendered, "Service", "storage-valet-broker-metrics");
    assert_eq!(
        service["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );

    // Defaults: text logs, no host network, no extra env.
    let rendered = render(&json!({ "broker": { "roleArn": ROLE } }));
    let webhook = object(&rendered, "Deployment", "storage-valet-webhook");
    assert!(args(&webhook).contains(&"--log-format=text".to_string()));
    assert!(!args(&webhook).iter().any(|a| a.starts_with("--log-level")));
    assert!(
        webhook["spec"]["template"]["spec"]
            .get("hostNetwork")
            .is_none()
    );
    assert!(container(&webhook).get("env").is_none());
}

#[test]
fn bad_log_settings_are_refused_by_the_schema() {
    for (values, field) in [
        (
            json!({ "webhook": { "logFormat": "yaml" } }),
            "/webhook/logFormat",
        ),
        (
            json!({ "broker": { "logLevel": "loud" } }),
            "/broker/logLevel",
        ),
        (
            json!({ "webhook": { "extraEnv": [{ "value": "no name" }] } }),
            "/webhook/extraEnv/0",
        ),
    ] {
        let err = try_render(&values).expect_err(&format!("accepted {values}"));
        assert!(err.contains(field), "{values}: {err}");
    }
}
