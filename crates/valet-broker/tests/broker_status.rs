//! What the broker writes to Kubernetes, as pure functions.

use std::collections::BTreeMap;

use valet_broker::crd::{Access, ValidGrant, ValidSpec};
use valet_broker::status::*;

fn spec(buckets: Vec<ValidGrant>) -> ValidSpec {
    ValidSpec {
        service_account: "app".into(),
        bucket_account: None,
        buckets,
        suspended: false,
        region: None,
    }
}

fn g(name: &str, alias: Option<&str>, prefix: Option<&str>) -> ValidGrant {
    ValidGrant {
        name: name.into(),
        claim: None,
        bucket_class: None,
        alias: alias.map(Into::into),
        prefix: prefix.map(Into::into),
        access: Access::Read,
    }
}

#[test]
fn transition_times_move_only_when_the_status_word_changes() {
    let conds = |ok| {
        [
            Cond::new(READY, Some(ok), "R", "m"),
            Cond::new(TRUST_VALID, None, "T", "t"),
        ]
    };
    let first = next_status(None, Some("arn".into()), &conds(false), Some(1), "t1");
    assert_eq!(first.conditions[0].last_transition_time, "t1");
    assert_eq!(first.conditions[1].status, "Unknown");
    let same = next_status(Some(&first), None, &conds(false), Some(1), "t2");
    assert_eq!(
        same, first,
        "nothing changed, nothing to write (roleArn kept)"
    );
    let flipped = next_status(Some(&first), None, &conds(true), Some(2), "t3");
    assert_eq!(flipped.conditions[0].last_transition_time, "t3");
    assert_eq!(flipped.conditions[1].last_transition_time, "t1");
    assert_eq!(flipped.observed_generation, Some(2));
    assert_eq!(flipped.conditions[0].observed_generation, Some(2));
}

#[test]
fn one_bucket_without_alias_uses_the_single_form() {
    let a = service_account_annotations(
        "eks.amazonaws.com",
        "arn",
        &spec(vec![g("acme", None, Some("p/"))]),
        "eu-west-1",
        "ba",
    );
    assert_eq!(a["storage-valet.dev/bucket"].as_deref(), Some("acme/p/"));
    assert_eq!(
        a["storage-valet.dev/buckets"], None,
        "the other form is removed"
    );
    assert_eq!(a["eks.amazonaws.com/role-arn"].as_deref(), Some("arn"));
    assert_eq!(
        a["storage-valet.dev/bucket-region"].as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(a[ANN_OWNER].as_deref(), Some("ba"));
    // A custom webhook prefix is honoured.
    let b = service_account_annotations(
        "example.com",
        "arn",
        &spec(vec![g("acme", Some("m"), None)]),
        "r",
        "ba",
    );
    assert_eq!(b["example.com/role-arn"].as_deref(), Some("arn"));
    assert_eq!(
        b["storage-valet.dev/buckets"].as_deref(),
        Some("m=acme"),
        "an alias always uses the list form"
    );
}

#[test]
fn only_differences_are_patched() {
    let want = service_account_annotations(
        "eks.amazonaws.com",
        "arn",
        &spec(vec![g("acme", None, None)]),
        "r",
        "ba",
    );
    let mut current: BTreeMap<String, String> = want
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    current.insert("team".into(), "a".into());
    assert!(annotation_changes(&current, &want).is_empty());
    current.insert("storage-valet.dev/buckets".into(), "x=old".into());
    current.insert("eks.amazonaws.com/role-arn".into(), "tampered".into());
    let changes = annotation_changes(&current, &want);
    assert_eq!(
        changes,
        BTreeMap::from([
            (
                "eks.amazonaws.com/role-arn".to_string(),
                Some("arn".to_string())
            ),
            ("storage-valet.dev/buckets".to_string(), None),
        ])
    );
}
