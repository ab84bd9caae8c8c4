use proptest::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::admission::{DecodeError, PodRequest, REVIEW_API_VERSION, decode};

/// What `decode` did before this reader: serde_json into the serde derives.
/// The reader must accept and refuse the same bodies and read the same.
fn decode_with_serde(body: &[u8]) -> std::result::Result<PodRequest<'_>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a> {
        #[serde(default, borrow)]
        api_version: Option<Str<'a>>,
        #[serde(default, borrow)]
        request: Option<PodRequest<'a>>,
    }
    let review: Review<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut req = review.request.ok_or("no request")?;
    req.api_version = review.api_version.unwrap_or(Str::from(REVIEW_API_VERSION));
    Ok(req)
}

fn same_as_serde(body: &[u8]) -> std::result::Result<(), TestCaseError> {
    let ours = decode(body);
    let theirs = decode_with_serde(body);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            // serde has no field for the object's text; it is checked
            // against the object serde sees.
            let mut a = a.clone();
            let text = std::mem::take(&mut a.object_json);
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
            if a.object.is_some() {
                let object = serde_json::from_slice::<crate::pod::PodView>(text);
                prop_assert_eq!(format!("{:?}", object.ok()), format!("{:?}", a.object));
                // (Skipped strings need not be UTF-8, which a Value refuses.)
                if let Ok(whole) = serde_json::from_slice::<serde_json::Value>(body) {
                    let object: serde_json::Value = serde_json::from_slice(text).unwrap();
                    prop_assert_eq!(&object, &whole["request"]["object"]);
                }
            } else {
                prop_assert!(text.is_empty());
            }
        }
        (Err(DecodeError::NoRequest), Err(e)) => prop_assert_eq!(e.as_str(), "no request"),
        (Err(_), Err(_)) => {}
        // See `structs_written_as_arrays_are_refused`.
        (Err(DecodeError::Json(e)), Ok(_))
            if e.message()
                .starts_with("invalid type: sequence, expected struct") => {}
        _ => prop_assert!(
            false,
            "{:?}: ours {:?}, serde {:?}",
            String::from_utf8_lossy(body),
            ours.map(|_| ()),
            theirs.map(|_| ())
        ),
    }
    Ok(())
}

/// A review with a bit of everything the reader meets: skipped subtrees of
/// every JSON type, escapes and non-ASCII in kept and skipped strings,
/// nulls, empty containers.
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
                    "labels": {"app": "web", "tab": "a\tb", "k": "1", "k": "2"},
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
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_reviews_read_as_serde_reads_them(body in mutated()) {
        same_as_serde(&body)?;
    }

    #[test]
    fn arbitrary_bytes_are_errors_not_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        same_as_serde(&body)?;
    }

    #[test]
    fn small_json_texts_read_as_serde_reads_them(
        body in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..40)
    ) {
        let mut wrapped = br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"x":"#.to_vec();
        wrapped.extend_from_slice(&body);
        wrapped.extend_from_slice(b"}}}}");
        same_as_serde(&wrapped)?;
        same_as_serde(&body)?;
        for prefix in [
            &br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"metadata":{"labels":"#[..],
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"containers":[{"name":"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"volumes":"#,
            br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"#,
        ] {
            let mut wrapped = prefix.to_vec();
            wrapped.extend_from_slice(&body);
            wrapped.extend_from_slice(b"}}}}");
            same_as_serde(&wrapped)?;
        }
    }

    #[test]
    fn the_fast_skip_and_the_slow_one_agree(
        body in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..60)
    ) {
        let fast = skip(&body, 0, &mut Vec::new(), &mut Specials::new(&body));
        let mut r = Reader::new(&body);
        let slow = r.skip_value_slowly().map(|()| r.pos);
        prop_assert_eq!(fast, slow.ok());
    }

    #[test]
    fn block_masks_agree(block in proptest::collection::vec(any::<u8>(), 64)) {
        let block: [u8; 64] = block.try_into().unwrap();
        let want = block.iter().enumerate().fold(0u64, |m, (i, &b)| {
            m | u64::from(b == b'"' || b == b'\\' || b < 0x20) << i
        });
        prop_assert_eq!(block_mask(&block), want);
        prop_assert_eq!(block_mask_swar(&block), want);
    }
}

#[test]
fn the_review_reads_as_with_serde() {
    let body = review();
    same_as_serde(&body).unwrap();
    let req = decode(&body).unwrap();
    let pod = req.object.as_ref().unwrap();
    assert_eq!(pod.metadata.labels.as_ref().unwrap().get("k"), Some("2"));
    assert_eq!(pod.annotation("note"), Some("é\u{1F600}\\/"));
    assert_eq!(
        pod.spec.volumes.as_ref().unwrap()[0]
            .token_audiences()
            .collect::<Vec<_>>(),
        ["sts.amazonaws.com"]
    );
    // Every truncation is an error, as it is for serde.
    for end in 0..body.len() {
        same_as_serde(&body[..end]).unwrap();
        assert!(decode(&body[..end]).is_err(), "{end}");
    }
}

#[test]
fn plain_strings_borrow_and_escaped_keys_match() {
    let body = br#"{"request":{"u\u0069d":"a\"b","kind":{"kind":"Pod"},"operation":"CREATE"}}"#;
    let req = decode(body).unwrap();
    assert_eq!(req.uid, "a\"b");
    assert!(matches!(req.operation.0, Cow::Borrowed("CREATE")));
    same_as_serde(body).unwrap();
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
        "body is not an AdmissionReview: invalid type: number, expected a string at line 2 column 11"
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

#[test]
fn deep_nesting_in_skipped_values_is_not_a_stack_overflow() {
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
}

#[test]
fn specials_match_a_byte_scan() {
    let body = review();
    let mut cached = Specials::new(&body);
    for pos in 0..body.len() {
        let want = (pos..body.len())
            .find(|&i| matches!(body[i], b'"' | b'\\') || body[i] < 0x20)
            .unwrap_or(body.len());
        assert_eq!(
            Specials::new(&body).find(&body, pos),
            want,
            "fresh at {pos}"
        );
        assert_eq!(cached.find(&body, pos), want, "cached at {pos}");
    }
}

/// The one difference, on purpose: serde's derive also reads a struct from
/// a JSON array of its fields in order, which no API server sends.
#[test]
fn structs_written_as_arrays_are_refused() {
    let body = br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"volumes":[[]]}}}}"#;
    assert!(decode_with_serde(body).is_ok());
    assert!(
        decode(body)
            .unwrap_err()
            .to_string()
            .contains("invalid type: sequence, expected struct VolumeView")
    );
    let body = br#"["v1", ["u", ["", "v1", "Pod"], null, null, "CREATE", null]]"#;
    assert!(decode_with_serde(body).is_ok());
    assert!(decode(body).is_err());
}

