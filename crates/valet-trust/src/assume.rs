//! Link 6 (`--assume`): the live test, `AssumeRoleWithWebIdentity` with the
//! token, then `GetCallerIdentity` with the session it returns.

use aws_credential_types::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;
use valet_core::arn::RoleArn;

use super::provider::iam_message;
use super::{Link, LinkResult, SecretToken};
use crate::aws::AwsClients;

const SESSION_NAME: &str = "valet-trust-check";

pub(crate) async fn check_assume(
    aws: &AwsClients,
    role: &RoleArn,
    token: &SecretToken,
) -> LinkResult {
    let out = match aws
        .sts()
        .assume_role_with_web_identity()
        .role_arn(role.as_str())
        .role_session_name(SESSION_NAME)
        .web_identity_token(token.expose())
        .duration_seconds(900)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let fix = match e.code() {
                Some("InvalidIdentityToken") => {
                    "STS could not validate the token against the issuer: fix links 1-4 (discovery, JWKS and the IAM OIDC provider must agree)"
                }
                Some("AccessDenied") => {
                    "the role's trust policy does not admit the token: apply link 5's fix"
                }
                Some("ExpiredTokenException") => "use a fresh token",
                _ => "fix the links above, then retry with --assume",
            };
            return LinkResult::fail(
                Link::Assume,
                format!(
                    "AssumeRoleWithWebIdentity on {role} failed: {}",
                    iam_message(&e)
                ),
                fix,
            );
        }
    };
    let Some(c) = out.credentials() else {
        return LinkResult::fail(
            Link::Assume,
            format!("AssumeRoleWithWebIdentity on {role} returned no credentials"),
            "retry; if it persists, check the STS endpoint (--sts-endpoint)",
        );
    };
    let creds = Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "valet-trust-check",
    );
    let conf = aws.sts_config().credentials_provider(creds).build();
    let sts = aws_sdk_sts::Client::from_conf(conf);
    match sts.get_caller_identity().send().await {
        Ok(id) => LinkResult::pass(
            Link::Assume,
            format!(
                "assumed {role}: caller {} (account {})",
                id.arn().unwrap_or_default(),
                id.account().unwrap_or_default()
            ),
        ),
        Err(e) => LinkResult::fail(
            Link::Assume,
            format!(
                "assumed {role}, but GetCallerIdentity with the session failed: {}",
                iam_message(&e)
            ),
            "check the STS endpoint (--sts-endpoint) and region (--region)",
        ),
    }
}
