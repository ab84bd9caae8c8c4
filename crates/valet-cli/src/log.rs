//! The log flags every component shares (global on `valet`), here so that
//! tests parse install command lines with the very definitions the binary uses.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The flags every component shares (global on `valet`).
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr: text for people, json (one object per line) for log pipelines.
    #[arg(long, global = true, env = "VALET_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Log level or filter: error, warn, info, debug, trace, or directives such as
    /// `info,valet_webhook=debug`. Default: RUST_LOG when set, else info.
    #[arg(long, global = true, env = "VALET_LOG_LEVEL", value_parser = parse_filter)]
    pub log_level: Option<String>,
}

/// A bare word is a target to EnvFilter (`verbose` would show only the
/// logs of a crate named verbose): here a directive without `=` must be a level.
fn parse_filter(s: &str) -> Result<String, String> {
    const HINT: &str = "expected a level (error, warn, info, debug, trace, off) or directives such as info,valet_webhook=debug";
    for directive in s.split(',') {
        let directive = directive.trim();
        if !directive.contains('=') && directive.parse::<LevelFilter>().is_err() {
            return Err(format!("{directive:?} is not a level ({HINT})"));
        }
    }
    EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e} ({HINT})"))
}
