//! The report as a person reads it (a table) or a program does (JSON).

use std::fmt::Write;

use super::{Status, TrustReport};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// Reasons are wrapped at this many columns (after the status column).
const WRAP: usize = 88;
/// `" 1  role-trust  PASS  "`
const INDENT: usize = 24;

pub fn render(report: &TrustReport, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                + "\n"
        }
        OutputFormat::Table => table(report),
    }
}

fn table(r: &TrustReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ServiceAccount {}/{}  role {}  audience {}",
        r.namespace,
        r.service_account,
        r.role_arn.as_deref().unwrap_or("(none)"),
        r.audience
    );
    let _ = writeln!(out, "issuer {}", r.issuer.as_deref().unwrap_or("(unknown)"));
    for change in &r.fixed {
        let _ = writeln!(out, "fixed: {change}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, " #  {:<10}  {:<6}  REASON", "LINK", "STATUS");
    let pad = " ".repeat(INDENT);
    for l in &r.links {
        let head = format!(
            "{:>2}  {:<10}  {:<6}  ",
            l.link.number(),
            l.link.name(),
            l.status.as_str()
        );
        write_wrapped(&mut out, &head, &pad, &l.reason);
        if let Some(fix) = &l.fix {
            write_wrapped(
                &mut out,
                &format!("{pad}fix: "),
                &format!("{pad}     "),
                fix,
            );
        }
    }
    let fails = r.count(Status::Fail);
    let warns = r.count(Status::Warn);
    let verdict = if fails > 0 {
        "FAIL"
    } else if warns > 0 {
        "PASS with warnings"
    } else {
        "PASS"
    };
    let _ = writeln!(out);
    let _ = writeln!(out, "result: {verdict} ({fails} failed, {warns} warned)");
    out
}

/// Writes `text` after `first`, wrapping at spaces; continuation lines
/// start with `rest`.
fn write_wrapped(out: &mut String, first: &str, rest: &str, text: &str) {
    let mut line = first.to_string();
    let mut width = 0;
    for word in text.split(' ') {
        if width > 0 && width + 1 + word.len() > WRAP {
            let _ = writeln!(out, "{}", line.trim_end());
            line = rest.to_string();
            width = 0;
        }
        if width > 0 {
            line.push(' ');
            width += 1;
        }
        line.push_str(word);
        width += word.len();
    }
    let _ = writeln!(out, "{}", line.trim_end());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Link, LinkResult};

    #[test]
    fn table_has_a_line_per_link_and_the_verdict() {
        let r = TrustReport {
            namespace: "team-a".into(),
            service_account: "app".into(),
            role_arn: None,
            audience: "sts.amazonaws.com".into(),
            issuer: Some("https://x".into()),
            fixed: vec![],
            links: vec![
                LinkResult::pass(Link::Issuer, "ok"),
                LinkResult::fail(Link::Keys, "word ".repeat(40).trim(), "do this"),
            ],
        };
        let t = render(&r, OutputFormat::Table);
        assert!(t.contains(" 1  issuer      PASS    ok\n"), "{t}");
        assert!(t.contains(" 2  keys        FAIL    word"), "{t}");
        assert!(t.contains("fix: do this"), "{t}");
        assert!(t.lines().all(|l| l.len() <= INDENT + WRAP + 6), "{t}");
        assert!(t.ends_with("result: FAIL (1 failed, 0 warned)\n"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(j["links"][1]["status"], "FAIL");
        assert_eq!(j["links"][1]["link"], "keys");
        assert_eq!(j["serviceAccount"], "app");
    }
}
