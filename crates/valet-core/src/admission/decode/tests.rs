//! The decoder against an independent reading of the same bytes: a
//! `serde_json::Value` of the whole body, from which every field the
//! webhook reads is taken by path. Mutated reviews, arbitrary bytes and
//! JSON edge cases must decode to what the Value holds, or be refused.

use std::borrow::Cow;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// What the webhook reads of a review, as comparable text.
fn seen(req: &PodRequest<'_>) -> Value {
    let s = |v: &Option<Str<'_>>| v.as_deref().map(str::to_owned);
    let pod = req.object.as_ref().map(|p| {
        let map = |m: &Option<crate::pod::StrMap<'_>>| {
            m.as_ref().map(|m| {
                // As in Go, the last of duplicated keys wins.
                let mut out = serde_json::Map::new();
                for (k, v) in &m.0 {
                    out.insert(k.to_string(), json!(v.as_str()));
                }
                out
            })
        };
        let names = |v: &Option<Vec<crate::pod::Named<'_>>>| {
            v.as_ref()
                .map(|v| v.iter().map(|n| n.name.to_string()).collect::<Vec<_>>())
        };
        let containers = |c: &Option<Vec<crate::pod::ContainerView<'_>>>| {
            c.as_ref().map(|c| {
                c.iter()
                    .map(|c| json!([c.name.as_str(), names(&c.env), names(&c.volume_mounts)]))
                    .collect::<Vec<_>>()
            })
        };
        json!({
            "name": s(&p.metadata.name), "generateName": s(&p.metadata.generate_name),
            "namespace": s(&p.metadata.namespace),
            "labels": map(&p.metadata.labels), "annotations": map(&p.metadata.annotations),
            "serviceAccountName": s(&p.spec.service_account_name),
            "serviceAccount": s(&p.spec.service_account),
            "nodeSelector": map(&p.spec.node_selector),
            "volumes": p.spec.volumes.as_ref().map(|v| v.iter().map(|v| json!([
                v.name.as_str(), v.projected.as_ref().map(|_| v.token_audiences().collect::<Vec<_>>())
            ])).collect::<Vec<_>>()),
            "containers": containers(&p.spec.containers),
            "initContainers": containers(&p.spec.init_containers),
        })
    });
    json!({
        "apiVersion": req.api_version.as_str(), "uid": req.uid.as_str(),
        "kind": [req.kind.group.as_str(), req.kind.version.as_str(), req.kind.kind.as_str()],
        "subResource": s(&req.sub_resource), "namespace": s(&req.namespace),
        "operation": req.operation.as_str(), "object": pod,
    })
}

/// The same, taken from a Value by path (null and absent alike are None).
fn expected(v: &Value) -> Value {
    let r = &v["request"];
    let opt = |v: &Value| v.as_str().map(str::to_owned);
    let or_empty = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let pod = r.get("object").filter(|o| !o.is_null()).map(|p| {
        let (m, s) = (&p["metadata"], &p["spec"]);
        let map = |v: &Value| v.as_object().cloned();
        let names = |v: &Value| {
            v.as_array()
                .map(|v| v.iter().map(|n| or_empty(&n["name"])).collect::<Vec<_>>())
        };
        let containers = |v: &Value| {
            v.as_array().map(|c| {
                c.iter()
                    .map(|c| {
                        json!([
                            or_empty(&c["name"]),
                            names(&c["env"]),
                            names(&c["volumeMounts"])
                        ])
                    })
                    .collect::<Vec<_>>()
            })
        };
        let volumes = s["volumes"].as_array().map(|v| {
            v.iter()
                .map(|v| {
                    let audiences = v["projected"].as_object().map(|p| {
                        p.get("sources")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s["serviceAccountToken"].as_object())
                            .map(|t| t.get("audience").and_then(Value::as_str).unwrap_or(""))
                            .collect::<Vec<_>>()
                    });
                    json!([or_empty(&v["name"]), audiences])
                })
                .collect::<Vec<_>>()
        });
        json!({
            "name": opt(&m["name"]), "generateName": opt(&m["generateName"]),
            "namespace": opt(&m["namespace"]),
            "labels": map(&m["labels"]), "annotations": map(&m["annotations"]),
            "serviceAccountName": opt(&s["serviceAccountName"]),
            "serviceAccount": opt(&s["serviceAccount"]),
            "nodeSelector": map(&s["nodeSelector"]),
            "volumes": volumes,
            "containers": containers(&s["containers"]),
            "initContainers": containers(&s["initContainers"]),
        })
    });
    let k = &r["kind"];
    json!({
        "apiVersion": v["apiVersion"].as_str().unwrap_or(REVIEW_API_VERSION),
        "uid": or_empty(&r["uid"]),
        "kind": [or_empty(&k["group"]), or_empty(&k["version"]), or_empty(&k["kind"])],
        "subResource": opt(&r["subResource"]), "namespace": opt(&r["namespace"]),
        "operation": or_empty(&r["operation"]), "object": pod,
    })
}

