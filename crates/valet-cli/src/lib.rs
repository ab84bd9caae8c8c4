//! valet-cli: the command line of `valet broker`, `valet crd`, `valet trust
//! check` and `valet audit`. Each module holds the clap arguments of one
//! subcommand and turns them into the plain config structs the library
//! crates take, so the libraries never see clap and tests reach both sides.

pub mod audit;
pub mod broker;
pub mod log;
pub mod trust;
