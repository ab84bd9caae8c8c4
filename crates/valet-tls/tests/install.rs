//! Install artefacts (issue 7): kustomize manifests, the Helm chart rendered
//! by the real Helm v4 SDK, the CRD, and the Dockerfile's build command.

mod k8s;

use std::collections::BTreeMap;

use k8s::{checks, id, named, render, repo_root};
use serde_json::{Value, json};

const NAMESPACE: &str = "storage-valet";

fn assert_clean(what: &str, problems: checks::Problems) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

fn components(docs: &[Value]) -> Vec<String> {
    let mut c: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .filter_map(|d| {
            d["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    c.sort();
    c
}

fn overlay(name: &str) -> anyhow::Result<Vec<Value>> {
    let dir = repo_root().join("manifests/overlays").join(name);
    let docs = render::kustomize(&dir)?;
    // Where kustomize (or kubectl) exists, the real kustomize must agree with the reading above.
    if let Some(real) = render::real_kustomize(&dir) {
        let by_id = |docs: &[Value]| {
            docs.iter()
                .map(|d| (id(d), d.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            by_id(&real?),
            by_id(&docs),
            "kustomize build {name} differs"
        );
    } else {
        // Said, not silent: the overlay was still read and checked above.
        println!(
            "note: neither kustomize nor kubectl installed; overlay {name} read by the test's own kustomize reader only"
        );
    }
    Ok(docs)
}

#[test]
fn overlays_follow_the_install_rules() -> anyhow::Result<()> {
    let webhook_only = overlay("webhook-only")?;
    assert_clean("webhook-only", checks::all(&webhook_only, NAMESPACE));
    assert_eq!(components(&webhook_only), ["webhook"]);

    let full = overlay("full")?;
    assert_clean("full", checks::all(&full, NAMESPACE));
    assert_eq!(components(&full), ["broker", "webhook"]);
    let grants = k8s::rbac::grants_by_component(&full);
    for component in ["webhook", "broker", "certs"] {
        assert!(
            grants.contains_key(component),
            "{component} has no RBAC at all"
        );
    }
    assert!(named(&full, "ClusterRole", "storage-valet-audit").is_some());
    assert!(named(&full, "Namespace", NAMESPACE).is_some());
    Ok(())
}

#[test]
fn every_manifest_file_is_typed_and_part_of_an_overlay() -> anyhow::Result<()> {
    let root = repo_root().join("manifests");
    let used: Vec<String> = overlay("full")?.iter().map(id).collect();
    for file in render::yaml_files(&root)? {
        let text = std::fs::read_to_string(&file)?;
        for doc in render::documents(&text, &file.display().to_string())? {
            if let Err(e) = k8s::typed::check(&doc) {
                panic!("{}: {}: {e}", file.display(), id(&doc));
            }
            // A component's own objects are added by the component (its
            // test renders it), not by an overlay.
            if file.starts_with(root.join("components")) {
                continue;
            }
            assert!(
                used.contains(&id(&doc)),
                "{} ({}) is in no overlay",
                id(&doc),
                file.display()
            );
        }
    }
    Ok(())
}

/// What decides whether the API server stores a BucketAccess as the broker
/// wrote it: names, versions, subresources and the shape of the schema
/// (fields, types, required; the API server prunes unknown fields).
/// Descriptions and patterns may differ without harm to the install.
fn crd_shape(crd: &Value) -> Value {
    fn schema(node: &Value) -> Value {
        let Some(obj) = node.as_object() else {
            return node.clone();
        };
        let mut out = serde_json::Map::new();
        for (key, value) in obj {
            match key.as_str() {
                "properties" => {
                    let props = value.as_object().map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), schema(v)))
                            .collect::<serde_json::Map<_, _>>()
                    });
                    out.insert(key.clone(), Value::Object(props.unwrap_or_default()));
                }
                "items" | "additionalProperties" => {
                    out.insert(key.clone(), schema(value));
                }
                "type"
                | "required"
                | "enum"
                | "x-kubernetes-preserve-unknown-fields"
                | "x-kubernetes-int-or-string" => {
                    out.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
        Value::Object(out)
    }
    let spec = &crd["spec"];
    let versions: Vec<Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            json!({
                "name": v["name"], "served": v["served"], "storage": v["storage"],
                "subresources": v["subresources"],
                "schema": schema(&v["schema"]["openAPIV3Schema"]),
            })
        })
        .collect();
    json!({"name": crd["metadata"]["name"], "group": spec["group"], "names": spec["names"], "scope": spec["scope"], "versions": versions})
}

#[test]
fn the_crd_manifest_is_the_one_the_code_defines() -> anyhow::Result<()> {
    let path = repo_root().join("manifests/base/crd.yaml");
    let generated = valet_broker::crd::crd_yaml()?;
    if std::env::var_os("VALET_BLESS_CRD").is_some() {
        std::fs::write(
            &path,
            format!(
                "# Generated from crates/valet-broker/src/crd.rs: `valet crd > manifests/base/crd.yaml`.\n{generated}"
            ),
        )?;
    }
    let on_disk: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path)?)?;
    let want: Value = serde_yaml_ng::from_str(&generated)?;
    assert!(
        crd_shape(&on_disk) == crd_shape(&want),
        "manifests/base/crd.yaml is stale: regenerate it with `valet crd > manifests/base/crd.yaml` \
         (or VALET_BLESS_CRD=1 cargo test -p valet-tls --test install), then copy it to \
         charts/storage-valet/crds/bucketaccesses.yaml"
    );
    Ok(())
}

