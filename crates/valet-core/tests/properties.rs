//! Properties of the mutation over generated pods, ServiceAccounts and
//! settings: the patch applies, never removes or rewrites what the user
//! wrote, a second mutation changes nothing, and the webhook's fast path
//! (borrowed decode, patch written as bytes) gives the typed patch.

use std::collections::BTreeMap;

use base64::Engine;
use json_patch::{Patch, PatchOperation};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use valet_core::admission::{self, LookupFailure, SaLookup};
use valet_core::settings::Settings;
use valet_core::{PodView, SaConfig, mutate};

const CASES: u32 = 2000;

const ENV_NAMES: [&str; 10] = [
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "S3_BUCKET",
    "S3_PREFIX_LOGS",
    "LOG_LEVEL",
    "HOME",
];

fn container(name: String) -> impl Strategy<Value = Value> {
    (
        proptest::option::of(proptest::sample::subsequence(ENV_NAMES.to_vec(), 0..5)),
        proptest::option::of(proptest::sample::subsequence(
            vec!["aws-iam-token", "data", "eks-pod-identity-token"],
            0..3,
        )),
        any::<bool>(),
        "[a-z]{0,8}",
    )
        .prop_map(move |(env, mounts, extra, value)| {
            let mut c = json!({"name": name, "image": "registry/app:1", "resources": {}});
            if let Some(env) = env {
                c["env"] = env
                    .iter()
                    .map(|n| json!({"name": n, "value": value}))
                    .collect();
            }
            if let Some(m) = mounts {
                c["volumeMounts"] = m
                    .iter()
                    .map(|n| json!({"name": n, "mountPath": format!("/m/{n}")}))
                    .collect();
            }
            if extra {
                // A field the mutation does not know must survive untouched.
                c["futureField"] = json!({"nested": [1, 2, {"x": null}]});
                c["restartPolicy"] = json!("Always");
            }
            c
        })
}

fn containers(prefix: &'static str, max: usize) -> impl Strategy<Value = Option<Vec<Value>>> {
    proptest::option::of((0..=max).prop_flat_map(move |n| {
        (0..n)
            .map(|i| container(format!("{prefix}{i}")))
            .collect::<Vec<_>>()
    }))
}

prop_compose! {
    fn pod()(
        containers in containers("c", 3),
        init in containers("i", 2),
        volumes in proptest::option::of(proptest::sample::subsequence(vec![0u8, 1, 2, 3], 0..3)),
        labels in proptest::option::of(proptest::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..3)),
        annotations in proptest::option::of(proptest::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..3)),
        skip in proptest::option::of(prop_oneof![Just("c0"), Just("c1, i0"), Just("\"bad")]),
        expiration in proptest::option::of(prop_oneof![Just("3600"), Just("5"), Just("x")]),
        windows in any::<bool>(),
    ) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"serviceAccountName": "sa"}});
        if let Some(c) = containers { pod["spec"]["containers"] = json!(c); }
        if let Some(c) = init { pod["spec"]["initContainers"] = json!(c); }
        if let Some(v) = volumes {
            pod["spec"]["volumes"] = v.iter().map(|k| match k {
                0 => json!({"name": "data", "emptyDir": {}}),
                1 => json!({"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "path": "token"}}]}}),
                2 => json!({"name": "eks-pod-identity-token", "hostPath": {"path": "/x"}}),
                _ => json!({"name": "cfg", "configMap": {"name": "cfg"}}),
            }).collect();
        }
        if let Some(l) = labels { pod["metadata"]["labels"] = json!(l); }
        let mut ann = annotations.map(|a| json!(a));
        if let Some(s) = skip { ann.get_or_insert(json!({}))["eks.amazonaws.com/skip-containers"] = json!(s); }
        if let Some(e) = expiration { ann.get_or_insert(json!({}))["eks.amazonaws.com/token-expiration"] = json!(e); }
        if let Some(a) = ann { pod["metadata"]["annotations"] = a; }
        if windows { pod["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"}); }
        pod
    }
}

