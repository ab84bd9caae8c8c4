//! Link 4: the bucket account's IAM OIDC provider for the issuer, and
//! `--fix`, which creates or repairs it (client ID, thumbprint) and touches
//! nothing else.

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use tracing::info;

use super::{Findings, Link, LinkResult, TrustError};

/// IAM keeps at most five thumbprints per provider.
const MAX_THUMBPRINTS: usize = 5;

/// The provider for one issuer in one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRef {
    pub partition: String,
    pub account: String,
    /// The issuer without `https://` (and without a trailing `/`): IAM's
    /// provider URL, the ARN's resource and the condition-key prefix.
    pub url: String,
}

impl ProviderRef {
    pub fn new(partition: &str, account: &str, issuer: &str) -> ProviderRef {
        ProviderRef {
            partition: partition.to_string(),
            account: account.to_string(),
            url: issuer
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string(),
        }
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:{}:iam::{}:oidc-provider/{}",
            self.partition, self.account, self.url
        )
    }

    pub fn issuer(&self) -> String {
        format!("https://{}", self.url)
    }
}

/// What IAM holds for a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProviderState {
    pub client_ids: Vec<String>,
    pub thumbprints: Vec<String>,
}

/// `GetOpenIDConnectProvider`; `Ok(None)` when it does not exist.
pub(crate) async fn get_provider(
    iam: &aws_sdk_iam::Client,
    p: &ProviderRef,
) -> Result<Option<ProviderState>, String> {
    match iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(p.arn())
        .send()
        .await
    {
        Ok(out) => Ok(Some(ProviderState {
            client_ids: out.client_id_list().to_vec(),
            thumbprints: out.thumbprint_list().to_vec(),
        })),
        Err(e) if e.code() == Some("NoSuchEntity") => Ok(None),
        Err(e) => Err(iam_message(&e)),
    }
}

/// Link 4. `thumbprint` is the SHA-1 of the top certificate the JWKS host
/// serves, or why it could not be taken.
pub(crate) fn judge_provider(
    p: &ProviderRef,
    state: Option<&ProviderState>,
    audience: &str,
    thumbprint: &Result<String, String>,
    repair: &str,
) -> LinkResult {
    let arn = p.arn();
    let Some(state) = state else {
        let tp = match thumbprint {
            Ok(tp) => format!(" --thumbprint-list {tp}"),
            Err(_) => String::new(),
        };
        return LinkResult::fail(
            Link::Provider,
            format!("account {} has no IAM OIDC provider {arn}", p.account),
            format!(
                "in account {}: aws iam create-open-id-connect-provider --url {} --client-id-list {audience}{tp} ({repair})",
                p.account,
                p.issuer()
            ),
        );
    };
    let mut f = Findings::new(Link::Provider);
    if !state.client_ids.iter().any(|c| c == audience) {
        f.fail(
            format!(
                "provider {arn} lists client IDs {:?}, not the audience {audience:?}: STS rejects the token",
                state.client_ids
            ),
            format!(
                "aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn {arn} --client-id {audience} ({repair})"
            ),
        );
    }
    match thumbprint {
        Ok(tp) if !state.thumbprints.iter().any(|t| t.eq_ignore_ascii_case(tp)) => {
            let mut list = vec![tp.clone()];
            list.extend(state.thumbprints.iter().take(MAX_THUMBPRINTS - 1).cloned());
            f.warn(
                format!(
                    "provider {arn} has thumbprints {:?}, not {tp} (SHA-1 of the top CA certificate the JWKS host serves); AWS skips this check when that host's certificate chains to a CA it trusts (well-known public CAs), but for a private CA STS rejects tokens",
                    state.thumbprints
                ),
                format!(
                    "aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn {arn} --thumbprint-list {} ({repair})",
                    list.join(" ")
                ),
            );
        }
        Ok(_) => {}
        Err(why) => f.warn(
            format!("cannot take the JWKS host's certificate thumbprint: {why}"),
            "make the jwks_uri host reachable over HTTPS from here",
        ),
    }
    let pass = format!(
        "{arn}: client IDs include {audience}, thumbprint {} listed",
        thumbprint.as_deref().unwrap_or("-")
    );
    f.finish(pass)
}

