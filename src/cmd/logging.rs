//! Logging set-up: text for people at a terminal, JSON for log pipelines,
//! and the one way a command's fatal error is printed.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use valet_core::chain::Chain;

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

/// Logs go to stderr so that stdout stays clean for command output. Colour
/// only when stderr is a terminal: escape codes in a pod's log are noise
/// to every pipeline that reads it.
pub fn init(args: &LogArgs) {
    let filter = match &args.log_level {
        // Checked by the parser already.
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Prints the error that ends a command, with each cause said once: a line
/// for people in text mode, a log record in JSON mode (a pipeline reading
/// JSON must not meet a bare line).
pub fn fatal(format: LogFormat, error: &(dyn std::error::Error + 'static)) {
    match format {
        LogFormat::Text => eprintln!("valet: error: {}", Chain(error)),
        LogFormat::Json => tracing::error!(error = %Chain(error), "fatal"),
    }
}
