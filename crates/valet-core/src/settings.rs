//! Webhook settings: what the peer's flags say, shared by `valet webhook`
//! and `valet mutate` (the flags themselves are parsed by the webhook crate).

use std::collections::HashSet;

use serde::Deserialize;

use crate::consts::*;

/// Go's `strconv.ParseBool`, which the peer's flags and annotations use.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Clamps a token lifetime to what the API server accepts for projected tokens.
pub fn clamp_expiration(seconds: i64) -> i64 {
    seconds.clamp(MIN_TOKEN_EXPIRATION, MAX_TOKEN_EXPIRATION)
}

/// Container-credentials (EKS Pod Identity) settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCredentialsSettings {
    pub audience: String,
    pub mount_path: String,
    pub volume_name: String,
    pub token_path: String,
    pub full_uri: String,
}

/// Annotation keys under the configured prefix, computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationKeys {
    pub role_arn: String,
    pub audience: String,
    pub sts_regional_endpoints: String,
    pub token_expiration: String,
    pub skip_containers: String,
}

impl AnnotationKeys {
    pub fn new(prefix: &str) -> AnnotationKeys {
        let key = |suffix: &str| format!("{prefix}/{suffix}");
        AnnotationKeys {
            role_arn: key(ANN_ROLE_ARN),
            audience: key(ANN_AUDIENCE),
            sts_regional_endpoints: key(ANN_STS_REGIONAL_ENDPOINTS),
            token_expiration: key(ANN_TOKEN_EXPIRATION),
            skip_containers: key(ANN_SKIP_CONTAINERS),
        }
    }
}

/// Everything the mutation needs besides the pod and its ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub keys: AnnotationKeys,
    pub token_audience: String,
    pub token_mount_path: String,
    /// Already clamped to [600, 86400].
    pub token_expiration: i64,
    pub aws_default_region: Option<String>,
    pub sts_regional_endpoint: bool,
    pub container_credentials: ContainerCredentialsSettings,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::new(DEFAULT_ANNOTATION_PREFIX)
    }
}

impl Settings {
    /// The peer's defaults with the given annotation prefix.
    pub fn new(annotation_prefix: &str) -> Settings {
        Settings {
            keys: AnnotationKeys::new(annotation_prefix),
            token_audience: DEFAULT_TOKEN_AUDIENCE.into(),
            token_mount_path: DEFAULT_TOKEN_MOUNT_PATH.into(),
            token_expiration: DEFAULT_TOKEN_EXPIRATION,
            aws_default_region: None,
            sts_regional_endpoint: false,
            container_credentials: ContainerCredentialsSettings {
                audience: DEFAULT_CC_AUDIENCE.into(),
                mount_path: DEFAULT_CC_MOUNT_PATH.into(),
                volume_name: DEFAULT_CC_VOLUME_NAME.into(),
                token_path: DEFAULT_CC_TOKEN_PATH.into(),
                full_uri: DEFAULT_CC_FULL_URI.into(),
            },
        }
    }
}

/// The ServiceAccounts that use container credentials, from the JSON file of
/// `--watch-container-credentials-config`:
/// `{"identities":[{"namespace":"ns","serviceAccount":"sa"}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerCredentialsIdentities {
    set: HashSet<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "container credentials config is not valid JSON of the form {{\"identities\":[{{\"namespace\":..,\"serviceAccount\":..}}]}}: {0}"
)]
pub struct IdentitiesError(#[from] serde_json::Error);

impl ContainerCredentialsIdentities {
    pub fn parse(json: &[u8]) -> Result<Self, IdentitiesError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            identities: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Entry {
            namespace: String,
            service_account: String,
        }
        let file: File = serde_json::from_slice(json)?;
        Ok(ContainerCredentialsIdentities {
            set: file
                .identities
                .into_iter()
                .map(|e| (e.namespace, e.service_account))
                .collect(),
        })
    }

    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        ContainerCredentialsIdentities {
            set: pairs.into_iter().collect(),
        }
    }

    pub fn contains(&self, namespace: &str, service_account: &str) -> bool {
        // Avoid allocating on the admission path for the common empty case.
        !self.set.is_empty()
            && self
                .set
                .contains(&(namespace.to_string(), service_account.to_string()))
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false));
        }
        assert!(parse_go_bool("yes").is_err());
    }

    #[test]
    fn identities_file() {
        let ids = ContainerCredentialsIdentities::parse(
            br#"{"identities":[{"namespace":"default","serviceAccount":"default"}]}"#,
        )
        .unwrap();
        assert!(ids.contains("default", "default"));
        assert!(!ids.contains("default", "other"));
        assert!(ContainerCredentialsIdentities::parse(b"{").is_err());
        assert!(
            ContainerCredentialsIdentities::parse(br#"{"identities":[{"namespace":1}]}"#).is_err()
        );
    }
}
