//! A claim's status from what its reconcile found (pure): `Provisioned`
//! says whether the bucket exists as the class wants it, `Ready` whether
//! grants may use it; reasons a person can act on.

use crate::crd::{BucketClaimStatus, ClaimCondition};
use crate::desired::DesiredBucket;

pub const PROVISIONED: &str = "Provisioned";
pub const READY: &str = "Ready";
/// `Provisioned`'s reason while the bucket is as its class wants it (just
/// created or repaired included: the Events `BucketCreated` and
/// `DriftRepaired` say that).
pub const UP_TO_DATE: &str = "UpToDate";

/// What a failure asks of whoever handles it, so that callers decide by
/// type, not by the reason's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The input must change first (someone else's bucket under the name,
    /// ours in another region, a claim its class refuses): retrying the same
    /// input does not help.
    Refused,
    /// S3 or AWS throttled or could not be reached: retry soon.
    Transient,
    /// Anything else S3 or AWS answered: tried again at the next resync.
    Error,
}

/// Why a claim has no bucket as its class wants it: `reason` is CamelCase
/// (conditions, Events), `message` says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BucketError {
    pub failure: Failure,
    pub reason: &'static str,
    pub message: String,
}

impl BucketError {
    pub fn new(failure: Failure, reason: &'static str, message: impl std::fmt::Display) -> Self {
        BucketError {
            failure,
            reason,
            message: message.to_string(),
        }
    }
}

impl From<crate::s3::S3Error> for BucketError {
    fn from(e: crate::s3::S3Error) -> Self {
        BucketError::new(e.failure(), e.reason(), e)
    }
}

impl From<crate::plan::PlanError> for BucketError {
    fn from(e: crate::plan::PlanError) -> Self {
        BucketError::new(e.failure(), e.reason(), e)
    }
}

/// What one reconcile of a claim came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The bucket is as desired (`repaired` names what had to change).
    Provisioned {
        bucket: DesiredBucket,
        created: bool,
        repaired: Vec<&'static str>,
    },
    /// Refused or failed.
    Failed {
        bucket: Option<DesiredBucket>,
        error: BucketError,
    },
}

/// The status to write; conditions keep their transition time when their
/// status did not change (`now` is RFC 3339, passed in: no clock here).
pub fn claim_status(
    previous: Option<&BucketClaimStatus>,
    outcome: &Outcome,
    generation: Option<i64>,
    now: &str,
) -> BucketClaimStatus {
    let (bucket, ok, reason, message) = match outcome {
        // What happened on the way (created, repaired) is an Event's to
        // say; the condition says what is, so that it stays the same from
        // one pass to the next and costs no status write.
        Outcome::Provisioned { bucket, .. } => {
            let message = format!(
                "bucket {} in {} is as its class wants it",
                bucket.name, bucket.region
            );
            (Some(bucket), true, UP_TO_DATE, message)
        }
        Outcome::Failed { bucket, error } => {
            (bucket.as_ref(), false, error.reason, error.message.clone())
        }
    };
    let keep = |type_: &str, status: &str| {
        previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.to_string())
    };
    let status = if ok { "True" } else { "False" };
    let cond = |type_: &str, reason: &str, message: &str| ClaimCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: keep(type_, status),
        observed_generation: generation,
    };
    let ready_reason = if ok { "BucketReady" } else { reason };
    BucketClaimStatus {
        bucket_name: bucket.map(|b| b.name.clone()),
        bucket_arn: bucket.map(|b| b.arn.clone()),
        region: bucket.map(|b| b.region.clone()),
        conditions: vec![
            cond(PROVISIONED, reason, &message),
            cond(READY, ready_reason, &message),
        ],
        observed_generation: generation,
    }
}

/// Whether a claim's status says grants may use its bucket now.
pub fn is_ready(status: Option<&BucketClaimStatus>) -> Option<&str> {
    let s = status?;
    let ready = s
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True");
    if ready {
        s.bucket_name.as_deref()
    } else {
        None
    }
}
