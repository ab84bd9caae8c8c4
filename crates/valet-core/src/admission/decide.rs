//! Decide: a decoded request and its ServiceAccount to the answer. Pure.

use crate::identity::SaConfig;
use crate::mutate::{Mutation, Outcome, mutate};
use crate::settings::Settings;

use super::decode::{PodRequest, is_pod_create, pod_service_account};

/// The webhook's answer to one review.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<'r> {
    /// The review's `apiVersion`, echoed.
    pub api_version: &'r str,
    pub uid: &'r str,
    pub allowed: bool,
    /// Why the pod was refused (`status.message`), when it was.
    pub denial: Option<String>,
    /// The JSON Patch document (not yet base64).
    pub patch: Option<Vec<u8>>,
    /// Shown by kubectl.
    pub warnings: Vec<String>,
}

impl<'r> Response<'r> {
    fn allow(req: &'r PodRequest<'_>) -> Self {
        Response {
            api_version: &req.api_version,
            uid: &req.uid,
            allowed: true,
            denial: None,
            patch: None,
            warnings: Vec::new(),
        }
    }
}

/// What the ServiceAccount lookup found.
#[derive(Clone, Copy, Debug)]
pub enum SaLookup<'a> {
    Found(&'a SaConfig),
    /// The SA does not exist (the API server said so, or the cache is synced
    /// and the grace period passed).
    NotFound,
    /// The SA could not be read at all (API server down, timeout).
    Unavailable(&'a str),
}

/// `--on-lookup-failure`: what to do when the ServiceAccount cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LookupFailure {
    /// Admit the pod unmutated, with a warning (the peer's behaviour).
    #[default]
    Allow,
    /// Refuse the pod so that its controller retries.
    Deny,
}

/// The outcome of one review, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a pod creation: allowed unchanged.
    Ignored,
    Decided(Outcome),
    /// The SA could not be read: allowed unmutated with a warning.
    LookupFailedAllowed,
    /// The SA could not be read: denied.
    LookupFailedDenied,
}

impl Verdict {
    /// The `outcome` label of `storage_valet_admission_requests_total`.
    pub fn metric_outcome(self) -> &'static str {
        match self {
            Verdict::Decided(Outcome::Mutated) => "mutated",
            Verdict::Ignored | Verdict::Decided(_) => "skipped",
            Verdict::LookupFailedAllowed | Verdict::LookupFailedDenied => "error",
        }
    }
}

/// Decides the response for a decoded request.
pub fn admit<'r>(
    req: &'r PodRequest<'_>,
    lookup: SaLookup<'_>,
    container_credentials: bool,
    settings: &Settings,
    on_failure: LookupFailure,
    jitter: u64,
) -> (Response<'r>, Verdict) {
    let mut response = Response::allow(req);
    let (Some(pod), Some((ns, sa_name))) = (req.object.as_ref(), pod_service_account(req)) else {
        return (response, Verdict::Ignored);
    };
    if !is_pod_create(req) {
        return (response, Verdict::Ignored);
    }
    let empty = SaConfig::default();
    let sa = match lookup {
        SaLookup::Found(sa) => sa,
        // Container credentials need nothing from the SA but optional overrides.
        SaLookup::NotFound | SaLookup::Unavailable(_) if container_credentials => &empty,
        SaLookup::NotFound => return (response, Verdict::Decided(Outcome::NotConfigured)),
        SaLookup::Unavailable(why) => {
            let verdict = match on_failure {
                LookupFailure::Allow => {
                    response.warnings.push(format!(
                        "storage-valet could not read ServiceAccount {ns}/{sa_name} ({why}); \
                         the pod was admitted without AWS credentials: recreate it once the API server is reachable"
                    ));
                    Verdict::LookupFailedAllowed
                }
                LookupFailure::Deny => {
                    response.allowed = false;
                    response.denial = Some(format!(
                        "storage-valet could not read ServiceAccount {ns}/{sa_name} ({why}); retry shortly"
                    ));
                    Verdict::LookupFailedDenied
                }
            };
            return (response, verdict);
        }
    };
    let mutation: Mutation<'_> = mutate(pod, ns, sa, container_credentials, settings, jitter);
    if !mutation.ops.is_empty() {
        // `write_patch` reserves for the ops it writes.
        let mut bytes = Vec::new();
        mutation.write_patch(&mut bytes);
        response.patch = Some(bytes);
    }
    response.warnings = mutation.warnings;
    (response, Verdict::Decided(mutation.outcome))
}
