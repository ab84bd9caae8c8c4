//! Glue between the command line and the library crates.

pub mod logging;
pub mod mutate;

/// Runs an async command on a multi-threaded runtime built for it.
pub fn block_on<F>(f: F) -> anyhow::Result<std::process::ExitCode>
where
    F: std::future::Future<Output = anyhow::Result<std::process::ExitCode>>,
{
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(f)
}
