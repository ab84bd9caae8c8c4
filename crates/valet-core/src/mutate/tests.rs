//! One test per rule of the mutation, written as the scenario it sets up.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::settings::ContainerCredentialsSettings;

const ARN: &str = "arn:aws:iam::111122223333:role/app";

struct PodBuilder(Value);

fn pod() -> PodBuilder {
    PodBuilder(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": {"serviceAccountName": "app"}}))
}

impl PodBuilder {
    fn with_container(mut self, name: &str) -> Self {
        push(
            &mut self.0["spec"]["containers"],
            json!({"name": name, "image": "x"}),
        );
        self
    }
    fn with_init_container(mut self, name: &str, restart_always: bool) -> Self {
        let mut c = json!({"name": name, "image": "x"});
        if restart_always {
            c["restartPolicy"] = json!("Always");
        }
        push(&mut self.0["spec"]["initContainers"], c);
        self
    }
    fn with_env(mut self, container: usize, name: &str, value: &str) -> Self {
        push(
            &mut self.0["spec"]["containers"][container]["env"],
            json!({"name": name, "value": value}),
        );
        self
    }
    fn with_volume(mut self, v: Value) -> Self {
        push(&mut self.0["spec"]["volumes"], v);
        self
    }
    fn annotated(mut self, k: &str, v: &str) -> Self {
        self.0["metadata"]["annotations"][k] = json!(v);
        self
    }
    fn on_windows(mut self, key: &str) -> Self {
        self.0["spec"]["nodeSelector"] = json!({ key: "windows" });
        self
    }
    fn view(&self) -> PodView<'static> {
        use serde::Deserialize;
        PodView::deserialize(self.0.clone()).unwrap()
    }
}

fn push(slot: &mut Value, v: Value) {
    if slot.is_null() {
        *slot = json!([]);
    }
    slot.as_array_mut().unwrap().push(v);
}

struct SaBuilder(BTreeMap<String, String>);

fn sa() -> SaBuilder {
    SaBuilder(BTreeMap::new())
}

impl SaBuilder {
    fn role(self, arn: &str) -> Self {
        self.ann("eks.amazonaws.com/role-arn", arn)
    }
    fn ann(mut self, k: &str, v: &str) -> Self {
        self.0.insert(k.into(), v.into());
        self
    }
    fn config(&self) -> SaConfig {
        SaConfig::from_annotations(&self.0, &Settings::default().keys)
    }
}

/// Applies the mutation and returns the resulting pod.
fn run(p: &PodBuilder, s: &SaBuilder, settings: &Settings) -> (Value, Applied) {
    let view = p.view();
    let sa = s.config();
    let m = mutate(&view, "team-a", &sa, false, settings, 0);
    let mut out = p.0.clone();
    json_patch::patch(&mut out, &m.patch()).unwrap();
    let applied = Applied {
        empty: m.ops.is_empty(),
        outcome: m.outcome,
        warnings: m.warnings,
    };
    (out, applied)
}

/// What a test reads of a mutation once its patch is applied.
struct Applied {
    empty: bool,
    outcome: Outcome,
    warnings: Vec<String>,
}

fn env_of(pod: &Value, field: &str, i: usize) -> BTreeMap<String, String> {
    pod["spec"][field][i]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

#[test]
fn injects_role_token_volume_and_mount_in_every_container() {
    let p = pod()
        .with_container("app")
        .with_container("sidecar")
        .with_init_container("init", false)
        .with_init_container("native-sidecar", true);
    let (out, m) = run(&p, &sa().role(ARN), &Settings::default());
    assert_eq!(m.outcome, Outcome::Mutated);
    for (field, i) in [
        ("containers", 0),
        ("containers", 1),
        ("initContainers", 0),
        ("initContainers", 1),
    ] {
        let env = env_of(&out, field, i);
        assert_eq!(env["AWS_ROLE_ARN"], ARN);
        assert_eq!(
            env["AWS_WEB_IDENTITY_TOKEN_FILE"],
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
        );
        assert_eq!(
            out["spec"][field][i]["volumeMounts"][0],
            json!({"name": "aws-iam-token", "readOnly": true, "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"})
        );
    }
    assert_eq!(
        out["spec"]["volumes"][0],
        json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken":
            {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}})
    );
    assert_eq!(
        out["metadata"]["annotations"]["storage-valet.dev/injected-role-arn"],
        ARN
    );
    assert_eq!(
        out["metadata"]["annotations"]["storage-valet.dev/injected-mode"],
        "web-identity"
    );
}

