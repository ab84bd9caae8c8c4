//! Buckets granted to a ServiceAccount, and the env vars they become.
//!
//! `storage-valet.dev/bucket: NAME[/PREFIX]` -> `S3_BUCKET`, `S3_PREFIX`;
//! `storage-valet.dev/buckets: ALIAS=NAME[/PREFIX],...` -> `S3_BUCKET_<ALIAS>`,
//! `S3_PREFIX_<ALIAS>`; `storage-valet.dev/bucket-region` -> `S3_REGION`.

use crate::consts::{ENV_S3_BUCKET, ENV_S3_PREFIX, ENV_S3_REGION};

/// One bucket, optionally limited to a key prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRef {
    pub name: String,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("{name:?} is not a valid S3 bucket name: {why}")]
    Name { name: String, why: &'static str },
    #[error("entry {entry:?} is not ALIAS=NAME[/PREFIX]")]
    Entry { entry: String },
    #[error("alias {alias:?} must be letters, digits, '-' or '_' (it becomes S3_BUCKET_<ALIAS>)")]
    Alias { alias: String },
    #[error("alias {alias:?} is used twice (as {env})")]
    DuplicateAlias { alias: String, env: String },
    #[error("prefix {prefix:?} is not valid: {why}")]
    Prefix { prefix: String, why: &'static str },
    #[error("{region:?} is not an AWS region (e.g. eu-west-1)")]
    Region { region: String },
    #[error("the list is empty")]
    Empty,
}

/// Checks the S3 naming rules for general purpose buckets.
pub fn validate_bucket_name(name: &str) -> Result<(), BucketError> {
    let bad = |why| BucketError::Name {
        name: name.to_string(),
        why,
    };
    if !(3..=63).contains(&name.len()) {
        return Err(bad("it must be 3 to 63 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(bad(
            "only lowercase letters, digits, '.' and '-' are allowed",
        ));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(bad("it must begin and end with a letter or digit"));
    }
    if name.contains("..") {
        return Err(bad("it must not contain two adjacent periods"));
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(bad("it must not be formatted as an IP address"));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(bad("it starts with a prefix reserved by S3"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(bad("it ends with a suffix reserved by S3"));
        }
    }
    Ok(())
}

/// Checks a key prefix: no wildcards (they would widen IAM policies) and
/// nothing S3 could not store.
pub fn validate_prefix(prefix: &str) -> Result<(), BucketError> {
    let bad = |why| BucketError::Prefix {
        prefix: prefix.to_string(),
        why,
    };
    if prefix.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    if prefix.contains(['*', '?', '$']) {
        return Err(bad(
            "'*', '?' and '$' are not allowed (they are IAM policy wildcards/variables)",
        ));
    }
    if prefix.starts_with('/') {
        return Err(bad("it must not start with '/'"));
    }
    if prefix.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    Ok(())
}

/// Checks a region name such as `eu-west-1`, `us-gov-west-1`, `cn-north-1`.
pub fn validate_region(region: &str) -> Result<(), BucketError> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u16>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(BucketError::Region {
            region: region.to_string(),
        })
    }
}

impl BucketRef {
    /// Parses `NAME[/PREFIX]`.
    pub fn parse(value: &str) -> Result<BucketRef, BucketError> {
        let value = value.trim();
        let (name, prefix) = match value.split_once('/') {
            Some((n, p)) if !p.is_empty() => (n, Some(p)),
            Some((n, _)) => (n, None),
            None => (value, None),
        };
        validate_bucket_name(name)?;
        if let Some(p) = prefix {
            validate_prefix(p)?;
        }
        Ok(BucketRef {
            name: name.to_string(),
            prefix: prefix.map(str::to_string),
        })
    }
}

/// `ALIAS` -> `_ALIAS` suffix of the env var names (upper-cased, `-` to `_`).
pub fn alias_suffix(alias: &str) -> Result<String, BucketError> {
    if alias.is_empty()
        || !alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(BucketError::Alias {
            alias: alias.to_string(),
        });
    }
    Ok(alias.to_ascii_uppercase().replace('-', "_"))
}

