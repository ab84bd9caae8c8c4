//! Deterministic IAM role names and paths.
//!
//! IAM caps role names at 64 characters while a namespace and a
//! ServiceAccount name may each be 253. A name is the rendered pattern,
//! cut to fit, followed by a hash of the full identity: the readable part
//! tells a person whose role it is, the hash keeps `a-b`/`c` apart from
//! `a`/`b-c` and from every truncation collision.

use sha2::{Digest, Sha256};

/// IAM's limits (moto does not enforce them, so we do).
pub const MAX_ROLE_NAME: usize = 64;
pub const MAX_ROLE_PATH: usize = 512;
/// Hex digits of the identity hash appended to every name (40 bits).
const HASH_LEN: usize = 10;

/// Default name pattern; `{cluster}`, `{namespace}` and `{serviceaccount}` are replaced.
pub const DEFAULT_NAME_PATTERN: &str = "{cluster}-{namespace}-{serviceaccount}";
/// Default path pattern; `{cluster}` is replaced.
pub const DEFAULT_PATH_PATTERN: &str = "/storage-valet/{cluster}/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error(
        "role path {path:?} is not valid: {why} (set rolePath in the broker config, e.g. /storage-valet/{{cluster}}/)"
    )]
    Path { path: String, why: &'static str },
    #[error(
        "cluster name {0:?} is not valid: use 1-32 letters, digits or '-' (it appears in role names, paths and tags)"
    )]
    Cluster(String),
}

/// The role name for `namespace/serviceaccount` in `cluster`.
pub fn role_name(pattern: &str, cluster: &str, namespace: &str, service_account: &str) -> String {
    let readable: String = render(pattern, cluster, namespace, service_account)
        .chars()
        .map(|c| if is_role_name_char(c) { c } else { '-' })
        .collect();
    let hash = identity_hash(cluster, namespace, service_account);
    let room = MAX_ROLE_NAME - HASH_LEN - 1;
    let mut cut: String = readable.chars().take(room).collect();
    // A trailing separator before the hash reads as a typo.
    while cut.ends_with(['-', '.', '_']) {
        cut.pop();
    }
    if cut.is_empty() {
        hash
    } else {
        format!("{cut}-{hash}")
    }
}

/// The role path, e.g. `/storage-valet/prod/`.
pub fn role_path(pattern: &str, cluster: &str) -> Result<String, NamingError> {
    let path = pattern.replace("{cluster}", cluster);
    let bad = |why| NamingError::Path {
        path: path.clone(),
        why,
    };
    if !path.starts_with('/') || !path.ends_with('/') {
        return Err(bad("it must start and end with '/'"));
    }
    if path.len() > MAX_ROLE_PATH {
        return Err(bad("it is longer than 512 characters"));
    }
    if path.contains("//") && path != "/" {
        return Err(bad("it has an empty segment"));
    }
    if !path.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(bad("only printable ASCII without spaces is allowed"));
    }
    Ok(path)
}

/// Checks a cluster name before it is used in names, paths and tags.
pub fn validate_cluster(cluster: &str) -> Result<(), NamingError> {
    let ok = (1..=32).contains(&cluster.len())
        && cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !cluster.starts_with('-')
        && !cluster.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NamingError::Cluster(cluster.to_string()))
    }
}

fn render(pattern: &str, cluster: &str, namespace: &str, service_account: &str) -> String {
    pattern
        .replace("{cluster}", cluster)
        .replace("{namespace}", namespace)
        .replace("{serviceaccount}", service_account)
}

fn identity_hash(cluster: &str, namespace: &str, service_account: &str) -> String {
    let mut h = Sha256::new();
    for part in [cluster, namespace, service_account] {
        h.update(part.as_bytes());
        // NUL cannot occur in any of the three, so the encoding is unambiguous.
        h.update([0u8]);
    }
    hex::encode(h.finalize())[..HASH_LEN].to_string()
}

fn is_role_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_readable_and_hashed() {
        let n = role_name(DEFAULT_NAME_PATTERN, "prod", "team-a", "media-app");
        assert!(n.starts_with("prod-team-a-media-app-"), "{n}");
        assert_eq!(n.len(), "prod-team-a-media-app-".len() + HASH_LEN);
        assert_eq!(
            n,
            role_name(DEFAULT_NAME_PATTERN, "prod", "team-a", "media-app")
        );
    }

    #[test]
    fn separators_do_not_collide() {
        let a = role_name(DEFAULT_NAME_PATTERN, "prod", "a-b", "c");
        let b = role_name(DEFAULT_NAME_PATTERN, "prod", "a", "b-c");
        assert_ne!(a, b);
    }

    #[test]
    fn longest_names_fit_and_stay_distinct() {
        let ns = "n".repeat(63);
        let sa1 = format!("{}1", "s".repeat(252));
        let sa2 = format!("{}2", "s".repeat(252));
        let a = role_name(
            DEFAULT_NAME_PATTERN,
            "a-very-long-cluster-name-indeed",
            &ns,
            &sa1,
        );
        let b = role_name(
            DEFAULT_NAME_PATTERN,
            "a-very-long-cluster-name-indeed",
            &ns,
            &sa2,
        );
        assert_eq!(a.len(), MAX_ROLE_NAME);
        assert_eq!(b.len(), MAX_ROLE_NAME);
        assert_ne!(a, b);
        valet_core::arn::RoleArn::parse(&format!("arn:aws:iam::111122223333:role/x/{a}")).unwrap();
    }

    #[test]
    fn paths_and_clusters() {
        assert_eq!(
            role_path(DEFAULT_PATH_PATTERN, "prod").unwrap(),
            "/storage-valet/prod/"
        );
        assert!(role_path("storage-valet", "prod").is_err());
        assert!(role_path("/a//b/", "prod").is_err());
        assert!(validate_cluster("prod-eu-1").is_ok());
        for bad in ["", "-x", "a b", "x/y", &"c".repeat(33)] {
            assert!(validate_cluster(bad).is_err(), "{bad}");
        }
    }
}
