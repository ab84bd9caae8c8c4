//! valet-broker: the `BucketAccess` CRD, IAM role provisioning, the
//! controller and `valet broker apply`. The policy documents live in
//! `valet-policy`, the OIDC trust chain in `valet-trust`, the command line
//! in `valet-cli`; the entry points here take plain config structs.
//!
//! Pure modules (`crd` validation, `naming`, `policy`, `status`) never do
//! I/O; `iam`, `provision`, `reconcile`, `controller` and `apply` do.

pub mod access_policy;
pub mod accounts;
pub mod apply;
pub mod claims;
pub mod config;
pub mod controller;
pub mod crd;
pub mod guard;
pub mod health;
pub mod iam;
pub mod iam_policy;
pub mod lease;
pub mod metrics;
pub mod naming;
pub mod permit;
pub mod policy;
pub mod provision;
pub mod reconcile;
pub mod retire;
pub mod run;
pub mod sa;
pub mod status;
pub mod strict;
pub mod trust_gate;