/// Creates or repairs the provider so that link 4 passes. Returns what was
/// changed, one line per IAM call; nothing when it was already right.
pub(crate) async fn ensure_provider(
    iam: &aws_sdk_iam::Client,
    p: &ProviderRef,
    audience: &str,
    thumbprint: Option<&str>,
) -> Result<Vec<String>, TrustError> {
    let arn = p.arn();
    let err = |op: &'static str, message: String| TrustError::Iam {
        op,
        arn: arn.clone(),
        message,
    };
    let state = get_provider(iam, p)
        .await
        .map_err(|m| err("GetOpenIDConnectProvider", m))?;
    let mut done = Vec::new();
    let Some(state) = state else {
        iam.create_open_id_connect_provider()
            .url(p.issuer())
            .client_id_list(audience)
            .set_thumbprint_list(thumbprint.map(|t| vec![t.to_string()]))
            .send()
            .await
            .map_err(|e| err("CreateOpenIDConnectProvider", iam_message(&e)))?;
        info!(%arn, %audience, "created IAM OIDC provider");
        done.push(format!(
            "created IAM OIDC provider {arn} (client ID {audience}, thumbprint {})",
            thumbprint.unwrap_or("none")
        ));
        return Ok(done);
    };
    if !state.client_ids.iter().any(|c| c == audience) {
        iam.add_client_id_to_open_id_connect_provider()
            .open_id_connect_provider_arn(&arn)
            .client_id(audience)
            .send()
            .await
            .map_err(|e| err("AddClientIDToOpenIDConnectProvider", iam_message(&e)))?;
        info!(%arn, %audience, "added client ID to IAM OIDC provider");
        done.push(format!("added client ID {audience} to {arn}"));
    }
    if let Some(tp) = thumbprint
        && !state.thumbprints.iter().any(|t| t.eq_ignore_ascii_case(tp))
    {
        let mut list = vec![tp.to_string()];
        list.extend(state.thumbprints.iter().take(MAX_THUMBPRINTS - 1).cloned());
        iam.update_open_id_connect_provider_thumbprint()
            .open_id_connect_provider_arn(&arn)
            .set_thumbprint_list(Some(list.clone()))
            .send()
            .await
            .map_err(|e| err("UpdateOpenIDConnectProviderThumbprint", iam_message(&e)))?;
        info!(%arn, thumbprint = %tp, "updated IAM OIDC provider thumbprints");
        done.push(format!("set thumbprints of {arn} to {}", list.join(",")));
    }
    Ok(done)
}

/// `Code: message` as AWS sent them (see `valet_aws::AwsErrorText`).
pub(crate) fn iam_message<E>(e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    valet_aws::AwsErrorText::of(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn arn_and_issuer() {
        let p = ProviderRef::new("aws", "222222222222", "https://oidc.example.com/id/ABC/");
        assert_eq!(
            p.arn(),
            "arn:aws:iam::222222222222:oidc-provider/oidc.example.com/id/ABC"
        );
        assert_eq!(p.issuer(), "https://oidc.example.com/id/ABC");
    }

    #[test]
    fn judge_missing_client_id_and_thumbprint() {
        let p = ProviderRef::new("aws", "222222222222", "https://o.example/id/A");
        let st = ProviderState {
            client_ids: vec!["other".into()],
            thumbprints: vec!["aa".into()],
        };
        let r = judge_provider(
            &p,
            Some(&st),
            "sts.amazonaws.com",
            &Ok("bb".into()),
            "or rerun with --fix",
        );
        assert_eq!(r.status, Status::Fail);
        let fix = r.fix.unwrap();
        assert!(
            fix.contains("add-client-id-to-open-id-connect-provider"),
            "{fix}"
        );
        assert!(fix.contains("--thumbprint-list bb aa"), "{fix}");
        let st = ProviderState {
            client_ids: vec!["sts.amazonaws.com".into()],
            thumbprints: vec!["BB".into()],
        };
        let r = judge_provider(
            &p,
            Some(&st),
            "sts.amazonaws.com",
            &Ok("bb".into()),
            "or rerun with --fix",
        );
        assert_eq!(r.status, Status::Pass, "{r:?}");
    }
}
