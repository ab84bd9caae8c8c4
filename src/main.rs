//! `valet`: one binary for the storage-valet jobs. This file parses the
//! command line and hands over; the work lives in the library crates.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;

// The webhook allocates a few hundred small objects per admission on every
// worker thread; glibc's malloc spent a fifth of the webhook's CPU under
// load (perf, bench/webhook). mimalloc's per-thread pages make that cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults favour speed over footprint: it keeps freed pages
/// for a second and backs its arena with transparent huge pages, so a 4 KiB
/// touch can fault in 2 MiB. A long-running webhook syncing 100,000
/// ServiceAccounts then sits at 62 MiB RSS instead of 47 (bench/cache-memory).
/// Return freed pages after 100 ms and use normal pages (the heap is small:
/// huge pages buy no TLB reach worth that).
///
/// The arena is reserved before `main`, so THP is refused for the process
/// (`PR_SET_THP_DISABLE`, as mimalloc itself does when told at start-up).
/// Values an operator set through mimalloc's own environment variables win.
fn tune_allocator() {
    use libmimalloc_sys::{mi_option_set, mi_option_t};
    // Positions in mimalloc v3's `mi_option_e` (include/mimalloc.h of the
    // pinned libmimalloc-sys), which the crate does not name.
    const PURGE_DELAY: mi_option_t = 15;
    const ALLOW_THP: mi_option_t = 43;
    for (option, value, var) in [
        (PURGE_DELAY, 100, "MIMALLOC_PURGE_DELAY"),
        (ALLOW_THP, 0, "MIMALLOC_ALLOW_THP"),
    ] {
        if std::env::var_os(var).is_some() {
            continue;
        }
        // SAFETY: mi_option_set only stores an integer option; any value is valid.
        unsafe { mi_option_set(option, value) };
        #[cfg(target_os = "linux")]
        if option == ALLOW_THP {
            // SAFETY: PR_SET_THP_DISABLE takes integer arguments and only
            // changes how this process's future page faults are served.
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        }
    }
}

#[derive(Parser)]
#[command(
    name = "valet",
    version,
    propagate_version = true,
    about = "Short-lived, least-privilege S3 access for Kubernetes pods across AWS accounts"
)]
struct Cli {
    #[command(flatten)]
    log: valet_cli::log::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTPS admission webhook (drop-in for amazon-eks-pod-identity-webhook).
    // The webhook keeps the peer's own `--version[=BOOL]`, which prints the version too.
    #[command(disable_version_flag = true)]
    Webhook(Box<valet_webhook::WebhookArgs>),
    /// Offline dry run of the webhook: the mutation of a pod by its ServiceAccount.
    Mutate(cmd::mutate::MutateArgs),
    /// BucketAccess controller (Lease-elected); `valet broker apply -f FILE...` for pipelines.
    Broker(Box<valet_cli::broker::BrokerArgs>),
    /// Print the BucketAccess CustomResourceDefinition.
    Crd(valet_cli::broker::CrdArgs),
    /// Which pods and ServiceAccounts got which roles and buckets; what is wrong or stale.
    Audit(Box<valet_cli::audit::AuditArgs>),
    /// OIDC trust diagnosis: PASS/WARN/FAIL per link, with the fix.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// CA and serving certificate for the webhook Service, and its caBundle.
    Certs(valet_tls::CertsArgs),
    /// Shell completions on stdout (e.g. `valet completions bash > /etc/bash_completion.d/valet`).
    Completions(CompletionsArgs),
}

#[derive(clap::Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Check every link from the cluster's issuer to the role's trust policy.
    Check(valet_cli::trust::TrustCheckArgs),
}

fn main() -> ExitCode {
    tune_allocator();
    // `/webhook ARGS` (the peer's command) runs `valet webhook ARGS`, and
    // the webhook's Go-style `-flag` forms are read as `--flag`.
    let cli = Cli::parse_from(valet_webhook::argv::normalize(std::env::args_os()));
    cmd::logging::init(&cli.log);
    let log_format = cli.log.log_format;
    // One crypto provider for rustls, kube and the AWS SDK, installed first.
    valet_kube::install_crypto_provider();
    let result = match cli.command {
        Command::Completions(args) => {
            let shell = match args.shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "valet", &mut script);
            valet_core::out::print(&String::from_utf8_lossy(&script))
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        Command::Webhook(args) => cmd::block_on(async {
            valet_webhook::run(*args).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Mutate(args) => cmd::mutate::run(args),
        Command::Broker(args) => cmd::block_on(async {
            // `broker apply`: 1 refused input, 2 could not run (DESIGN.md).
            Ok(valet_cli::broker::run_broker(*args)
                .await
                .unwrap_or_else(|e| {
                    cmd::logging::fatal(log_format, &e);
                    ExitCode::from(e.exit_code())
                }))
        }),
        Command::Crd(args) => valet_cli::broker::run_crd(args).map_err(Into::into),
        Command::Audit(args) => cmd::block_on(async {
            // Exit 1 means findings; an audit that could not run is 2.
            Ok(valet_audit::cli::run((*args).into())
                .await
                .unwrap_or_else(|e| {
                    cmd::logging::fatal(log_format, &e);
                    ExitCode::from(valet_audit::cli::EXIT_ERROR)
                }))
        }),
        Command::Trust(TrustCommand::Check(args)) => {
            cmd::block_on(async { Ok(valet_cli::trust::run(args).await?) })
        }
        Command::Certs(args) => cmd::block_on(async {
            valet_tls::cli::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            cmd::logging::fatal(log_format, e.as_ref());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod cli_tests;
