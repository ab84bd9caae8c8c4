//! valet-buckets: buckets on request. The `BucketClass`/`BucketClaim` types,
//! bucket names fitted to S3's rules, and the S3 side of a claim: create the
//! bucket with the class's settings and the always-on ones, repair drift
//! with zero writes in steady state, delete by the class's policy; a bucket
//! without our ownership tags is never modified or deleted.
//!
//! Pure modules (`crd`, `class`, `naming`, `desired`, `plan`) do no I/O;
//! `s3` makes the calls.

pub mod class;
pub mod crd;
pub mod desired;
pub mod iam_policy;
pub mod naming;
pub mod plan;
pub mod probe;
pub mod reconcile;
pub mod resolve;
pub mod s3;
pub mod status;
