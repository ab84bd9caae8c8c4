//! The flags that shape the mutation, shared by `valet webhook` and
//! `valet mutate` (the binary flattens them into both), turned into
//! [`Settings`] for the pure core, which knows no CLI crate.

use valet_core::consts::*;
use valet_core::settings::{
    AnnotationKeys, ContainerCredentialsSettings, Settings, clamp_expiration, parse_go_bool,
};

/// Flags that shape the mutation. Names and defaults are
/// amazon-eks-pod-identity-webhook's, so a deployment of the peer keeps its
/// arguments; every flag can also be set through a `VALET_*` variable.
#[derive(clap::Args, Clone, Debug)]
pub struct MutationFlags {
    /// The ServiceAccount annotation prefix to look for.
    #[arg(long, env = "VALET_ANNOTATION_PREFIX", default_value = DEFAULT_ANNOTATION_PREFIX)]
    pub annotation_prefix: String,
    /// Default audience of the projected token; the SA's `audience` annotation overrides it.
    #[arg(long, env = "VALET_TOKEN_AUDIENCE", default_value = DEFAULT_TOKEN_AUDIENCE)]
    pub token_audience: String,
    /// Where the web-identity token is mounted in containers.
    #[arg(long, env = "VALET_TOKEN_MOUNT_PATH", default_value = DEFAULT_TOKEN_MOUNT_PATH)]
    pub token_mount_path: String,
    /// Default token lifetime in seconds, clamped to [600, 86400].
    #[arg(long, env = "VALET_TOKEN_EXPIRATION", default_value_t = DEFAULT_TOKEN_EXPIRATION, allow_negative_numbers = true)]
    pub token_expiration: i64,
    /// When set, AWS_DEFAULT_REGION and AWS_REGION are set to this value in mutated containers.
    #[arg(long, env = "VALET_AWS_DEFAULT_REGION", default_value = "")]
    pub aws_default_region: String,
    /// Inject AWS_STS_REGIONAL_ENDPOINTS=regional; the SA's `sts-regional-endpoints` annotation overrides it.
    #[arg(long, env = "VALET_STS_REGIONAL_ENDPOINT", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", value_parser = parse_go_bool)]
    pub sts_regional_endpoint: bool,
    /// JSON file naming the ServiceAccounts that use container credentials (EKS Pod Identity).
    #[arg(
        long,
        env = "VALET_WATCH_CONTAINER_CREDENTIALS_CONFIG",
        default_value = ""
    )]
    pub watch_container_credentials_config: String,
    /// Audience of tokens for the container-credentials method.
    #[arg(long, env = "VALET_CONTAINER_CREDENTIALS_AUDIENCE", default_value = DEFAULT_CC_AUDIENCE)]
    pub container_credentials_audience: String,
    /// Mount path of the container-credentials token.
    #[arg(long, env = "VALET_CONTAINER_CREDENTIALS_TOKEN_MOUNT_PATH", default_value = DEFAULT_CC_MOUNT_PATH)]
    pub container_credentials_token_mount_path: String,
    /// Name of the projected volume of the container-credentials token.
    #[arg(long, env = "VALET_CONTAINER_CREDENTIALS_TOKEN_VOLUME_NAME", default_value = DEFAULT_CC_VOLUME_NAME)]
    pub container_credentials_token_volume_name: String,
    /// File name of the container-credentials token inside its volume.
    #[arg(long, env = "VALET_CONTAINER_CREDENTIALS_TOKEN_PATH", default_value = DEFAULT_CC_TOKEN_PATH)]
    pub container_credentials_token_path: String,
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI set in mutated containers.
    #[arg(long, env = "VALET_CONTAINER_CREDENTIALS_FULL_URI", default_value = DEFAULT_CC_FULL_URI)]
    pub container_credentials_full_uri: String,
}

impl From<&MutationFlags> for Settings {
    fn from(f: &MutationFlags) -> Settings {
        Settings {
            keys: AnnotationKeys::new(&f.annotation_prefix),
            token_audience: f.token_audience.clone(),
            token_mount_path: f.token_mount_path.clone(),
            token_expiration: clamp_expiration(f.token_expiration),
            aws_default_region: Some(f.aws_default_region.clone()).filter(|r| !r.is_empty()),
            sts_regional_endpoint: f.sts_regional_endpoint,
            container_credentials: ContainerCredentialsSettings {
                audience: f.container_credentials_audience.clone(),
                mount_path: f.container_credentials_token_mount_path.clone(),
                volume_name: f.container_credentials_token_volume_name.clone(),
                token_path: f.container_credentials_token_path.clone(),
                full_uri: f.container_credentials_full_uri.clone(),
            },
        }
    }
}