/// Parses `ALIAS=NAME[/PREFIX],...`.
pub fn parse_bucket_list(value: &str) -> Result<Vec<(String, BucketRef)>, BucketError> {
    let mut out: Vec<(String, BucketRef)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (alias, bucket) = entry.split_once('=').ok_or_else(|| BucketError::Entry {
            entry: entry.to_string(),
        })?;
        let alias = alias.trim();
        let suffix = alias_suffix(alias)?;
        if out
            .iter()
            .any(|(a, _)| alias_suffix(a).ok().as_deref() == Some(suffix.as_str()))
        {
            return Err(BucketError::DuplicateAlias {
                alias: alias.to_string(),
                env: format!("{ENV_S3_BUCKET}_{suffix}"),
            });
        }
        out.push((alias.to_string(), BucketRef::parse(bucket)?));
    }
    if out.is_empty() {
        return Err(BucketError::Empty);
    }
    Ok(out)
}

/// Env vars for a default bucket, aliased buckets and a region, in a stable order.
pub fn bucket_env(
    default: Option<&BucketRef>,
    aliased: &[(String, BucketRef)],
    region: Option<&str>,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(b) = default {
        env.push((ENV_S3_BUCKET.to_string(), b.name.clone()));
        if let Some(p) = &b.prefix {
            env.push((ENV_S3_PREFIX.to_string(), p.clone()));
        }
    }
    for (alias, b) in aliased {
        // Aliases were validated by the parser; an invalid one yields no env.
        let Ok(suffix) = alias_suffix(alias) else {
            continue;
        };
        env.push((format!("{ENV_S3_BUCKET}_{suffix}"), b.name.clone()));
        if let Some(p) = &b.prefix {
            env.push((format!("{ENV_S3_PREFIX}_{suffix}"), p.clone()));
        }
    }
    if let Some(r) = region {
        env.push((ENV_S3_REGION.to_string(), r.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in [
            "abc",
            "acme-media",
            "a.b.c",
            "my-bucket-123",
            &"a".repeat(63),
        ] {
            validate_bucket_name(ok).unwrap();
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Acme",
            "acme_media",
            "-acme",
            "acme-",
            "a..b",
            "192.168.5.4",
            "xn--abc",
            "acme-s3alias",
            "acme--ol-s3",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn single_bucket_with_and_without_prefix() {
        assert_eq!(
            BucketRef::parse("acme-media/team-a/").unwrap(),
            BucketRef {
                name: "acme-media".into(),
                prefix: Some("team-a/".into())
            }
        );
        assert_eq!(BucketRef::parse("acme-media").unwrap().prefix, None);
        assert_eq!(BucketRef::parse("acme-media/").unwrap().prefix, None);
        assert!(BucketRef::parse("acme-media/team-*").is_err());
        assert!(BucketRef::parse("ACME").is_err());
    }

    #[test]
    fn bucket_lists_map_aliases_to_env_names() {
        let list = parse_bucket_list("media=acme-media/team-a/, raw-logs=acme-logs").unwrap();
        let env = bucket_env(None, &list, Some("eu-west-1"));
        assert_eq!(
            env,
            vec![
                ("S3_BUCKET_MEDIA".into(), "acme-media".into()),
                ("S3_PREFIX_MEDIA".into(), "team-a/".into()),
                ("S3_BUCKET_RAW_LOGS".into(), "acme-logs".into()),
                ("S3_REGION".into(), "eu-west-1".into()),
            ]
        );
        assert!(matches!(
            parse_bucket_list("a-b=abc,a_b=abd"),
            Err(BucketError::DuplicateAlias { .. })
        ));
        assert!(matches!(
            parse_bucket_list("acme-media"),
            Err(BucketError::Entry { .. })
        ));
        assert!(matches!(
            parse_bucket_list("m.x=acme"),
            Err(BucketError::Alias { .. })
        ));
        assert!(matches!(parse_bucket_list(" , "), Err(BucketError::Empty)));
    }

    #[test]
    fn regions() {
        for ok in ["eu-west-1", "us-gov-west-1", "cn-north-1", "ap-southeast-5"] {
            validate_region(ok).unwrap();
        }
        for bad in ["", "seattle", "eu-west", "EU-west-1", "eu--1"] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
