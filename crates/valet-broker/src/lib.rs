//! valet-broker: the `BucketAccess` CRD, OIDC trust checks, IAM role
//! provisioning and the `valet broker` controller.
//!
//! Pure modules (`crd` validation, `naming`, `policy`, `evaluate`) never do
//! I/O; `iam`, `provision`, `reconcile`, `controller` and `apply` do.

pub mod accounts;
pub mod apply;
pub mod aws;
pub mod cli;
pub mod cli_trust;
pub mod config;
pub mod controller;
pub mod crd;
pub mod evaluate;
pub mod iam;
pub mod lease;
pub mod metrics;
pub mod naming;
pub mod policy;
pub mod provision;
pub mod reconcile;
pub mod retire;
pub mod sa;
pub mod status;
pub mod trust;
pub mod trust_gate;
