//! The IAM calls the broker makes, behind one wrapper that counts every
//! operation (the steady state must cost zero writes, and tests and the
//! benchmark prove it by counting) and can inject faults.
//!
//! Faults are injected as an SDK interceptor that swaps IAM's HTTP response
//! for a real AWS error body, so the SDK's own retry classifier, backoff and
//! error parsing run exactly as they would against AWS.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::Tag;
use valet_aws::AwsErrorText;

use crate::config::RetrySettings;
use valet_policy::PolicyDocument;

mod probe;

use probe::ProbeInterceptor;
pub use probe::{FaultKind, IamCounts, IamProbe, is_write};

/// What a failed IAM call means for the broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IamError {
    #[error("IAM {op}: {code}: {message} (throttled after retries; will retry later)")]
    Throttled {
        op: &'static str,
        code: String,
        message: String,
    },
    #[error(
        "IAM {op}: {code}: {message} (give the provisioning role iam:{op} on roles under the broker's path)"
    )]
    AccessDenied {
        op: &'static str,
        code: String,
        message: String,
    },
    #[error(
        "IAM endpoint unreachable during {op} ({message}): check network access and the IAM endpoint override"
    )]
    Unreachable { op: &'static str, message: String },
    #[error("IAM {op}: {code}: {message}")]
    Service {
        op: &'static str,
        code: String,
        message: String,
    },
}

impl IamError {
    /// A short CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            IamError::Throttled { .. } => "IamThrottled",
            IamError::AccessDenied { .. } => "IamAccessDenied",
            IamError::Unreachable { .. } => "IamUnreachable",
            IamError::Service { .. } => "IamError",
        }
    }
    fn code(&self) -> Option<&str> {
        match self {
            IamError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> IamError {
    let AwsErrorText { code, message } = AwsErrorText::of(&err);
    match code.as_str() {
        "Unreachable" | "Timeout" => IamError::Unreachable { op, message },
        c if valet_aws::is_throttle_code(c) => IamError::Throttled { op, code, message },
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            IamError::AccessDenied { op, code, message }
        }
        _ => IamError::Service { op, code, message },
    }
}

/// A role as IAM reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleInfo {
    pub arn: String,
    pub path: String,
    pub tags: BTreeMap<String, String>,
    /// The permissions boundary's policy ARN, if any.
    pub boundary: Option<String>,
    /// The trust policy, or why it could not be parsed (treated as drift).
    pub trust: Result<PolicyDocument, String>,
}

/// The IAM operations of one bucket account.
#[derive(Clone, Debug)]
pub struct Iam {
    client: aws_sdk_iam::Client,
    probe: Arc<IamProbe>,
}

/// The SDK's standard retry strategy with the broker's settings (IAM and S3).
pub fn retry_config(retry: &RetrySettings) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(retry.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(retry.initial_backoff_ms))
        .with_max_backoff(Duration::from_millis(retry.max_backoff_ms))
}

impl Iam {
    /// Wraps a client config: adds the probe and the retry strategy.
    pub fn new(
        builder: aws_sdk_iam::config::Builder,
        retry: &RetrySettings,
        probe: Arc<IamProbe>,
    ) -> Iam {
        let conf = builder
            .retry_config(retry_config(retry))
            .interceptor(ProbeInterceptor(probe.clone()))
            .build();
        Iam {
            client: aws_sdk_iam::Client::from_conf(conf),
            probe,
        }
    }

    pub fn probe(&self) -> &Arc<IamProbe> {
        &self.probe
    }

    pub fn client(&self) -> &aws_sdk_iam::Client {
        &self.client
    }

