//! AWS clients for the broker and `valet trust check`.
//!
//! Credentials come from aws-config's default chain (so the broker runs under
//! IRSA itself) unless a provider is injected; [`AwsClients::assume`] moves
//! into a bucket account through its provisioning role (with an external ID),
//! refreshing the session before it expires. IAM and STS endpoints can be
//! overridden separately (tests point both at moto).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

/// IAM is global: its endpoint signs for us-east-1 whatever region we run in,
/// and STS needs some region to resolve an endpoint at all.
const FALLBACK_REGION: &str = "us-east-1";

/// How to reach AWS. `Default` is the default chain and AWS's own endpoints.
#[derive(Clone, Debug, Default)]
pub struct AwsConfig {
    /// Region for STS (and the SDK); the default chain's region when absent.
    pub region: Option<String>,
    /// IAM endpoint override, e.g. `http://127.0.0.1:5000` for moto.
    pub iam_endpoint: Option<String>,
    /// STS endpoint override (also used to assume provisioning roles).
    pub sts_endpoint: Option<String>,
    /// Credentials to use instead of the default chain.
    pub credentials: Option<SharedCredentialsProvider>,
}

/// IAM and STS clients acting in one account.
#[derive(Clone, Debug)]
pub struct AwsClients {
    sdk: SdkConfig,
    config: AwsConfig,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

/// The identity the clients act as (`sts:GetCallerIdentity`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "cannot assume {role_arn} ({code}: {message}): check that the role exists, trusts the caller {caller}, and that the external ID matches"
    )]
    AssumeRole {
        role_arn: String,
        caller: String,
        code: String,
        message: String,
    },
    #[error(
        "cannot get the caller identity from STS ({message}): check AWS credentials (default chain: env, profile, web identity, IMDS) and --sts-endpoint"
    )]
    CallerIdentity { message: String },
    #[error(
        "cannot assume {role_arn}: the credentials to assume it with do not work ({message}): check AWS credentials (default chain: env, profile, web identity, IMDS) and --sts-endpoint"
    )]
    NoCaller { role_arn: String, message: String },
}

impl AwsClients {
    /// Clients from the default credential chain (or `config.credentials`).
    pub async fn load(config: &AwsConfig) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(creds) = &config.credentials {
            loader = loader.credentials_provider(creds.clone());
        }
        let mut sdk = loader.load().await;
        if sdk.region().is_none() {
            sdk = sdk
                .into_builder()
                .region(Region::from_static(FALLBACK_REGION))
                .build();
        }
        AwsClients::from_sdk_config(sdk, config.clone())
    }

    /// Clients over an existing SDK config (credentials and region taken from
    /// it), with `config`'s endpoint overrides.
    pub fn from_sdk_config(sdk: SdkConfig, config: AwsConfig) -> AwsClients {
        let iam = aws_sdk_iam::Client::from_conf(iam_config(&sdk, &config).build());
        let sts = aws_sdk_sts::Client::from_conf(sts_config(&sdk, &config).build());
        AwsClients {
            sdk,
            config,
            iam,
            sts,
        }
    }

    /// Clients acting in another account through `role_arn`. Credentials are
    /// fetched on first use and refreshed before they expire; call
    /// [`AwsClients::caller_identity`] to prove the assumption works now.
    pub async fn assume(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
    ) -> AwsClients {
        // The provider's STS client is built from this SdkConfig, so the STS
        // endpoint override must be in it (and only there: IAM has its own).
        let mut base = self.sdk.clone().into_builder();
        if let Some(sts) = &self.config.sts_endpoint {
            base = base.endpoint_url(sts.clone());
        }
        let base = base.build();
        let mut builder = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name(session_name)
            .session_length(Duration::from_secs(3600))
            .configure(&base);
        if let Some(id) = external_id {
            builder = builder.external_id(id);
        }
        let provider = builder.build().await;
        let sdk = self
            .sdk
            .clone()
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        AwsClients::from_sdk_config(sdk, self.config.clone())
    }

    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.iam
    }

    pub fn sts(&self) -> &aws_sdk_sts::Client {
        &self.sts
    }

    /// The SDK config (credentials for this account, region; no endpoint
    /// overrides: use [`AwsClients::iam_config`] / [`AwsClients::sts_config`]).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// An IAM config builder with the endpoint override applied, for callers
    /// that add interceptors or a retry policy of their own.
    pub fn iam_config(&self) -> aws_sdk_iam::config::Builder {
        iam_config(&self.sdk, &self.config)
    }

    pub fn sts_config(&self) -> aws_sdk_sts::config::Builder {
        sts_config(&self.sdk, &self.config)
    }

    pub fn aws_config(&self) -> &AwsConfig {
        &self.config
    }

    /// `sts:GetCallerIdentity` with these clients' credentials.
    pub async fn caller_identity(&self) -> Result<CallerIdentity, AwsError> {
        match self.sts.get_caller_identity().send().await {
            Ok(out) => Ok(CallerIdentity {
                account: out.account().unwrap_or_default().to_string(),
                arn: out.arn().unwrap_or_default().to_string(),
            }),
            Err(e) => Err(AwsError::CallerIdentity {
                message: valet_aws::AwsErrorText::of(&e).to_string(),
            }),
        }
    }

    /// [`AwsClients::assume`], then proves it with `GetCallerIdentity`, so a
    /// wrong role or external ID is reported here, naming both.
    pub async fn assume_checked(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
    ) -> Result<AwsClients, AwsError> {
        let assumed = self.assume(role_arn, external_id, session_name).await;
        match assumed.sts.get_caller_identity().send().await {
            Ok(_) => Ok(assumed),
            Err(e) => {
                // Without an identity of our own the role is not the
                // problem: the base credentials are (none found, or refused).
                let caller = match self.caller_identity().await {
                    Ok(c) => c.arn,
                    Err(AwsError::CallerIdentity { message }) => {
                        return Err(AwsError::NoCaller {
                            role_arn: role_arn.to_string(),
                            message,
                        });
                    }
                    Err(other) => return Err(other),
                };
                let text = valet_aws::AwsErrorText::of(&e);
                Err(AwsError::AssumeRole {
                    role_arn: role_arn.to_string(),
                    caller,
                    code: text.code,
                    message: text.message,
                })
            }
        }
    }
}

fn iam_config(sdk: &SdkConfig, config: &AwsConfig) -> aws_sdk_iam::config::Builder {
    let mut b = aws_sdk_iam::config::Builder::from(sdk);
    if let Some(url) = &config.iam_endpoint {
        b = b.endpoint_url(url.clone());
    }
    b
}

fn sts_config(sdk: &SdkConfig, config: &AwsConfig) -> aws_sdk_sts::config::Builder {
    let mut b = aws_sdk_sts::config::Builder::from(sdk);
    if let Some(url) = &config.sts_endpoint {
        b = b.endpoint_url(url.clone());
    }
    b
}