#[test]
fn unannotated_service_account_changes_nothing() {
    let (_, m) = run(&pod().with_container("app"), &sa(), &Settings::default());
    assert_eq!(m.outcome, Outcome::NotConfigured);
    assert!(m.empty && m.warnings.is_empty());
}

#[test]
fn invalid_role_arn_is_a_warning_and_no_mutation() {
    let (_, m) = run(
        &pod().with_container("app"),
        &sa().role("s3-reader"),
        &Settings::default(),
    );
    assert_eq!(m.outcome, Outcome::Invalid);
    assert!(m.empty);
    assert!(
        m.warnings[0].contains("team-a/app")
            && m.warnings[0].contains("eks.amazonaws.com/role-arn")
    );
}

#[test]
fn audience_and_expiration_from_sa_and_pod_override() {
    let s = sa()
        .role(ARN)
        .ann("eks.amazonaws.com/audience", "my-aud")
        .ann("eks.amazonaws.com/token-expiration", "7200");
    let (out, _) = run(&pod().with_container("app"), &s, &Settings::default());
    let sat = &out["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(sat["audience"], "my-aud");
    assert_eq!(sat["expirationSeconds"], 7200);

    let p = pod()
        .with_container("app")
        .annotated("eks.amazonaws.com/token-expiration", "100");
    let (out, _) = run(&p, &s, &Settings::default());
    assert_eq!(
        out["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        600
    );

    let p = pod()
        .with_container("app")
        .annotated("eks.amazonaws.com/token-expiration", "soon");
    let (out, m) = run(&p, &s, &Settings::default());
    assert_eq!(
        out["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        7200
    );
    assert!(
        m.warnings[0].contains("token-expiration"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn regional_sts_annotation_overrides_flag_both_ways() {
    let on = Settings {
        sts_regional_endpoint: true,
        ..Settings::default()
    };
    let (out, _) = run(&pod().with_container("app"), &sa().role(ARN), &on);
    assert_eq!(
        env_of(&out, "containers", 0)["AWS_STS_REGIONAL_ENDPOINTS"],
        "regional"
    );
    let s = sa()
        .role(ARN)
        .ann("eks.amazonaws.com/sts-regional-endpoints", "false");
    let (out, _) = run(&pod().with_container("app"), &s, &on);
    assert!(!env_of(&out, "containers", 0).contains_key("AWS_STS_REGIONAL_ENDPOINTS"));
    let s = sa()
        .role(ARN)
        .ann("eks.amazonaws.com/sts-regional-endpoints", "true");
    let (out, _) = run(&pod().with_container("app"), &s, &Settings::default());
    assert_eq!(
        env_of(&out, "containers", 0)["AWS_STS_REGIONAL_ENDPOINTS"],
        "regional"
    );
}

#[test]
fn region_flag_sets_both_region_vars_unless_one_is_set() {
    let settings = Settings {
        aws_default_region: Some("eu-west-1".into()),
        ..Settings::default()
    };
    let (out, _) = run(&pod().with_container("app"), &sa().role(ARN), &settings);
    let env = env_of(&out, "containers", 0);
    assert_eq!(
        (
            env["AWS_REGION"].as_str(),
            env["AWS_DEFAULT_REGION"].as_str()
        ),
        ("eu-west-1", "eu-west-1")
    );
    let p = pod()
        .with_container("app")
        .with_env(0, "AWS_DEFAULT_REGION", "us-east-2");
    let (out, _) = run(&p, &sa().role(ARN), &settings);
    let env = env_of(&out, "containers", 0);
    assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-2");
    assert!(!env.contains_key("AWS_REGION"));
}

#[test]
fn bucket_region_sets_both_region_vars_when_the_flag_is_unset() {
    let s = sa()
        .role(ARN)
        .ann("storage-valet.dev/bucket", "acme-media")
        .ann("storage-valet.dev/bucket-region", "ap-south-2");
    let (out, _) = run(&pod().with_container("app"), &s, &Settings::default());
    let env = env_of(&out, "containers", 0);
    assert_eq!(env["AWS_REGION"], "ap-south-2");
    assert_eq!(env["AWS_DEFAULT_REGION"], "ap-south-2");
    assert_eq!(env["S3_REGION"], "ap-south-2");
    // --aws-default-region wins, as the peer's flag does.
    let flag = Settings {
        aws_default_region: Some("eu-west-1".into()),
        ..Settings::default()
    };
    let env = env_of(
        &run(&pod().with_container("app"), &s, &flag).0,
        "containers",
        0,
    );
    assert_eq!(env["AWS_REGION"], "eu-west-1");
    assert_eq!(env["S3_REGION"], "ap-south-2");
    // A container that sets either region variable keeps its choice.
    let p = pod()
        .with_container("app")
        .with_env(0, "AWS_REGION", "us-east-2");
    let env = env_of(&run(&p, &s, &Settings::default()).0, "containers", 0);
    assert_eq!(env["AWS_REGION"], "us-east-2");
    assert!(!env.contains_key("AWS_DEFAULT_REGION"));
    // An invalid region injects nothing (and is warned about).
    let bad = sa()
        .role(ARN)
        .ann("storage-valet.dev/bucket-region", "mars");
    let env = env_of(
        &run(&pod().with_container("app"), &bad, &Settings::default()).0,
        "containers",
        0,
    );
    assert!(!env.contains_key("AWS_REGION"));
}

#[test]
fn user_set_env_is_never_overridden() {
    // The user's own role: neither role nor token file is touched.
    let p = pod()
        .with_container("app")
        .with_env(0, "AWS_WEB_IDENTITY_TOKEN_FILE", "/mine");
    let (out, _) = run(&p, &sa().role(ARN), &Settings::default());
    let env = env_of(&out, "containers", 0);
    assert_eq!(env["AWS_WEB_IDENTITY_TOKEN_FILE"], "/mine");
    assert!(!env.contains_key("AWS_ROLE_ARN"));
    // Bucket env the container sets itself is kept too.
    let p = pod()
        .with_container("app")
        .with_env(0, "S3_BUCKET", "other");
    let (out, _) = run(
        &p,
        &sa().role(ARN).ann("storage-valet.dev/bucket", "acme/x/"),
        &Settings::default(),
    );
    let env = env_of(&out, "containers", 0);
    assert_eq!(
        (env["S3_BUCKET"].as_str(), env["S3_PREFIX"].as_str()),
        ("other", "x/")
    );
}

#[test]
fn complete_container_is_left_alone_like_the_peer() {
    let settings = Settings {
        aws_default_region: Some("eu-west-1".into()),
        ..Settings::default()
    };
    let p = pod()
        .with_container("app")
        .with_env(0, "AWS_ROLE_ARN", "arn:aws:iam::999999999999:role/mine")
        .with_env(0, "AWS_REGION", "us-east-1")
        .with_env(0, "AWS_STS_REGIONAL_ENDPOINTS", "legacy");
    let (out, _) = run(&p, &sa().role(ARN), &settings);
    assert!(out["spec"]["containers"][0]["volumeMounts"].is_null());
    assert_eq!(env_of(&out, "containers", 0).len(), 3);
}

#[test]
fn skip_containers_covers_containers_and_init_containers() {
    let p = pod()
        .with_container("app")
        .with_container("istio-proxy")
        .with_init_container("istio-init", false)
        .annotated(
            "eks.amazonaws.com/skip-containers",
            "istio-proxy, istio-init",
        );
    let (out, _) = run(&p, &sa().role(ARN), &Settings::default());
    assert!(env_of(&out, "containers", 0).contains_key("AWS_ROLE_ARN"));
    assert!(out["spec"]["containers"][1]["env"].is_null());
    assert!(out["spec"]["initContainers"][0]["env"].is_null());
}

#[test]
fn windows_pods_get_the_windows_token_path() {
    for key in ["kubernetes.io/os", "beta.kubernetes.io/os"] {
        let (out, _) = run(
            &pod().with_container("app").on_windows(key),
            &sa().role(ARN),
            &Settings::default(),
        );
        assert_eq!(
            env_of(&out, "containers", 0)["AWS_WEB_IDENTITY_TOKEN_FILE"],
            r"C:\var\run\secrets\eks.amazonaws.com\serviceaccount\token"
        );
    }
}

#[test]
fn bucket_annotations_become_env_and_are_recorded() {
    let s = sa()
        .role(ARN)
        .ann("storage-valet.dev/bucket", "acme-media/team-a/")
        .ann("storage-valet.dev/buckets", "logs=acme-logs")
        .ann("storage-valet.dev/bucket-region", "eu-west-1");
    let (out, _) = run(&pod().with_container("app"), &s, &Settings::default());
    let env = env_of(&out, "containers", 0);
    assert_eq!(env["S3_BUCKET"], "acme-media");
    assert_eq!(env["S3_PREFIX"], "team-a/");
    assert_eq!(env["S3_BUCKET_LOGS"], "acme-logs");
    assert_eq!(env["S3_REGION"], "eu-west-1");
    let recorded: Value = serde_json::from_str(
        out["metadata"]["annotations"]["storage-valet.dev/injected-bucket-env"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(recorded["S3_BUCKET_LOGS"], "acme-logs");
}

#[test]
fn buckets_without_role_warn() {
    let (_, m) = run(
        &pod().with_container("app"),
        &sa().ann("storage-valet.dev/bucket", "acme"),
        &Settings::default(),
    );
    assert_eq!(m.outcome, Outcome::Invalid);
    assert!(
        m.warnings[0].contains("no eks.amazonaws.com/role-arn"),
        "{:?}",
        m.warnings
    );
}

#[test]
fn foreign_volume_with_the_token_name_blocks_injection() {
    let p = pod()
        .with_container("app")
        .with_volume(json!({"name": "aws-iam-token", "hostPath": {"path": "/x"}}));
    let (_, m) = run(&p, &sa().role(ARN), &Settings::default());
    assert_eq!(m.outcome, Outcome::Conflict);
    assert!(m.empty);
    assert!(m.warnings[0].contains("rename that volume"));
}

#[test]
fn existing_volumes_are_appended_to() {
    let p = pod()
        .with_container("app")
        .with_volume(json!({"name": "data", "emptyDir": {}}));
    let (out, _) = run(&p, &sa().role(ARN), &Settings::default());
    assert_eq!(out["spec"]["volumes"][0]["name"], "data");
    assert_eq!(out["spec"]["volumes"][1]["name"], "aws-iam-token");
}

#[test]
fn container_credentials_take_precedence_and_label_the_pod() {
    let settings = Settings {
        container_credentials: ContainerCredentialsSettings {
            full_uri: "http://169.254.170.23/v1/credentials".into(),
            ..Settings::default().container_credentials
        },
        ..Settings::default()
    };
    let p = pod().with_container("app");
    let sa = sa().role(ARN).config();
    let m = mutate(&p.view(), "team-a", &sa, true, &settings, 1000);
    let mut out = p.0.clone();
    json_patch::patch(&mut out, &m.patch()).unwrap();
    let env = env_of(&out, "containers", 0);
    assert!(!env.contains_key("AWS_ROLE_ARN"));
    assert_eq!(
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
        "http://169.254.170.23/v1/credentials"
    );
    assert_eq!(
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"],
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
    );
    assert_eq!(
        out["metadata"]["labels"]["eks.amazonaws.com/pod-identity"],
        "enabled"
    );
    // Default lifetime is jittered into [600, 86400].
    let sat = &out["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(sat["expirationSeconds"], 1600);
    assert_eq!(sat["audience"], "pods.eks.amazonaws.com");
}

#[test]
fn second_mutation_is_empty() {
    let s = sa().role(ARN).ann("storage-valet.dev/bucket", "acme");
    let p = pod()
        .with_container("app")
        .with_init_container("init", true);
    let (once, _) = run(&p, &s, &Settings::default());
    let (_, again) = run(&PodBuilder(once), &s, &Settings::default());
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert!(again.empty);
}

#[test]
fn annotation_keys_are_escaped_in_paths() {
    let p = pod().with_container("app").annotated("other", "x");
    let (sa, settings) = (sa().role(ARN).config(), Settings::default());
    let m = mutate(&p.view(), "team-a", &sa, false, &settings, 0);
    let paths: Vec<String> = m
        .patch()
        .0
        .iter()
        .map(|op| match op {
            json_patch::PatchOperation::Add(a) => a.path.to_string(),
            _ => panic!("only add operations"),
        })
        .collect();
    assert!(
        paths.contains(&"/metadata/annotations/storage-valet.dev~1injected-role-arn".to_string()),
        "{paths:?}"
    );
}

#[test]
fn go_path_join() {
    assert_eq!(clean_join("/var/run/x/", "token"), "/var/run/x/token");
    assert_eq!(clean_join("/a//b/./c", "../t"), "/a/b/t");
    assert_eq!(clean_join("rel", "t"), "rel/t");
    // The fast path agrees with the general one.
    let parts = ["", ".", "..", "a", "bc"];
    for a in parts {
        for b in parts {
            for file in ["t", "..", ".", "x/y", ""] {
                for dir in [
                    format!("/{a}/{b}"),
                    format!("/{a}"),
                    format!("{a}/{b}"),
                    format!("/{a}/{b}/"),
                ] {
                    assert_eq!(
                        clean_join(&dir, file),
                        super::clean_join_general(&dir, file),
                        "{dir:?} {file:?}"
                    );
                }
            }
        }
    }
}
