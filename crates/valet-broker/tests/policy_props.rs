//! Properties of names and policies over generated inputs.

use proptest::prelude::*;
use serde_json::json;
use valet_broker::crd::{Access, ValidGrant};
use valet_broker::naming::{DEFAULT_NAME_PATTERN, role_name};
use valet_broker::policy::access_policy;
use valet_policy::evaluate::{Decision, WebIdentityRequest, evaluate};
use valet_policy::{PolicyDocument, oidc_provider_arn, trust_policy};

const ISSUER: &str = "https://oidc.example.com/id/ABC";

fn dns_name(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-z0-9]([-a-z0-9.]{{0,{}}}[a-z0-9])?", max - 2))
        .unwrap()
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Read),
        Just(Access::Write),
        Just(Access::Readwrite)
    ]
}

fn grant() -> impl Strategy<Value = ValidGrant> {
    (
        "[a-z0-9][a-z0-9-]{1,20}[a-z0-9]",
        proptest::option::of("[a-zA-Z0-9_-][a-zA-Z0-9_./ -]{0,40}"),
        access(),
    )
        .prop_map(|(name, prefix, access)| ValidGrant {
            name,
            claim: None,
            bucket_class: None,
            alias: None,
            prefix,
            access,
        })
}

proptest! {
    #[test]
    fn role_names_always_fit_iam(cluster in "[a-z0-9]{1,32}", ns in dns_name(63), sa in dns_name(253)) {
        let name = role_name(DEFAULT_NAME_PATTERN, &cluster, &ns, &sa);
        prop_assert!(name.len() <= 64, "{name}");
        prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)), "{name}");
        let arn = format!("arn:aws:iam::111122223333:role/storage-valet/{cluster}/{name}");
        prop_assert!(valet_core::arn::RoleArn::parse(&arn).is_ok(), "{arn}");
    }

    #[test]
    fn different_identities_get_different_names(ns in dns_name(63), a in dns_name(253), b in dns_name(253)) {
        prop_assume!(a != b);
        prop_assert_ne!(role_name(DEFAULT_NAME_PATTERN, "c", &ns, &a), role_name(DEFAULT_NAME_PATTERN, "c", &ns, &b));
    }

    #[test]
    fn access_policies_grant_nothing_beyond_their_prefixes(grants in proptest::collection::vec(grant(), 1..6)) {
        let doc = access_policy("aws", &grants).unwrap();
        for s in &doc.statement {
            for r in s.resource.iter().flatten() {
                let ok = grants.iter().any(|g| {
                    r == &format!("arn:aws:s3:::{}", g.name)
                        || r == &format!("arn:aws:s3:::{}/{}*", g.name, g.prefix.as_deref().unwrap_or(""))
                });
                prop_assert!(ok, "resource {r} is not a granted bucket or prefix");
            }
            prop_assert!(s.action.iter().all(|a| a.starts_with("s3:") && !a.contains('*')));
        }
        // What IAM gives back (re-serialised, URL-encoded) compares equal.
        let back = PolicyDocument::parse(&urlencoding::encode(&doc.to_json())).unwrap();
        prop_assert!(back.same_as(&doc));
        prop_assert_eq!(doc.normalized().normalized(), doc.normalized());
    }

    #[test]
    fn trust_admits_exactly_its_service_account(
        ns in dns_name(63), sa in dns_name(253), other_ns in dns_name(63), other_sa in dns_name(253),
    ) {
        let provider = oidc_provider_arn("aws", "222222222222", ISSUER);
        let doc = trust_policy(&provider, ISSUER, &ns, &sa, "sts.amazonaws.com").unwrap();
        let req = |n: &str, s: &str| WebIdentityRequest::from_claims(
            &provider, ISSUER,
            &json!({"sub": format!("system:serviceaccount:{n}:{s}"), "aud": ["sts.amazonaws.com"]}),
        );
        prop_assert_eq!(evaluate(&doc, &req(&ns, &sa)), Decision::Allowed);
        if (other_ns.as_str(), other_sa.as_str()) != (ns.as_str(), sa.as_str()) {
            prop_assert_eq!(evaluate(&doc, &req(&other_ns, &other_sa)), Decision::ImplicitDeny);
        }
    }
}
