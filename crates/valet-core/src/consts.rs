//! Names shared by every part of storage-valet, written once.
//!
//! Where we match amazon-eks-pod-identity-webhook, the values are the peer's.

/// Default annotation prefix (the peer's `--annotation-prefix`).
pub const DEFAULT_ANNOTATION_PREFIX: &str = "eks.amazonaws.com";
/// Default token audience (the peer's `--token-audience`).
pub const DEFAULT_TOKEN_AUDIENCE: &str = "sts.amazonaws.com";
/// Default token mount path (the peer's `--token-mount-path`).
pub const DEFAULT_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// Token lifetime bounds and default, in seconds (the peer clamps to these).
pub const DEFAULT_TOKEN_EXPIRATION: i64 = 86_400;
pub const MIN_TOKEN_EXPIRATION: i64 = 600;
pub const MAX_TOKEN_EXPIRATION: i64 = 86_400;

/// The projected web-identity token volume and file.
pub const TOKEN_VOLUME_NAME: &str = "aws-iam-token";
pub const TOKEN_FILE_NAME: &str = "token";

/// Container-credentials (EKS Pod Identity) defaults: the peer's flag defaults.
pub const DEFAULT_CC_AUDIENCE: &str = "pods.eks.amazonaws.com";
pub const DEFAULT_CC_MOUNT_PATH: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub const DEFAULT_CC_VOLUME_NAME: &str = "eks-pod-identity-token";
pub const DEFAULT_CC_TOKEN_PATH: &str = "eks-pod-identity-token";
pub const DEFAULT_CC_FULL_URI: &str = "http://169.254.170.23/v1/credentials";
/// The label the peer sets on pods mutated in container-credentials mode.
pub const POD_IDENTITY_LABEL: &str = "eks.amazonaws.com/pod-identity";
pub const POD_IDENTITY_LABEL_VALUE: &str = "enabled";

/// Annotation suffixes under the annotation prefix (peer-compatible).
pub const ANN_ROLE_ARN: &str = "role-arn";
pub const ANN_AUDIENCE: &str = "audience";
pub const ANN_STS_REGIONAL_ENDPOINTS: &str = "sts-regional-endpoints";
pub const ANN_TOKEN_EXPIRATION: &str = "token-expiration";
pub const ANN_SKIP_CONTAINERS: &str = "skip-containers";

/// Our own annotation domain.
pub const VALET_DOMAIN: &str = "storage-valet.dev";
/// ServiceAccount annotations (the broker writes them; people may too).
pub const ANN_BUCKET: &str = "storage-valet.dev/bucket";
pub const ANN_BUCKETS: &str = "storage-valet.dev/buckets";
pub const ANN_BUCKET_REGION: &str = "storage-valet.dev/bucket-region";
/// Pod annotations the webhook writes to record what it injected, so that an
/// audit can tell a stale pod (SA changed since) from a fresh one.
pub const ANN_INJECTED_ROLE_ARN: &str = "storage-valet.dev/injected-role-arn";
pub const ANN_INJECTED_MODE: &str = "storage-valet.dev/injected-mode";
/// JSON object of the bucket env vars injected (`{"S3_BUCKET":"acme",...}`).
pub const ANN_INJECTED_BUCKET_ENV: &str = "storage-valet.dev/injected-bucket-env";
/// Values of [`ANN_INJECTED_MODE`].
pub const MODE_WEB_IDENTITY: &str = "web-identity";
pub const MODE_CONTAINER_CREDENTIALS: &str = "container-credentials";

/// Environment variables.
pub const ENV_ROLE_ARN: &str = "AWS_ROLE_ARN";
pub const ENV_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
pub const ENV_REGION: &str = "AWS_REGION";
pub const ENV_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const ENV_STS_REGIONAL_ENDPOINTS: &str = "AWS_STS_REGIONAL_ENDPOINTS";
pub const STS_REGIONAL: &str = "regional";
pub const ENV_CONTAINER_CREDENTIALS_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
pub const ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
pub const ENV_S3_BUCKET: &str = "S3_BUCKET";
pub const ENV_S3_PREFIX: &str = "S3_PREFIX";
pub const ENV_S3_REGION: &str = "S3_REGION";

/// Node selector keys that mark a Windows pod.
pub const OS_SELECTORS: [&str; 2] = ["kubernetes.io/os", "beta.kubernetes.io/os"];
