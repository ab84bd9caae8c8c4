//! The peer's command line as Go writes it, turned into the form clap reads.
//!
//! Go's `flag` and `pflag` accept `-flag`, `-flag=value` and `-flag value`
//! besides the double-dash forms, and the peer's Deployment is started as
//! `/webhook --flag...` (no subcommand). Both are rewritten here before
//! parsing, so a Deployment of the peer runs unchanged on our image.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The program names that mean `valet webhook` (the peer's image runs
/// `/webhook`).
pub const WEBHOOK_ALIASES: [&str; 1] = ["webhook"];

/// Rewrites a full argv (program name first): `webhook ARGS` (by program
/// name) becomes `valet webhook ARGS`, and the webhook's Go-style
/// single-dash flags become double-dash ones. Other subcommands are left
/// exactly as given.
pub fn normalize<I: IntoIterator<Item = OsString>>(argv: I) -> Vec<OsString> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    let Some(program) = argv.first() else {
        return argv;
    };
    let called_as_webhook = Path::new(program)
        .file_name()
        .and_then(OsStr::to_str)
        .is_some_and(|name| WEBHOOK_ALIASES.contains(&name));
    let start = if called_as_webhook {
        argv[0] = OsString::from("valet");
        argv.insert(1, OsString::from("webhook"));
        2
    } else {
        // The subcommand is the first argument that is not a flag (the
        // flags before it are the global --log-format and --log-level, given
        // with `=` or followed by their value).
        let mut i = 1;
        let mut position = None;
        while i < argv.len() {
            let a = argv[i].to_string_lossy();
            if a == "--log-format" || a == "--log-level" {
                i += 2;
                continue;
            }
            if !a.starts_with('-') {
                position = (a == "webhook").then_some(i + 1);
                break;
            }
            i += 1;
        }
        match position {
            Some(p) => p,
            None => return argv,
        }
    };
    for arg in argv.iter_mut().skip(start) {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if let Some(double) = go_single_dash(text) {
            *arg = OsString::from(double);
        }
    }
    argv
}

/// `-name[=value]` as `--name[=value]`; `None` for anything else: `--x`,
/// `-` (stdin), `-h` (clap's short help), and negative numbers (values).
fn go_single_dash(arg: &str) -> Option<String> {
    let rest = arg.strip_prefix('-')?;
    let first = rest.chars().next()?;
    if first == '-' || arg == "-h" || first.is_ascii_digit() || first == '.' {
        return None;
    }
    Some(format!("-{arg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn program_named_webhook_runs_the_webhook_subcommand() {
        assert_eq!(
            norm(&["/webhook", "--in-cluster=false", "-v=4"]),
            ["valet", "webhook", "--in-cluster=false", "--v=4"]
        );
        assert_eq!(norm(&["webhook"]), ["valet", "webhook"]);
        assert_eq!(
            norm(&["/usr/local/bin/valet", "audit"]),
            ["/usr/local/bin/valet", "audit"]
        );
    }

    #[test]
    fn go_single_dash_flags_of_the_webhook_become_double_dash() {
        assert_eq!(
            norm(&[
                "valet",
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "webhook",
                "-port",
                "8443",
                "-logtostderr",
                "-token-expiration",
                "-5",
                "-h",
                "--",
                "-x"
            ]),
            [
                "valet",
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "webhook",
                "--port",
                "8443",
                "--logtostderr",
                "--token-expiration",
                "-5",
                "-h",
                "--",
                "-x"
            ]
        );
    }

    #[test]
    fn other_subcommands_are_untouched() {
        assert_eq!(
            norm(&["valet", "mutate", "--pod", "-", "-o", "patch"]),
            ["valet", "mutate", "--pod", "-", "-o", "patch"]
        );
        assert_eq!(norm(&["valet", "-V"]), ["valet", "-V"]);
    }
}
