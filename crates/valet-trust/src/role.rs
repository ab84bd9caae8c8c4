//! Link 5, the I/O part: read the role's trust policy from IAM.

use aws_sdk_iam::error::ProvideErrorMetadata;
use serde_json::json;
use valet_core::arn::RoleArn;

use valet_policy::PolicyDocument;

use super::policy_check::{WebIdentity, analyse};
use super::provider::{ProviderRef, iam_message};
use super::{Link, LinkResult};

pub(crate) async fn check_role_trust(
    iam: &aws_sdk_iam::Client,
    role: &RoleArn,
    provider: &ProviderRef,
    namespace: &str,
    service_account: &str,
    audience: &str,
) -> LinkResult {
    let want = WebIdentity {
        provider_arn: provider.arn(),
        provider_url: provider.url.clone(),
        sub: format!("system:serviceaccount:{namespace}:{service_account}"),
        aud: audience.to_string(),
        role_name: role.role_name().to_string(),
    };
    let out = match iam.get_role().role_name(role.role_name()).send().await {
        Ok(out) => out,
        Err(e) if e.code() == Some("NoSuchEntity") => {
            let policy = json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Federated": want.provider_arn },
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": { "StringEquals": {
                        format!("{}:sub", want.provider_url): want.sub,
                        format!("{}:aud", want.provider_url): want.aud,
                    }},
                }],
            });
            return LinkResult::fail(
                Link::RoleTrust,
                format!(
                    "role {role} does not exist in account {}",
                    role.account_id()
                ),
                format!(
                    "create it with a BucketAccess for {namespace}/{service_account}, or in account {}: aws iam create-role --role-name {} --path {} --assume-role-policy-document '{policy}'",
                    role.account_id(),
                    role.role_name(),
                    role.path()
                ),
            );
        }
        Err(e) => {
            return LinkResult::fail(
                Link::RoleTrust,
                format!("cannot read role {role}: {}", iam_message(&e)),
                format!(
                    "allow iam:GetRole on {role} to the credentials valet uses (--bucket-account-role-arn for another account)"
                ),
            );
        }
    };
    let Some(document) = out.role().and_then(|r| r.assume_role_policy_document()) else {
        return LinkResult::fail(
            Link::RoleTrust,
            format!("role {role} has no trust policy"),
            format!(
                "aws iam update-assume-role-policy --role-name {} --policy-document file://trust.json",
                role.role_name()
            ),
        );
    };
    match PolicyDocument::parse(document) {
        Ok(policy) => analyse(&policy, &want),
        Err(e) => LinkResult::fail(
            Link::RoleTrust,
            format!("the trust policy of role {role} does not parse: {e}"),
            format!(
                "rewrite it with aws iam update-assume-role-policy --role-name {} --policy-document file://trust.json",
                role.role_name()
            ),
        ),
    }
}