/// A decoded body reads as its Value says.
fn reads_as_the_value_says(body: &[u8]) -> Result<(), TestCaseError> {
    let Ok(req) = decode(body) else {
        return Ok(());
    };
    // Skipped strings are not checked for UTF-8 (nothing reads them); the
    // Value then sees them replaced, which changes nothing it is asked.
    let text = String::from_utf8_lossy(body);
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        // What is skipped is checked for syntax only: a number is not
        // converted (nor range-checked), an escape not decoded.
        Err(e)
            if [
                "number out of range",
                "unexpected end of hex escape",
                "lone leading surrogate",
                "invalid unicode code point",
            ]
            .iter()
            .any(|m| e.to_string().starts_with(m)) =>
        {
            return Ok(());
        }
        Err(e) => {
            prop_assert!(false, "decoded a body that is not JSON ({e}): {text:?}");
            unreachable!()
        }
    };
    // serde's derive also reads a struct from an array of its fields in
    // order (no API server sends one); the paths below do not.
    if !struct_as_array(&v, false) {
        prop_assert_eq!(seen(&req), expected(&v), "{}", text);
    }
    Ok(())
}

fn struct_as_array(v: &Value, in_array: bool) -> bool {
    const STRUCTS: &[&str] = &[
        "request",
        "kind",
        "object",
        "metadata",
        "spec",
        "projected",
        "serviceAccountToken",
    ];
    match v {
        Value::Array(a) => in_array || a.iter().any(|e| struct_as_array(e, true)),
        Value::Object(o) => o.iter().any(|(k, v)| {
            (v.is_array() && STRUCTS.contains(&k.as_str())) || struct_as_array(v, false)
        }),
        _ => false,
    }
}

/// A review with a bit of everything the decoder meets: skipped subtrees of
/// every JSON type, escapes and non-ASCII in kept and skipped strings,
/// nulls, empty containers, duplicate label keys.
fn review() -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE", "subResource": null,
            "userInfo": {"username": "système", "groups": ["a", "b\"c"], "extra": {}},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "generateName": "app-", "namespace": null,
                    "labels": {"app": "web", "tab": "a\tb", "k": "2"},
                    "annotations": {"note": "é\u{1F600}\\/", "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"},
                    "managedFields": [{"fieldsV1": {"f:spec": {".": {}}}, "n": [1, -2.5e+3, 0, true, false, null, [], {}]}]
                },
                "spec": {
                    "serviceAccountName": "app", "serviceAccount": null, "nodeSelector": {"kubernetes.io/os": "linux"},
                    "volumes": [{"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"audience": "sts.amazonaws.com", "path": "token", "expirationSeconds": 86400}}, {"configMap": {"name": "ca"}}], "defaultMode": 420}}, {"name": "empty", "emptyDir": {}}],
                    "containers": [{"name": "app", "image": "x", "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}], "volumeMounts": null, "ports": [{"containerPort": 8080}]}],
                    "initContainers": [],
                    "tolerations": [{"key": "k", "tolerationSeconds": 300}]
                }
            },
            "oldObject": null, "dryRun": false
        }
    }))
    .unwrap()
}

const ALPHABET: &[u8] = b"{}[]\":,\\/ \n\tu0189aAfFeE+-.ntrlsbx\x00\x1f\x7f\xc3\xa9\xff";

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let body = review();
    let len = body.len();
    proptest::collection::vec((0..len, 0..3u8, proptest::sample::select(ALPHABET)), 1..4).prop_map(
        move |edits| {
            let mut body = body.clone();
            for (at, op, byte) in edits {
                let at = at.min(body.len().saturating_sub(1));
                match op {
                    0 => body[at] = byte,
                    1 => body.insert(at, byte),
                    _ => {
                        body.remove(at);
                    }
                }
            }
            body
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_reviews_read_as_their_value_says(body in mutated()) {
        reads_as_the_value_says(&body)?;
    }

    #[test]
    fn arbitrary_bytes_are_errors_not_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        reads_as_the_value_says(&body)?;
    }

    #[test]
    fn small_json_texts_in_read_places(
        body in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..40)
    ) {
        reads_as_the_value_says(&body)?;
        for prefix in [
            &br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"x":"#[..],
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"labels":"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"containers":[{"name":"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"volumes":"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"#,
        ] {
            let mut wrapped = prefix.to_vec();
            wrapped.extend_from_slice(&body);
            wrapped.extend_from_slice(b"}}}}");
            reads_as_the_value_says(&wrapped)?;
        }
    }
}