#[test]
fn edge_cases_read_as_serde_reads_them() {
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
            same_as_serde(&body).unwrap();
        }
    }
}

/// Env vars and volume mounts, on [`Reader::compact_strings_object`]'s fast
/// way and off it: read as serde reads them, and the fast way taken where
/// it should be.
#[test]
fn named_items_read_as_serde_reads_them() {
    let items: &[(&[u8], bool)] = &[
        (br#"{"name":"A"}"#, true),
        (br#"{"name":"A","value":"x"}"#, true),
        (br#"{"name":"A","value":"x\"y\u00e9","other":""}"#, true),
        (br#"{"name":"","value":""}"#, true),
        (br#"{"name":"\u0041","value":"x"}"#, false),
        (br#"{"name":"A","name":"B"}"#, false),
        (br#"{"name":"A","na\u006de":"B"}"#, false),
        (br#"{"name":"A","value":1}"#, false),
        (br#"{"name":"A","value":{"x":"y"}}"#, false),
        (br#"{"name":"A" ,"value":"x"}"#, false),
        (br#"{ "name":"A"}"#, false),
        (br#"{"value":"x","name":"A"}"#, false),
        (br#"{"name":"A","value":"x",}"#, false),
        (br#"{"name":"A","value":"x""#, false),
        (br#"{"name":"A","value":"x"]"#, false),
        (br#"{"name":"A","value"}"#, false),
        (br#"{"name":"A","value":"\q"}"#, false),
        (b"{\"name\":\"A\",\"value\":\"a\nb\"}", false),
        (b"{\"name\":\"\xff\"}", false),
        (b"{\"name\":\"A\",\"\xff\":\"x\"}", false),
        (b"{\"name\":\"A\",\"value\":\"\xff\"}", true),
        (br#"{"name":null}"#, false),
        (br#"{"name":"A","value":"x"} "#, true),
    ];
    let template = br#"{"request":{"uid":"u","kind":{},"operation":"CREATE","object":{"spec":{"containers":[{"name":"c","env":[@],"volumeMounts":[@]}]}}}}"#;
    for (item, fast) in items {
        let parts: Vec<&[u8]> = template.split(|&b| b == b'@').collect();
        let body = [parts[0], item, parts[1], item, parts[2]].concat();
        same_as_serde(&body).unwrap();
        let mut r = Reader::new(item);
        let before = r.position();
        let got = r.compact_strings_object(b"name");
        assert_eq!(got.is_some(), *fast, "{}", String::from_utf8_lossy(item));
        if got.is_none() {
            assert_eq!(r.position(), before, "nothing consumed");
        }
    }
}