#[test]
fn the_broker_config_map_is_a_valid_broker_config() -> anyhow::Result<()> {
    let docs = overlay("full")?;
    let cm = named(&docs, "ConfigMap", "storage-valet-broker")
        .ok_or_else(|| anyhow::anyhow!("no broker ConfigMap"))?;
    let text = cm["data"]["broker.yaml"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no broker.yaml key"))?;
    let config: valet_broker::config::BrokerConfig = serde_yaml_ng::from_str(text)?;
    config.validate()?;
    Ok(())
}

fn build_commands(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.find("cargo build").map(|i| l[i..].trim().to_string()))
        .collect()
}

#[test]
fn the_dockerfile_builds_with_the_readme_command() -> anyhow::Result<()> {
    let root = repo_root();
    let readme = build_commands(&std::fs::read_to_string(root.join("README.md"))?);
    let dockerfile_text = std::fs::read_to_string(root.join("Dockerfile"))?;
    let dockerfile = build_commands(&dockerfile_text);
    assert_eq!(
        dockerfile.len(),
        1,
        "one build in the Dockerfile: {dockerfile:?}"
    );
    assert!(dockerfile[0].contains("--locked"), "{}", dockerfile[0]);
    assert!(
        readme.contains(&dockerfile[0]),
        "the Dockerfile builds with {:?}, the README shows {readme:?}",
        dockerfile[0]
    );
    // The final stage runs as the UID the manifests ask for, with no shell.
    let last_stage = dockerfile_text.rsplit("\nFROM ").next().unwrap_or("");
    assert!(
        last_stage.starts_with("gcr.io/distroless/"),
        "final stage: {last_stage}"
    );
    assert!(dockerfile_text.contains("USER 65532:65532"));
    Ok(())
}

/// `valet`'s own shape: the global log flags (which every component's
/// command line may carry) around the two long-running subcommands.
#[derive(clap::Parser)]
struct Valet {
    #[command(flatten)]
    _log: valet_cli::log::LogArgs,
    #[command(subcommand)]
    _component: Component,
}

#[derive(clap::Subcommand)]
enum Component {
    Webhook(Box<valet_webhook::WebhookArgs>),
    Broker(Box<valet_cli::broker::BrokerArgs>),
}

