//! `valet audit`: which pods run with which AWS role and buckets, and what is
//! wrong (stale, missed, static keys, invalid annotations, BucketAccess not
//! Ready, webhook configuration, and with `--with-trust` the trust chain).
//!
//! collect (kube I/O, paginated) -> facts -> judge (pure) -> report -> table |
//! json | dot.

pub mod cli;
pub mod collect;
pub mod dot;
pub mod facts;
pub mod judge;
mod judge_csi;
mod judge_grants;
mod judge_keys;
pub mod progress;
pub mod report;
pub mod roles;
pub mod table;
pub mod trust;

pub use cli::{AuditOptions, Error, Output, run};
pub use facts::Facts;
pub use judge::{Finding, Kind, Severity, judge};
