//! `valet audit`: which pods run with which AWS role and buckets, and what is
//! wrong (stale, missed, static keys, invalid annotations, BucketAccess not
//! Ready).

pub mod facts;
pub mod judge;

pub use facts::Facts;
pub use judge::{Finding, Kind, Severity, judge};
