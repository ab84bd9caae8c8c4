//! The chart's PrometheusRule, rendered by the real Helm SDK, checked and
//! unit-tested by promtool (`tests/alerts/rules.test.yaml`): each alert
//! fires in the case it is for and stays silent on healthy series.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

mod chart_support;
use chart_support::{render, root};

fn rule_groups(values: &Value) -> Option<Value> {
    let rendered = render(values);
    let text = rendered
        .get("storage-valet/templates/prometheusrule.yaml")?
        .as_str()?;
    let rule: Value = serde_yaml_ng::from_str(text).expect("the PrometheusRule is YAML");
    if rule.is_null() {
        return None;
    }
    assert_eq!(rule["kind"], "PrometheusRule");
    Some(json!({ "groups": rule["spec"]["groups"] }))
}

fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn names(groups: &Value) -> BTreeSet<String> {
    groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

const ROLE: &str = "arn:aws:iam::111111111111:role/storage-valet-broker";

#[test]
fn the_alerts_fire_in_promtool_unit_tests() {
    let groups = rule_groups(&json!({
        "prometheusRule": { "enabled": true },
        "broker": { "roleArn": ROLE },
    }))
    .expect("prometheusRule.enabled renders a PrometheusRule");
    let alerts = names(&groups);
    for expected in [
        "StorageValetWebhookNoEndpoints",
        "StorageValetWebhookDown",
        "StorageValetAdmissionErrors",
        "StorageValetServiceAccountLookupsFailing",
        "StorageValetServiceAccountLookupsFallingBack",
        "StorageValetServiceAccountWatchErrors",
        "StorageValetCertificateExpiringSoon",
        "StorageValetBrokerReconcileErrors",
        "StorageValetBrokerNoLeader",
        "StorageValetBrokerIamThrottled",
    ] {
        assert!(alerts.contains(expected), "{expected} missing: {alerts:?}");
    }

    // Every alert is tested firing and silent, and names its runbook step.
    let tests_text = std::fs::read_to_string(root().join("tests/alerts/rules.test.yaml"))
        .expect("tests/alerts/rules.test.yaml");
    let tests: Value = serde_yaml_ng::from_str(&tests_text).expect("the unit tests are YAML");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    for alert in &alerts {
        let of_alert = || cases.iter().filter(|c| c["alertname"] == alert.as_str());
        let firing: Vec<_> = of_alert()
            .flat_map(|c| c["exp_alerts"].as_array().into_iter().flatten())
            .collect();
        assert!(!firing.is_empty(), "{alert}: no test where it fires");
        assert!(
            of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty)),
            "{alert}: no test where it stays silent"
        );
        for f in firing {
            let url = f["exp_annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_default();
            let anchor = url.split_once('#').map(|(_, a)| a).unwrap_or_default();
            assert!(
                !anchor.is_empty() && readme.contains(&format!("<a id=\"{anchor}\"></a>")),
                "{alert}: runbook_url {url:?} names no runbook step of the README"
            );
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml_ng::to_string(&groups).expect("rules as YAML"),
    )
    .expect("write rules.yaml");
    std::fs::write(dir.path().join("rules.test.yaml"), tests_text).expect("write the tests");
    let checked = promtool(dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{checked}"
    );
    let tested = promtool(dir.path(), &["test", "rules", "rules.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    println!("{checked}{tested}");
}

#[test]
fn the_rule_is_opt_in_and_follows_the_broker() {
    assert!(rule_groups(&json!({ "broker": { "roleArn": ROLE } })).is_none());
    let webhook_only = rule_groups(&json!({
        "prometheusRule": { "enabled": true },
        "broker": { "enabled": false },
    }))
    .expect("a PrometheusRule");
    let alerts = names(&webhook_only);
    assert!(alerts.contains("StorageValetWebhookDown"), "{alerts:?}");
    assert!(
        !alerts.iter().any(|a| a.starts_with("StorageValetBroker")),
        "broker alerts without a broker: {alerts:?}"
    );
}