    /// Names and ARNs of every role under `path_prefix` (all pages).
    pub async fn list_roles(&self, path_prefix: &str) -> Result<Vec<(String, String)>, IamError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_roles()
                .path_prefix(path_prefix)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("ListRoles", e))?;
            out.extend(
                page.roles()
                    .iter()
                    .map(|r| (r.role_name().to_string(), r.arn().to_string())),
            );
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// A role's tags (ListRoles does not return them).
    pub async fn list_role_tags(&self, name: &str) -> Result<BTreeMap<String, String>, IamError> {
        let mut tags = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_role_tags()
                .role_name(name)
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| classify("ListRoleTags", e))?;
            tags.extend(
                page.tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string())),
            );
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(tags),
            }
        }
    }

    pub async fn get_role(&self, name: &str) -> Result<Option<RoleInfo>, IamError> {
        let out = match self.client.get_role().role_name(name).send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(classify("GetRole", e)),
        };
        let Some(role) = out.role else {
            return Ok(None);
        };
        let trust = match role.assume_role_policy_document() {
            Some(doc) => PolicyDocument::parse(doc).map_err(|e| e.to_string()),
            None => Err("the role has no trust policy".to_string()),
        };
        Ok(Some(RoleInfo {
            arn: role.arn().to_string(),
            path: role.path().to_string(),
            tags: role
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_string),
            trust,
        }))
    }

    pub async fn create_role(
        &self,
        name: &str,
        path: &str,
        trust: &PolicyDocument,
        tags: &BTreeMap<String, String>,
        description: &str,
        boundary: Option<&str>,
    ) -> Result<String, IamError> {
        let out = self
            .client
            .create_role()
            .role_name(name)
            .path(path)
            .assume_role_policy_document(trust.to_json())
            .description(description)
            .set_permissions_boundary(boundary.map(str::to_string))
            .set_tags(Some(to_tags(tags)))
            .send()
            .await
            .map_err(|e| classify("CreateRole", e))?;
        Ok(out.role.map(|r| r.arn).unwrap_or_default())
    }

    pub async fn update_trust(&self, name: &str, trust: &PolicyDocument) -> Result<(), IamError> {
        self.client
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(trust.to_json())
            .send()
            .await
            .map_err(|e| classify("UpdateAssumeRolePolicy", e))?;
        Ok(())
    }

    pub async fn put_boundary(&self, name: &str, boundary: &str) -> Result<(), IamError> {
        self.client
            .put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(boundary)
            .send()
            .await
            .map_err(|e| classify("PutRolePermissionsBoundary", e))?;
        Ok(())
    }

    pub async fn tag_role(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), IamError> {
        self.client
            .tag_role()
            .role_name(name)
            .set_tags(Some(to_tags(tags)))
            .send()
            .await
            .map_err(|e| classify("TagRole", e))?;
        Ok(())
    }

    /// The inline policy `policy` of `role`: `Ok(None)` when absent,
    /// `Ok(Some(Err(why)))` when present but not a document we can compare.
    pub async fn get_role_policy(
        &self,
        role: &str,
        policy: &str,
    ) -> Result<Option<Result<PolicyDocument, String>>, IamError> {
        match self
            .client
            .get_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                PolicyDocument::parse(out.policy_document()).map_err(|e| e.to_string()),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("GetRolePolicy", e)),
        }
    }

    pub async fn put_role_policy(
        &self,
        role: &str,
        policy: &str,
        doc: &PolicyDocument,
    ) -> Result<(), IamError> {
        self.client
            .put_role_policy()
            .role_name(role)
            .policy_name(policy)
            .policy_document(doc.to_json())
            .send()
            .await
            .map_err(|e| classify("PutRolePolicy", e))?;
        Ok(())
    }

    /// Deletes an inline policy; absent is success.
    pub async fn delete_role_policy(&self, role: &str, policy: &str) -> Result<(), IamError> {
        match self
            .client
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("DeleteRolePolicy", e)),
        }
    }

    /// Deletes a role; absent is success.
    pub async fn delete_role(&self, role: &str) -> Result<(), IamError> {
        match self.client.delete_role().role_name(role).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_no_such_entity_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify("DeleteRole", e)),
        }
    }

    /// Whether IAM refused because the entity already exists (a create race).
    pub fn is_already_exists(err: &IamError) -> bool {
        err.code() == Some("EntityAlreadyExists")
    }
}

fn to_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}
