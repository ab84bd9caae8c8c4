//! Test-only helpers shared by every crate's tests: an in-process kube API
//! server, an in-process HTTPS OIDC issuer, a moto (AWS IAM/STS) launcher and
//! fixture builders. Never linked into the `valet` binary.

pub mod apiserver;
pub mod moto;
pub mod oidc;
pub mod proxy;
