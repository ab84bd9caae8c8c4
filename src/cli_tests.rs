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

/// Every long flag of the tree, hidden aliases included.
fn all_long_flags() -> std::collections::BTreeSet<String> {
    let mut flags = std::collections::BTreeSet::new();
    for (_, cmd) in all_commands() {
        for arg in cmd.get_arguments() {
            flags.extend(arg.get_long().map(str::to_string));
            flags.extend(
                arg.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
    }
    flags
}

/// `--name` mentions in the string literals of a Rust source file, except
/// those of another program's command line in the hint (`aws iam ...`,
/// `kubectl ...`, up to the next `(`, `;` or the literal's end).
fn flags_in_literals(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let bytes = line.as_bytes();
        let (mut in_literal, mut foreign) = (false, false);
        let mut i = 0;
        while i < bytes.len() {
            // Work on bytes: a multi-byte char is never a quote or a flag.
            let rest = line.get(i..).unwrap_or_default();
            match bytes[i] {
                b'\\' => i += 1,
                b'"' => {
                    in_literal = !in_literal;
                    foreign = false;
                }
                b'(' | b';' => foreign = false,
                _ if in_literal && (rest.starts_with("aws ") || rest.starts_with("kubectl ")) => {
                    foreign = true;
                }
                b'-' if in_literal
                    && !foreign
                    && rest.len() > 2
                    && rest.as_bytes()[1] == b'-'
                    && rest.as_bytes()[2].is_ascii_lowercase()
                    && (i == 0
                        || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'-') =>
                {
                    let name: String = rest[2..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect();
                    found.push(name.trim_end_matches('-').to_string());
                }
                _ => {}
            }
            i += 1;
        }
    }
    found
}

/// DESIGN.md "CLI conventions": every fix hint names a flag that exists.
/// The flags of other programs our hints name on purpose are listed.
#[test]
fn every_flag_the_code_prints_parses() {
    const OTHER_PROGRAMS: &[&str] = &[
        // kube-apiserver's, named as where the issuer comes from.
        "service-account-issuer",
        "service-account-jwks-uri",
        "api-audiences",
        "service-account-signing-key-file",
        "service-account-key-file",
        // A fragment of an `aws iam create-open-id-connect-provider` hint.
        "thumbprint-list",
        // S3 bucket-name suffixes, not flags.
        "x-s3",
        "ol-s3",
        "table-s3",
    ];
    let known = all_long_flags();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("src")];
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        files.push(entry.expect("entry").path().join("src"));
    }
    let mut unknown = Vec::new();
    let mut seen = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("dir") {
                files.push(entry.expect("entry").path());
            }
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // Test modules print no hints to users.
        if !name.ends_with(".rs") || name.ends_with("tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("read source");
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        for flag in flags_in_literals(source) {
            seen += 1;
            if !known.contains(&flag) && !OTHER_PROGRAMS.contains(&flag.as_str()) {
                unknown.push(format!("{}: --{flag}", path.display()));
            }
        }
    }
    assert!(seen > 20, "the scan found only {seen} flag mentions");
    assert!(
        unknown.is_empty(),
        "hints name flags no subcommand has:\n{}",
        unknown.join("\n")
    );
}
