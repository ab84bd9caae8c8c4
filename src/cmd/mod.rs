//! Glue between the command line and the library crates.

pub mod logging;
pub mod mutate;
