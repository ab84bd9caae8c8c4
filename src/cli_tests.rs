//! The command-line tree as a whole: what holds for every subcommand and flag.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::Cli;

/// Every subcommand path, from `valet` down (`["broker", "apply"]`, ...).
fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut path = prefix.clone();
        path.push(sub.get_name().to_string());
        out.push((path.clone(), sub.clone()));
        paths(sub, path, out);
    }
}

fn all_commands() -> Vec<(Vec<String>, clap::Command)> {
    let mut root = Cli::command();
    root.build();
    let mut out = vec![(Vec::new(), root.clone())];
    paths(&root, Vec::new(), &mut out);
    out
}

#[test]
fn every_subcommand_prints_its_version() {
    let commands = all_commands();
    assert!(commands.len() > 8, "the tree walk found too little");
    for (path, _) in commands {
        let mut argv = vec!["valet".to_string()];
        argv.extend(path.iter().cloned());
        argv.push("--version".into());
        match Cli::try_parse_from(&argv) {
            Err(e) if e.kind() == ErrorKind::DisplayVersion => {}
            // The webhook's own peer-compatible `--version` parses as a flag
            // and prints the version when run.
            Ok(_) if path == ["webhook"] => {}
            Err(e) => panic!("{argv:?}: {e}"),
            Ok(_) => panic!("{argv:?} parsed as a command instead of printing the version"),
        }
    }
}

#[test]
fn every_visible_flag_has_help() {
    let mut missing = Vec::new();
    for (path, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            if arg.is_hide_set() || arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("valet {} {}", path.join(" "), arg.get_id()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without help text:\n{}",
        missing.join("\n")
    );
}

/// DESIGN.md "CLI conventions": one flag and one env var for the cluster,
/// wherever a subcommand talks to it.
#[test]
fn every_kubeconfig_flag_reads_kubeconfig() {
    let mut seen = Vec::new();
    for (path, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            if arg.get_long() != Some("kubeconfig") {
                continue;
            }
            seen.push(path.join(" "));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(valet_kube::ENV),
                "valet {}",
                path.join(" ")
            );
            assert_eq!(
                arg.get_help().map(|h| h.to_string()).as_deref(),
                Some(valet_kube::HELP),
                "valet {}",
                path.join(" ")
            );
        }
    }
    for expected in ["webhook", "broker", "audit", "trust check", "certs"] {
        assert!(
            seen.iter().any(|s| s == expected),
            "valet {expected}: {seen:?}"
        );
    }
}
