//! IAM role ARNs, checked the way IAM checks them.

use std::fmt;

/// Partitions in which IAM roles exist.
pub const PARTITIONS: [&str; 7] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
];

const MAX_ROLE_NAME: usize = 64;
const MAX_PATH: usize = 512;

/// A valid IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role[/PATH]/NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoleArn {
    raw: String,
    partition_end: usize,
    account_start: usize,
    name_start: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArnError {
    #[error("{value:?} is not a role ARN: {why} (expected arn:PARTITION:iam::ACCOUNT:role/NAME)")]
    Invalid { value: String, why: &'static str },
}

impl RoleArn {
    pub fn parse(value: &str) -> Result<RoleArn, ArnError> {
        let bad = |why| ArnError::Invalid {
            value: value.to_string(),
            why,
        };
        let rest = value
            .strip_prefix("arn:")
            .ok_or_else(|| bad("it does not start with arn:"))?;
        let (partition, rest) = rest
            .split_once(':')
            .ok_or_else(|| bad("the partition is missing"))?;
        if !PARTITIONS.contains(&partition) {
            return Err(bad("unknown partition (aws, aws-cn, aws-us-gov, aws-iso*)"));
        }
        let rest = rest.strip_prefix("iam::").ok_or_else(|| {
            bad("the service must be iam with an empty region (arn:aws:iam::...)")
        })?;
        let (account, resource) = rest
            .split_once(':')
            .ok_or_else(|| bad("the account id is missing"))?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the account id must be 12 digits"));
        }
        let path_and_name = resource
            .strip_prefix("role/")
            .ok_or_else(|| bad("the resource must be role/NAME"))?;
        if path_and_name.starts_with('/') {
            return Err(bad("the role path must not start with an empty segment"));
        }
        let (path, name) = match path_and_name.rfind('/') {
            Some(i) => (&path_and_name[..=i], &path_and_name[i + 1..]),
            None => ("", path_and_name),
        };
        if name.is_empty() {
            return Err(bad("the role name is empty"));
        }
        if name.len() > MAX_ROLE_NAME {
            return Err(bad("the role name is longer than 64 characters"));
        }
        if !name.bytes().all(is_role_name_byte) {
            return Err(bad(
                "the role name may only hold letters, digits and +=,.@_-",
            ));
        }
        if path.len() + 1 > MAX_PATH {
            return Err(bad("the role path is longer than 512 characters"));
        }
        if path.contains("//")
            || !path
                .bytes()
                .all(|b| b == b'/' || (0x21..=0x7e).contains(&b))
        {
            return Err(bad(
                "the role path must be /SEGMENT/.../ of printable characters",
            ));
        }
        let partition_end = 4 + partition.len();
        let account_start = partition_end + ":iam::".len();
        let name_start = value.len() - name.len();
        Ok(RoleArn {
            raw: value.to_string(),
            partition_end,
            account_start,
            name_start,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
    pub fn partition(&self) -> &str {
        &self.raw[4..self.partition_end]
    }
    pub fn account_id(&self) -> &str {
        &self.raw[self.account_start..self.account_start + 12]
    }
    pub fn role_name(&self) -> &str {
        &self.raw[self.name_start..]
    }
    /// The role path, `/` when none (as IAM reports it).
    pub fn path(&self) -> &str {
        let start = self.account_start + 12 + ":role".len();
        &self.raw[start..self.name_start]
    }
}

fn is_role_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for RoleArn {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoleArn::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_partition_and_paths() {
        for p in PARTITIONS {
            let arn = RoleArn::parse(&format!("arn:{p}:iam::111122223333:role/s3-reader")).unwrap();
            assert_eq!(arn.partition(), p);
            assert_eq!(arn.account_id(), "111122223333");
            assert_eq!(arn.role_name(), "s3-reader");
            assert_eq!(arn.path(), "/");
        }
        let arn =
            RoleArn::parse("arn:aws:iam::222222222222:role/storage-valet/prod/team-a.app@x+y=z,w")
                .unwrap();
        assert_eq!(arn.path(), "/storage-valet/prod/");
        assert_eq!(arn.role_name(), "team-a.app@x+y=z,w");
    }

    #[test]
    fn rejects_what_iam_rejects() {
        let long = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(65));
        for bad in [
            "",
            "s3-reader",
            "arn:aws:iam::111122223333:user/bob",
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "arn:aws:iam::11112222333:role/x",
            "arn:aws:iam::11112222333a:role/x",
            "arn:awsx:iam::111122223333:role/x",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/a b",
            "arn:aws:iam::111122223333:role//x",
            "arn:aws:iam::111122223333:role/x*",
            long.as_str(),
        ] {
            let err = RoleArn::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("expected arn:PARTITION:iam::ACCOUNT:role/NAME"),
                "{bad}: {err}"
            );
        }
        // 64 characters is the limit, not one less.
        let max = format!("arn:aws:iam::111122223333:role/{}", "a".repeat(64));
        assert!(RoleArn::parse(&max).is_ok());
    }
}
