//! valet-trust: the OIDC trust chain behind cross-account IRSA, proved
//! link by link. Used by the broker (its `TrustValid` condition), `valet
//! trust check` and `valet audit --with-trust`.
//!
//! For one ServiceAccount, one role ARN and one audience:
//!
//! 1. issuer discovery,
//! 2. the JWKS,
//! 3. a real token,
//! 4. the bucket account's IAM OIDC provider,
//! 5. the role's trust policy,
//! 6. optionally a live `AssumeRoleWithWebIdentity`.
//!
//! Each link ends as PASS, WARN or FAIL with a reason and the exact fix; a
//! link that cannot run because an earlier one failed is SKIP. `valet trust
//! check` prints the report and the broker's controller derives its
//! `TrustValid` condition from the same functions.

mod assume;
pub mod aws;
mod checker;
pub mod diagnose;
mod discovery;
mod http;
mod jwks;
pub mod policy_check;
mod provider;
mod report;
mod role;
mod token;

pub use checker::{ChainInput, TokenSource, TrustChecker};
pub use discovery::Discovery;
pub use http::{FetchError, OidcHttp};
pub use jwks::Jwks;
pub use provider::ProviderRef;
pub use report::{OutputFormat, render};
pub use token::SecretToken;

use serde::Serialize;

/// The links of the chain, in order.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Link {
    Issuer,
    Keys,
    Token,
    Provider,
    RoleTrust,
    Assume,
}

impl Link {
    pub const ALL: [Link; 6] = [
        Link::Issuer,
        Link::Keys,
        Link::Token,
        Link::Provider,
        Link::RoleTrust,
        Link::Assume,
    ];

    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            Link::Issuer => "issuer",
            Link::Keys => "keys",
            Link::Token => "token",
            Link::Provider => "provider",
            Link::RoleTrust => "role-trust",
            Link::Assume => "assume",
        }
    }
}

/// Ordered by severity, so the worst of several findings is their max.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// The verdict on one link.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LinkResult {
    pub link: Link,
    pub status: Status,
    pub reason: String,
    /// The exact change that repairs the link (IAM command, annotation, flag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl LinkResult {
    pub fn pass(link: Link, reason: impl Into<String>) -> LinkResult {
        LinkResult {
            link,
            status: Status::Pass,
            reason: reason.into(),
            fix: None,
        }
    }

    pub fn skip(link: Link, reason: impl Into<String>) -> LinkResult {
        LinkResult {
            link,
            status: Status::Skip,
            reason: reason.into(),
            fix: None,
        }
    }

    pub fn warn(link: Link, reason: impl Into<String>, fix: impl Into<String>) -> LinkResult {
        LinkResult {
            link,
            status: Status::Warn,
            reason: reason.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(link: Link, reason: impl Into<String>, fix: impl Into<String>) -> LinkResult {
        LinkResult {
            link,
            status: Status::Fail,
            reason: reason.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Several findings on one link, folded into one [`LinkResult`]: the worst
/// status wins, reasons and fixes are joined in the order found.
pub(crate) struct Findings {
    link: Link,
    status: Status,
    reasons: Vec<String>,
    fixes: Vec<String>,
}

impl Findings {
    pub(crate) fn new(link: Link) -> Findings {
        Findings {
            link,
            status: Status::Pass,
            reasons: Vec::new(),
            fixes: Vec::new(),
        }
    }

    pub(crate) fn fail(&mut self, reason: impl Into<String>, fix: impl Into<String>) {
        self.add(Status::Fail, reason.into(), Some(fix.into()));
    }

    pub(crate) fn warn(&mut self, reason: impl Into<String>, fix: impl Into<String>) {
        self.add(Status::Warn, reason.into(), Some(fix.into()));
    }

    fn add(&mut self, status: Status, reason: String, fix: Option<String>) {
        self.status = self.status.max(status);
        self.reasons.push(reason);
        self.fixes.extend(fix);
    }

    /// The result; `pass_reason` is used when nothing was found.
    pub(crate) fn finish(self, pass_reason: impl Into<String>) -> LinkResult {
        if self.reasons.is_empty() {
            return LinkResult::pass(self.link, pass_reason);
        }
        LinkResult {
            link: self.link,
            status: self.status,
            reason: self.reasons.join("; "),
            fix: (!self.fixes.is_empty()).then(|| self.fixes.join("; then ")),
        }
    }
}

/// The whole chain for one ServiceAccount.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrustReport {
    pub namespace: String,
    pub service_account: String,
    pub role_arn: Option<String>,
    pub audience: String,
    pub issuer: Option<String>,
    /// IAM changes `--fix` made, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
    pub links: Vec<LinkResult>,
}

impl TrustReport {
    /// True when no link FAILs (warnings and skips allowed).
    pub fn ok(&self) -> bool {
        self.links.iter().all(|l| l.status != Status::Fail)
    }

    pub fn link(&self, link: Link) -> Option<&LinkResult> {
        self.links.iter().find(|l| l.link == link)
    }

    pub fn count(&self, status: Status) -> usize {
        self.links.iter().filter(|l| l.status == status).count()
    }
}

/// Failures of the checker's own plumbing (not verdicts on the chain).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read CA bundle {path}: {message} (expected PEM certificates)")]
    CaBundle { path: String, message: String },
    #[error("cannot set up TLS for OIDC fetches: {0}")]
    Tls(String),
    #[error("IAM {op} on {arn} failed: {message}")]
    Iam {
        op: &'static str,
        arn: String,
        message: String,
    },
    #[error("cannot read token file {path}: {message}")]
    TokenFile { path: String, message: String },
}
