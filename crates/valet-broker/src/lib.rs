//! valet-broker: the `BucketAccess` CRD, OIDC trust checks, IAM role
//! provisioning and the `valet broker` controller.
//!
//! Pure modules (`crd` validation, `naming`, `policy`, `evaluate`) never do
//! I/O; `iam`, `provision`, `reconcile`, `controller` and `apply` do.

pub mod aws;
pub mod cli_trust;
pub mod config;
pub mod crd;
pub mod evaluate;
pub mod iam;
pub mod naming;
pub mod policy;
pub mod provision;
pub mod trust;
