//! The pure core of storage-valet.
//!
//! Everything here is a function of its arguments: no network, no clock, no
//! environment, no files (one exception, [`out`]: the commands' stdout,
//! shared so that each of them ends quietly on a closed pipe). The webhook, `valet mutate`, the broker and the
//! audit all call the same functions, so what `valet mutate` prints is what
//! the webhook does.
//!
//! - [`identity`]: ServiceAccount annotations -> [`identity::SaConfig`]
//! - [`pod`]: the lean view of a Pod that the decision needs, its strings
//!   borrowed from the request body
//! - [`mutate`]: pod + identity + settings -> RFC 6902 JSON Patch
//! - [`admission`]: AdmissionReview in (decode), the decision (decide),
//!   AdmissionReview out (encode)
//! - [`arn`], [`bucket`]: typed values with the checks AWS makes
//! - [`chain`]: an error and its causes, each said once

pub mod admission;
pub mod arn;
pub mod bucket;
pub mod chain;
pub mod consts;
pub mod identity;
pub mod mutate;
pub mod out;
pub mod pod;
pub mod settings;

pub use identity::{AnnotationProblem, SaConfig};
pub use mutate::{Mutation, Outcome, mutate};
pub use pod::PodView;
pub use settings::{ContainerCredentialsSettings, Settings};