prop_compose! {
    fn service_account()(
        role in proptest::option::of(prop_oneof![
            Just("arn:aws:iam::111122223333:role/app"),
            Just("arn:aws-us-gov:iam::111122223333:role/p/app"),
            Just("not-an-arn"),
        ]),
        audience in proptest::option::of(Just("aud")),
        sts in proptest::option::of(prop_oneof![Just("true"), Just("false"), Just("maybe")]),
        bucket in proptest::option::of(prop_oneof![Just("acme"), Just("acme/x/"), Just("BAD")]),
        buckets in proptest::option::of(prop_oneof![Just("logs=acme-logs"), Just("a=acme,b=acme-b/p/")]),
        region in proptest::option::of(Just("eu-west-1")),
    ) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: Option<&str>| { if let Some(v) = v { a.insert(k.to_string(), v.to_string()); } };
        put("eks.amazonaws.com/role-arn", role);
        put("eks.amazonaws.com/audience", audience);
        put("eks.amazonaws.com/sts-regional-endpoints", sts);
        put("storage-valet.dev/bucket", bucket);
        put("storage-valet.dev/buckets", buckets);
        put("storage-valet.dev/bucket-region", region);
        a
    }
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        proptest::option::of(Just("us-east-2".to_string())),
        any::<bool>(),
    )
        .prop_map(|(region, sts)| Settings {
            aws_default_region: region,
            sts_regional_endpoint: sts,
            ..Settings::default()
        })
}

/// True when everything in `before` is still in `after`, unchanged: objects
/// keep every key, arrays keep every element at its index.
fn preserved(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => b
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|w| preserved(v, w))),
        (Value::Array(b), Value::Array(a)) => {
            a.len() >= b.len() && b.iter().zip(a).all(|(v, w)| preserved(v, w))
        }
        (b, a) => b == a,
    }
}

/// The patch for `pod`, decided twice: by `mutate` on a pod read from a
/// `serde_json::Value` (owned strings, typed patch, as `valet mutate` does),
/// and by the webhook's path (the pod inside an AdmissionReview body,
/// borrowed strings, the patch written straight to bytes, base64 in the
/// encoded review). Both must give the same patch.
fn decide(pod: &Value, sa: &SaConfig, cc: bool, settings: &Settings, jitter: u64) -> Patch {
    let view = PodView::deserialize(pod.clone()).expect("generated pods parse");
    let typed = mutate(&view, "ns", sa, cc, settings, jitter).patch();

    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "ns", "operation": "CREATE", "object": pod}}))
    .unwrap();
    let req = admission::decode(&body).expect("review decodes");
    let (response, _) = admission::admit(
        &req,
        SaLookup::Found(sa),
        cc,
        settings,
        LookupFailure::Allow,
        jitter,
    );
    let review: Value =
        serde_json::from_slice(&admission::encode(&response)).expect("review is JSON");
    let written: Patch = match review["response"]["patch"].as_str() {
        Some(b64) => serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .expect("written patch is a JSON Patch"),
        None => Patch(Vec::new()),
    };
    assert_eq!(
        written, typed,
        "webhook path and typed path disagree for {pod}"
    );
    typed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn patch_applies_only_adds_and_preserves_the_input(
        pod in pod(), sa in service_account(), settings in settings(), cc in any::<bool>(), jitter in any::<u64>()
    ) {
        let cfg = SaConfig::from_annotations(&sa, &settings.keys);
        let patch = decide(&pod, &cfg, cc, &settings, jitter);
        prop_assert!(patch.0.iter().all(|op| matches!(op, PatchOperation::Add(_))));
        let mut out = pod.clone();
        json_patch::patch(&mut out, &patch).map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
        prop_assert!(preserved(&pod, &out), "input not preserved:\n{pod}\n{out}");
        // The result is still a pod our reader accepts.
        PodView::deserialize(out).unwrap();
    }

    #[test]
    fn mutating_a_mutated_pod_changes_nothing(
        pod in pod(), sa in service_account(), settings in settings(), cc in any::<bool>(), jitter in any::<u64>()
    ) {
        let cfg = SaConfig::from_annotations(&sa, &settings.keys);
        let first = decide(&pod, &cfg, cc, &settings, jitter);
        let mut once = pod.clone();
        json_patch::patch(&mut once, &first).unwrap();
        let second = decide(&once, &cfg, cc, &settings, jitter.wrapping_add(1));
        prop_assert!(second.0.is_empty(), "second patch not empty: {second:?}\npod: {once}");
    }
}