/// Every `valet webhook` and `valet broker` command line of an install
/// parses with the component's own flags (a wrong flag name crash-loops the
/// Deployment). Returns how many were checked per subcommand.
fn assert_args_parse(what: &str, docs: &[Value]) -> BTreeMap<String, usize> {
    use clap::Parser as _;
    let mut seen = BTreeMap::new();
    for deploy in docs.iter().filter(|d| d["kind"] == "Deployment") {
        for c in deploy["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let args: Vec<&str> = c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let argv = std::iter::once("valet").chain(args.iter().copied());
            if let Err(e) = Valet::try_parse_from(argv) {
                panic!(
                    "{what}: {}: `valet {}` is refused: {e}",
                    id(deploy),
                    args.join(" ")
                );
            }
            *seen
                .entry(args.first().unwrap_or(&"").to_string())
                .or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn component_command_lines_parse_with_their_flags() -> anyhow::Result<()> {
    let both = BTreeMap::from([("broker".to_string(), 1), ("webhook".to_string(), 1)]);
    assert_eq!(assert_args_parse("full overlay", &overlay("full")?), both);
    assert_eq!(assert_args_parse("chart defaults", &helm(json!({}))), both);
    let values = json!({"broker": {"enabled": false}, "webhook": {
        "awsDefaultRegion": "eu-west-1",
        "extraArgs": ["--service-account-lookup-grace-period=2s", "--sts-regional-endpoint=true"],
    }});
    let webhook_only = BTreeMap::from([("webhook".to_string(), 1)]);
    assert_eq!(
        assert_args_parse("chart with region and extra args", &helm(values)),
        webhook_only
    );
    Ok(())
}

fn chart() -> std::path::PathBuf {
    repo_root().join("charts/storage-valet")
}

fn helm(values: Value) -> Vec<Value> {
    render::helm(&chart(), &values).unwrap_or_else(|e| panic!("helm render with {values}: {e:#}"))
}

#[test]
fn chart_defaults_render_a_valid_full_install() {
    let docs = helm(json!({}));
    assert_clean("chart defaults", checks::all(&docs, NAMESPACE));
    assert_eq!(components(&docs), ["broker", "webhook"]);
    let notes = render::helm_notes(&chart(), &json!({})).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        notes.contains("valet audit"),
        "NOTES.txt must say what to do next:\n{notes}"
    );
}

#[test]
fn chart_options_render_valid_installs() {
    let cases = [
        json!({"broker": {"enabled": false}}),
        json!({"certManager": {"enabled": true}}),
        json!({"serviceMonitor": {"enabled": true}, "webhook": {"awsDefaultRegion": "eu-west-1"}}),
    ];
    for values in cases {
        let docs = helm(values.clone());
        assert_clean(
            &format!("chart with {values}"),
            checks::all(&docs, NAMESPACE),
        );
    }
    assert_eq!(
        components(&helm(json!({"broker": {"enabled": false}}))),
        ["webhook"]
    );
    let cm = helm(json!({"certManager": {"enabled": true}}));
    assert!(cm.iter().any(|d| d["kind"] == "Certificate"));
    assert!(
        !cm.iter().any(|d| d["kind"] == "Job"),
        "with cert-manager, no valet certs Job"
    );
    let sm = helm(json!({"serviceMonitor": {"enabled": true}}));
    assert!(sm.iter().any(|d| d["kind"] == "ServiceMonitor"));
}

#[test]
fn chart_names_stay_consistent_for_another_release_and_namespace() {
    for (release, values) in [
        ("acme", json!({})),
        ("acme", json!({"certManager": {"enabled": true}})),
    ] {
        let docs = render::helm_as(&chart(), &values, release, "platform")
            .unwrap_or_else(|e| panic!("helm render: {e:#}"));
        assert_clean(
            &format!("release {release} in platform with {values}"),
            checks::all(&docs, "platform"),
        );
        assert!(named(&docs, "Deployment", "acme-storage-valet-webhook").is_some());
    }
}

#[test]
fn chart_matches_the_kustomize_install() -> anyhow::Result<()> {
    // Same objects by kind and name; Helm adds its own labels only.
    // The chart names its install Job per revision (Jobs are immutable).
    let ids = |docs: &[Value]| {
        let mut v: Vec<String> = docs
            .iter()
            .map(id)
            .map(|i| i.replace("storage-valet-certs-1", "storage-valet-certs"))
            .collect();
        v.sort();
        v
    };
    let chart_ids: Vec<String> = ids(&helm(json!({})))
        .into_iter()
        .filter(|i| !i.starts_with("CustomResourceDefinition"))
        .collect();
    let kustomize_ids: Vec<String> = ids(&overlay("full")?)
        .into_iter()
        .filter(|i| !i.starts_with("Namespace") && !i.starts_with("CustomResourceDefinition"))
        .collect();
    assert_eq!(chart_ids, kustomize_ids);
    Ok(())
}

#[test]
fn chart_lints_clean_and_its_schema_refuses_bad_values() {
    let report = render::helm_lint(&chart(), &json!({})).unwrap_or_else(|e| panic!("{e:#}"));
    let bad: Vec<&Value> = report["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["severity"].as_i64().unwrap_or(0) >= 2)
        .collect();
    assert!(bad.is_empty(), "helm lint: {bad:?}");
    for values in [
        json!({"webhook": {"replicas": "two"}}),
        json!({"webhook": {"failurePolicy": "Sometimes"}}),
        json!({"webhook": {"timeoutSeconds": 60}}),
        json!({"typoedKey": true}),
    ] {
        let refused = render::helm_script("schema", &chart(), &values);
        assert!(refused.is_err(), "values.schema.json accepted {values}");
    }
    render::helm_script("schema", &chart(), &json!({"webhook": {"replicas": 3}}))
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn chart_crd_is_the_manifest_crd() -> anyhow::Result<()> {
    let in_chart = std::fs::read_to_string(chart().join("crds/bucketaccesses.yaml"))?;
    let in_manifests = std::fs::read_to_string(repo_root().join("manifests/base/crd.yaml"))?;
    let parse = |t: &str| serde_yaml_ng::from_str::<Value>(t);
    assert!(
        parse(&in_chart)? == parse(&in_manifests)?,
        "charts/storage-valet/crds/bucketaccesses.yaml differs from manifests/base/crd.yaml"
    );
    Ok(())
}

/// The one webhook's objectSelector expressions as `key operator [values]`.
fn object_selector(docs: &[Value]) -> Vec<String> {
    let hooks = k8s::of_kind(docs, "MutatingWebhookConfiguration");
    assert_eq!(hooks.len(), 1);
    hooks[0]["webhooks"][0]["objectSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {} {:?}",
                e["key"].as_str().unwrap_or(""),
                e["operator"].as_str().unwrap_or(""),
                checks::strs(&e["values"])
            )
        })
        .collect()
}

const SKIP_PEER: &str = "eks.amazonaws.com/skip-pod-identity-webhook DoesNotExist []";

#[test]
fn chart_opt_out_by_default_and_opt_in_on_request() {
    let default = object_selector(&helm(json!({})));
    assert_eq!(
        default,
        [r#"storage-valet.dev/inject NotIn ["false"]"#, SKIP_PEER]
    );
    let values = json!({"webhook": {"optIn": true, "failurePolicy": "Fail"}});
    let docs = helm(values.clone());
    assert_eq!(
        object_selector(&docs),
        [r#"storage-valet.dev/inject In ["true"]"#, SKIP_PEER]
    );
    let hooks = k8s::of_kind(&docs, "MutatingWebhookConfiguration");
    assert_eq!(hooks[0]["webhooks"][0]["failurePolicy"], "Fail");
    // A typo is refused by the schema, never silently opt-out.
    let typo = render::helm_script("schema", &chart(), &json!({"webhook": {"optin": true}}));
    assert!(typo.is_err(), "webhook.optin accepted: {typo:?}");
}

/// The opt-in kustomize component applied to the webhook-only overlay: by
/// kubectl's kustomize when installed (and then compared with our reading),
/// else by applying its JSON 6902 patch ourselves.
#[test]
fn kustomize_opt_in_component_selects_only_opted_in_pods() -> anyhow::Result<()> {
    let root = k8s::repo_root();
    let component = root.join("manifests/components/opt-in");
    let k: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
        component.join("kustomization.yaml"),
    )?)?;
    assert_eq!(k["kind"], "Component");
    let patch = &k["patches"][0];
    assert_eq!(patch["target"]["kind"], "MutatingWebhookConfiguration");
    let ops: json_patch::Patch = serde_yaml_ng::from_str(patch["patch"].as_str().unwrap_or(""))?;
    let mut ours = render::kustomize(&root.join("manifests/overlays/webhook-only"))?;
    assert_eq!(
        object_selector(&ours),
        [r#"storage-valet.dev/inject NotIn ["false"]"#, SKIP_PEER]
    );
    for doc in ours.iter_mut() {
        if doc["kind"] == "MutatingWebhookConfiguration"
            && doc["metadata"]["name"] == patch["target"]["name"]
        {
            json_patch::patch(doc, &ops)?;
        }
    }
    assert_eq!(
        object_selector(&ours),
        [r#"storage-valet.dev/inject In ["true"]"#, SKIP_PEER]
    );
    assert_clean("webhook-only + opt-in", checks::all(&ours, NAMESPACE));

    // An overlay as a user writes it, built by the real kustomize.
    let dir = tempfile::tempdir()?;
    let overlay = user_overlay(dir.path(), "webhook-only", "opt-in", "")?;
    match render::real_kustomize(&overlay) {
        Some(real) => assert_eq!(object_selector(&real?), object_selector(&ours)),
        None => {
            println!(
                "note: neither kustomize nor kubectl installed; the component was applied by the test itself"
            )
        }
    }
    Ok(())
}

/// Every rule of every Role and ClusterRole in `docs`, as (role, resource, verbs).
fn rbac_rules(docs: &[Value]) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let verbs: Vec<String> = rule["verbs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            for r in rule["resources"].as_array().into_iter().flatten() {
                out.push((
                    id(role),
                    r.as_str().unwrap_or("").to_string(),
                    verbs.clone(),
                ));
            }
        }
    }
    out
}

/// Issue 13: nobody who takes over a storage-valet pod can mint a token for
/// another ServiceAccount or widen the broker's guardrails.
#[test]
fn no_role_mints_tokens_or_writes_policies() -> anyhow::Result<()> {
    for (what, docs) in [
        ("full overlay", overlay("full")?),
        ("chart defaults", helm(json!({}))),
    ] {
        let rules = rbac_rules(&docs);
        assert!(!rules.is_empty(), "{what}: no RBAC rendered");
        for (role, resource, verbs) in &rules {
            assert!(
                resource != "serviceaccounts/token" && resource != "*",
                "{what}: {role} grants {verbs:?} on {resource}"
            );
            if resource == "bucketaccesspolicies" {
                assert!(
                    verbs
                        .iter()
                        .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
                    "{what}: {role} may change BucketAccessPolicies: {verbs:?}"
                );
            }
        }
        assert!(
            rules
                .iter()
                .any(|(_, r, v)| r == "bucketaccesspolicies" && v.iter().any(|v| v == "watch")),
            "{what}: the broker must watch BucketAccessPolicies"
        );
    }
    Ok(())
}

/// What each NetworkPolicy in `docs` lets in, as `component port <- peers`,
/// after checking that it selects the pods of exactly one Deployment and
/// names a port those pods declare.
fn network_policies(docs: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for np in k8s::of_kind(docs, "NetworkPolicy") {
        let selector = np["spec"]["podSelector"]["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(!selector.is_empty(), "{}: selects every pod", id(np));
        let selected: Vec<&Value> = k8s::of_kind(docs, "Deployment")
            .into_iter()
            .filter(|d| {
                let labels = &d["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| &labels[k] == v)
            })
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "{} selects {} Deployments",
            id(np),
            selected.len()
        );
        let pod = selected[0];
        let component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap_or("?");
        let declared: Vec<&str> = pod["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            checks::strs(&np["spec"]["policyTypes"]),
            ["Ingress"],
            "{}",
            id(np)
        );
        for rule in np["spec"]["ingress"].as_array().into_iter().flatten() {
            let from = rule["from"].as_array().cloned().unwrap_or_default();
            assert!(!from.is_empty(), "{}: a rule open to everyone", id(np));
            for port in rule["ports"].as_array().into_iter().flatten() {
                let name = port["port"].as_str().unwrap_or("?");
                assert!(
                    declared.contains(&name),
                    "{}: port {name} not declared by the pod",
                    id(np)
                );
                out.push(format!(
                    "{component} {name} <- {}",
                    Value::Array(from.clone())
                ));
            }
        }
    }
    out.sort();
    out
}

const PROMETHEUS: &str = r#"[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}},"podSelector":{"matchLabels":{"app.kubernetes.io/name":"prometheus"}}}]"#;

#[test]
fn chart_network_policy_is_opt_in_and_admits_only_the_api_server_and_prometheus() {
    assert!(
        network_policies(&helm(json!({}))).is_empty(),
        "on by default"
    );
    let values = json!({"networkPolicy": {"enabled": true,
        "apiServer": [{"ipBlock": {"cidr": "10.42.0.0/16"}}]}});
    let docs = helm(values.clone());
    assert_clean(
        &format!("chart with {values}"),
        checks::all(&docs, NAMESPACE),
    );
    assert_eq!(
        network_policies(&docs),
        [
            format!("broker metrics <- {PROMETHEUS}"),
            r#"webhook https <- [{"ipBlock":{"cidr":"10.42.0.0/16"}}]"#.to_string(),
            format!("webhook metrics <- {PROMETHEUS}"),
        ]
    );
    // Peers and the Prometheus selector are the operator's; without the broker, no broker policy.
    let docs = helm(
        json!({"broker": {"enabled": false}, "networkPolicy": {"enabled": true,
        "apiServer": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "prometheus": [{"ipBlock": {"cidr": "10.9.0.0/24"}}]}}),
    );
    assert_eq!(
        network_policies(&docs),
        [
            r#"webhook https <- [{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kube-system"}}}]"#,
            r#"webhook metrics <- [{"ipBlock":{"cidr":"10.9.0.0/24"}}]"#,
        ]
    );
    // Enabled without the API server's address would cut the API server off: refused, saying what to set.
    let err = render::helm(&chart(), &json!({"networkPolicy": {"enabled": true}}))
        .expect_err("enabled without apiServer");
    assert!(
        format!("{err:#}").contains("networkPolicy.apiServer"),
        "{err:#}"
    );
    let err = render::helm(
        &chart(),
        &json!({"webhook": {"hostNetwork": true},
        "networkPolicy": {"enabled": true, "apiServer": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}}),
    )
    .expect_err("hostNetwork");
    assert!(
        format!("{err:#}").contains("webhook.hostNetwork"),
        "{err:#}"
    );
    for typo in [
        json!({"networkPolicy": {"enable": true}}),
        json!({"networkPolicy": {"apiServer": [{"ipblock": {"cidr": "10.0.0.0/8"}}]}}),
        json!({"networkPolicy": {"apiServer": [{"ipBlock": {"cidr": "10.0.0.0"}}]}}),
        json!({"networkPolicy": {"apiServer": [{}]}}),
    ] {
        let refused = render::helm_script("schema", &chart(), &typo);
        assert!(refused.is_err(), "values.schema.json accepted {typo}");
    }
}

/// The network-policy component on the full overlay, built by the real
/// kustomize (kubectl) as a user's overlay would use it.
#[test]
fn kustomize_network_policy_component_admits_only_the_api_server_and_prometheus()
-> anyhow::Result<()> {
    let root = k8s::repo_root();
    let component = root.join("manifests/components/network-policy");
    let k: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(
        component.join("kustomization.yaml"),
    )?)?;
    assert_eq!(k["kind"], "Component");
    // Our reading: the overlay plus the component's resources.
    let mut ours = overlay("full")?;
    for resource in k["resources"].as_array().into_iter().flatten() {
        let path = component.join(resource.as_str().unwrap_or(""));
        ours.extend(render::documents(
            &std::fs::read_to_string(&path)?,
            &path.display().to_string(),
        )?);
    }
    assert_clean("full + network-policy", checks::all(&ours, NAMESPACE));
    let expected = [
        format!("broker metrics <- {PROMETHEUS}"),
        r#"webhook https <- [{"ipBlock":{"cidr":"10.0.0.0/16"}}]"#.to_string(),
        format!("webhook metrics <- {PROMETHEUS}"),
    ];
    assert_eq!(network_policies(&ours), expected);

    let dir = tempfile::tempdir()?;
    let patch = "patches:\n  - target: {kind: NetworkPolicy, name: storage-valet-webhook}\n    patch: |-\n      - op: replace\n        path: /spec/ingress/0/from/0/ipBlock/cidr\n        value: 192.168.0.0/16\n";
    let overlay_dir = user_overlay(dir.path(), "full", "network-policy", patch)?;
    match render::real_kustomize(&overlay_dir) {
        Some(real) => {
            let real = real?;
            assert_clean(
                "kustomize build full + network-policy",
                checks::all(&real, NAMESPACE),
            );
            // The README's patch sets the CIDR; the rest is as shipped.
            let mut want = expected.to_vec();
            want[1] = want[1].replace("10.0.0.0/16", "192.168.0.0/16");
            assert_eq!(network_policies(&real), want);
        }
        None => println!(
            "note: neither kustomize nor kubectl installed; the component was read by the test itself"
        ),
    }
    Ok(())
}

/// An overlay in `dir` as a user writes it: manifests/overlays/`base` with
/// manifests/components/`component`, then `extra` kustomization lines.
fn user_overlay(
    dir: &std::path::Path,
    base: &str,
    component: &str,
    extra: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let overlay = dir.join("overlay");
    std::fs::create_dir(&overlay)?;
    // kustomize takes relative paths only: up to / from the overlay, then down.
    let overlay = overlay.canonicalize()?;
    let up = "../".repeat(overlay.components().count() - 1);
    let root = k8s::repo_root().canonicalize()?;
    let rel = |p: &str| {
        format!(
            "{up}{}/{p}",
            root.display().to_string().trim_start_matches('/')
        )
    };
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n{extra}",
            rel(&format!("manifests/overlays/{base}")),
            rel(&format!("manifests/components/{component}")),
        ),
    )?;
    Ok(overlay)
}
