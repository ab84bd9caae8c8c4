//! One pass over a claim's bucket: observe, plan, apply; and deletion by
//! the class's policy. The controller and `valet broker apply` call these.

use crate::crd::DeletionPolicy;
use crate::desired::DesiredBucket;
use crate::plan::{Change, plan};
use crate::s3::{DeleteError, Deleted, S3};
use crate::status::{BucketError, Outcome};

/// Observes and plans (reads only): what `apply` would change.
pub async fn plan_bucket(s3: &S3, desired: &DesiredBucket) -> Result<Vec<Change>, BucketError> {
    let observed = s3.observe(desired).await?;
    Ok(plan(&observed, desired)?)
}

/// Makes the bucket as desired; steady state writes nothing.
pub async fn reconcile_bucket(s3: &S3, desired: &DesiredBucket) -> Outcome {
    let changes = match plan_bucket(s3, desired).await {
        Ok(c) => c,
        Err(error) => {
            return Outcome::Failed {
                bucket: Some(desired.clone()),
                error,
            };
        }
    };
    apply_planned(s3, desired, &changes).await
}

/// Runs changes already planned (and shown) for `desired`.
pub async fn apply_planned(s3: &S3, desired: &DesiredBucket, changes: &[Change]) -> Outcome {
    if let Err(e) = s3.apply(desired, changes).await {
        return Outcome::Failed {
            bucket: Some(desired.clone()),
            error: e.into(),
        };
    }
    let created = crate::plan::creates(changes);
    let repaired = if created {
        Vec::new()
    } else {
        changes.iter().map(Change::setting).collect()
    };
    Outcome::Provisioned {
        bucket: desired.clone(),
        created,
        repaired,
    }
}

/// What deleting a claim did to its bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// `Retain`: the bucket stays; only the finalizer goes.
    Retained,
    Deleted(Deleted),
}

/// Honours the class's deletion policy.
pub async fn release_bucket(
    s3: &S3,
    desired: &DesiredBucket,
    policy: DeletionPolicy,
) -> Result<Released, DeleteError> {
    match policy {
        DeletionPolicy::Retain => Ok(Released::Retained),
        DeletionPolicy::Delete => s3.delete(desired).await.map(Released::Deleted),
    }
}
