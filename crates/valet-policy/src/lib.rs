//! valet-policy: IAM policy documents and the one evaluator that judges
//! them. Pure: no I/O, no clock, no environment.
//!
//! The broker writes trust and access policies with these types, reads
//! IAM's copies back into them to detect drift, and `valet-trust` judges a
//! role's trust policy with the same evaluator, so "what the broker wrote"
//! and "what the checker accepts" cannot disagree.

mod document;
pub mod evaluate;

pub use document::*;