#[test]
fn the_review_reads_as_its_value_says() {
    let body = review();
    reads_as_the_value_says(&body).unwrap();
    let req = decode(&body).unwrap();
    let pod = req.object.as_ref().unwrap();
    assert_eq!(pod.annotation("note"), Some("é\u{1F600}\\/"));
    assert_eq!(
        pod.spec.volumes.as_ref().unwrap()[0]
            .token_audiences()
            .collect::<Vec<_>>(),
        ["sts.amazonaws.com"]
    );
    // Every truncation is an error.
    for end in 0..body.len() {
        assert!(decode(&body[..end]).is_err(), "{end}");
    }
}

#[test]
fn last_duplicate_label_wins() {
    let body = br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"labels":{"k":"1","k":"2"}}}}}"#;
    let req = decode(body).unwrap();
    let labels = req.object.unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("k"), Some("2"));
}

#[test]
fn plain_strings_borrow_and_escaped_keys_match() {
    let body = br#"{"request":{"u\u0069d":"a\"b","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"name":"web"}}}}"#;
    let req = decode(body).unwrap();
    assert_eq!(req.uid, "a\"b");
    assert!(matches!(req.uid.0, Cow::Owned(_)));
    assert!(matches!(req.operation.0, Cow::Borrowed("CREATE")));
    let name = req.object.unwrap().metadata.name.unwrap();
    assert!(matches!(name.0, Cow::Borrowed("web")), "inside Option too");
}

#[test]
fn errors_say_what_and_where() {
    let msg = |body: &[u8]| decode(body).unwrap_err().to_string();
    assert_eq!(
        msg(b"{not json"),
        "body is not an AdmissionReview: key must be a string at line 1 column 2"
    );
    assert_eq!(
        msg(b"{\"request\":\n  {\"uid\": 1}}"),
        "body is not an AdmissionReview: invalid type: integer `1`, expected a string at line 2 column 11"
    );
    assert!(msg(br#"{"request":{"uid":"a","uid":"b"}}"#).contains("duplicate field `uid`"));
    assert!(
        msg(br#"{"request":{"uid":"a","operation":"CREATE"}}"#).contains("missing field `kind`")
    );
    assert!(msg(br#"{"request":null} x"#).contains("trailing characters at line 1 column 18"));
    assert!(msg(br#"{"a":[1,2}"#).contains("expected `,` or `]` at line 1 column 10"));
    assert!(msg(b"{\"a\":\"\x01\"}").contains("control character"));
    assert!(matches!(decode(b"{}"), Err(DecodeError::NoRequest)));
}

/// Skipped values are skipped without recursion; read ones are bounded by
/// serde_json's recursion limit: an error, never a stack overflow.
#[test]
fn deep_nesting_is_not_a_stack_overflow() {
    let depth = 100_000;
    let mut body = br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","x":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body.extend_from_slice(b"}}");
    assert!(decode(&body).is_ok());
    body.truncate(body.len() - 3);
    assert!(
        decode(&body)
            .unwrap_err()
            .to_string()
            .contains("EOF while parsing a list")
    );
    let mut body = br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"labels":{"k":"v"},"annotations":"#.to_vec();
    body.extend(std::iter::repeat_n(b'{', depth));
    assert!(decode(&body).is_err());
}

#[test]
fn edge_cases_read_as_their_value_says() {
    let values: &[&[u8]] = &[
        b"0",
        b"-0",
        b"1e999999",
        b"-1.5E+2",
        b"1.",
        b"01",
        b"-",
        b"1e",
        b".5",
        b"+1",
        b"123456789012345678901234567890",
        b"tru",
        b"nul",
        b"true ",
        b"[1 2]",
        b"{\"a\" 1}",
        b"\"\\ud800\"",
        b"\"\\udc00\\ud800\"",
        b"\"\xff\"",
        b"\"\\u00e9\"",
        b"\"\\q\"",
        b"\"\x7f\"",
        b"\"a\nb\"",
        b"{\"\xff\":1}",
        b"{\"\\ud800\":1}",
        b"[]",
        b"{}",
        b"null",
    ];
    for value in values {
        for template in [
            &br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","x":@}}"#[..],
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"serviceAccountName":@}}}}"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"labels":{"k":@}}}}}"#,
            br#"{"request":{"uid":"u","kind":{"kind":@},"operation":"CREATE"}}"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":@}}}"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{@:1}}}"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"containers":[{"name":"c","env":[{"name":@}]}]}}}}"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"containers":[{"name":"c","env":[{"name":"A","value":@}]}]}}}}"#,
        ] {
            let at = template.iter().position(|&b| b == b'@').unwrap();
            let body = [&template[..at], value, &template[at + 1..]].concat();
            reads_as_the_value_says(&body).unwrap();
        }
    }
}
