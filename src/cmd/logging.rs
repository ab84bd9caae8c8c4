//! Logging set-up: text for people at a terminal, JSON for log pipelines,
//! and the one way a command's fatal error is printed.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use valet_cli::log::{LogArgs, LogFormat};
use valet_core::chain::Chain;

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
