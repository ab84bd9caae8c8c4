//! Bucket names from a class's `nameTemplate`, fitted to S3's rules.
//!
//! Bucket names are global and permanent, so the readable rendering is kept
//! when it already is a valid name; otherwise it is cut to fit and followed
//! by a hash of the whole identity, which keeps `a-b`/`c` apart from
//! `a`/`b-c` after truncation. Two claims that still render to the same
//! name cannot share a bucket: the second finds the first's ownership tags
//! (which name namespace and claim) and gets a clash condition.

use sha2::{Digest, Sha256};
use valet_core::bucket::validate_bucket_name;

pub const MAX_BUCKET_NAME: usize = 63;
/// Hex digits of the identity hash (40 bits).
const HASH_LEN: usize = 10;
/// Placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["cluster", "namespace", "name", "account", "region"];

/// S3 reserves these prefixes and suffixes for its own features.
const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
const RESERVED_SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

/// Who a bucket is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub account: &'a str,
    pub region: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "spec.nameTemplate {template:?} uses unknown placeholder {{{placeholder}}} (known: {{cluster}}, {{namespace}}, {{name}}, {{account}}, {{region}})"
    )]
    Unknown {
        template: String,
        placeholder: String,
    },
    #[error("spec.nameTemplate {template:?} has an unclosed '{{'")]
    Unclosed { template: String },
    #[error(
        "spec.nameTemplate {template:?} must contain {{namespace}} and {{name}}: otherwise two claims would name the same bucket"
    )]
    NotUnique { template: String },
}

/// Checks a template's placeholders.
pub fn validate_template(template: &str) -> Result<(), TemplateError> {
    let mut seen = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(TemplateError::Unclosed {
                template: template.into(),
            });
        };
        let placeholder = &after[..close];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(TemplateError::Unknown {
                template: template.into(),
                placeholder: placeholder.into(),
            });
        }
        seen.push(placeholder);
        rest = &after[close + 1..];
    }
    if !seen.contains(&"namespace") || !seen.contains(&"name") {
        return Err(TemplateError::NotUnique {
            template: template.into(),
        });
    }
    Ok(())
}

/// The bucket name for `id` from a validated template.
pub fn bucket_name(template: &str, id: &Identity<'_>) -> String {
    let rendered = template
        .replace("{cluster}", id.cluster)
        .replace("{namespace}", id.namespace)
        .replace("{name}", id.name)
        .replace("{account}", id.account)
        .replace("{region}", id.region);
    if acceptable(&rendered) {
        return rendered;
    }
    let readable = sanitize(&rendered);
    if acceptable(&readable) && readable.len() <= MAX_BUCKET_NAME {
        return readable;
    }
    let hash = identity_hash(id);
    let room = MAX_BUCKET_NAME - HASH_LEN - 1;
    let mut cut: String = readable.chars().take(room).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    let fitted = if cut.is_empty() {
        hash
    } else {
        format!("{cut}-{hash}")
    };
    // The hash is hex and the cut part starts with a letter or digit, so
    // only a reserved prefix can still be in the way.
    if acceptable(&fitted) {
        fitted
    } else {
        format!("b{}", &fitted[..fitted.len().min(MAX_BUCKET_NAME - 1)])
    }
}

fn acceptable(name: &str) -> bool {
    validate_bucket_name(name).is_ok()
        // Dots break virtual-hosted TLS (`a.b.s3.amazonaws.com` fails the wildcard).
        && !name.contains('.')
        && !RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        && !RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Lowercase, every other character to `-`, no repeated or edge dashes.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    for p in RESERVED_PREFIXES {
        if let Some(rest) = out.strip_prefix(p) {
            out = format!("b-{rest}");
        }
    }
    out
}

fn identity_hash(id: &Identity<'_>) -> String {
    let mut h = Sha256::new();
    for part in [id.cluster, id.namespace, id.name, id.account, id.region] {
        // Length-prefixed so that no two identities hash the same input.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())[..HASH_LEN].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(namespace: &'a str, name: &'a str) -> Identity<'a> {
        Identity {
            cluster: "prod",
            namespace,
            name,
            account: "222222222222",
            region: "eu-west-1",
        }
    }

    #[test]
    fn a_short_name_is_kept_readable() {
        let n = bucket_name("{cluster}-{namespace}-{name}", &id("team-a", "media"));
        assert_eq!(n, "prod-team-a-media");
    }

    #[test]
    fn a_long_namespace_and_name_fit_63_characters_with_a_hash() {
        let ns = "a-very-long-namespace-name-that-goes-on-and-on-for-sixty-three";
        let name = "and-a-claim-name-that-is-long-as-well.with.dots";
        let n = bucket_name("{cluster}-{namespace}-{name}", &id(ns, name));
        assert!(n.len() <= 63 && n.len() >= 60, "{n}");
        assert!(acceptable(&n), "{n}");
        assert!(n.starts_with("prod-a-very-long-namespace"), "{n}");
        // Another claim sharing the cut part still gets another name.
        let other = bucket_name(
            "{cluster}-{namespace}-{name}",
            &id(ns, "and-a-claim-name-that-is-long-as-wellX"),
        );
        assert_ne!(n, other);
    }

    #[test]
    fn characters_s3_refuses_are_replaced() {
        let n = bucket_name("{cluster}.{namespace}_{name}", &id("Team-A", "x"));
        assert_eq!(n, "prod-team-a-x");
        let n = bucket_name("xn--{namespace}-{name}", &id("a", "b"));
        assert!(acceptable(&n), "{n}");
        let n = bucket_name("{namespace}-{name}-s3alias", &id("a", "b"));
        assert!(acceptable(&n), "{n}");
    }

    #[test]
    fn templates_are_checked() {
        assert!(validate_template("{cluster}-{namespace}-{name}").is_ok());
        assert!(matches!(
            validate_template("{cluster}-{ns}-{name}"),
            Err(TemplateError::Unknown { .. })
        ));
        assert!(matches!(
            validate_template("{cluster}-{name}"),
            Err(TemplateError::NotUnique { .. })
        ));
        assert!(matches!(
            validate_template("{namespace}-{name"),
            Err(TemplateError::Unclosed { .. })
        ));
    }
}
