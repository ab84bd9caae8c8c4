//! The table a person reads top-down: counts, then findings by severity, then
//! who has which role and buckets.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::judge::{Finding, Severity};
use crate::report::{Grant, Report};

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let s = &r.summary;
    let scope = r
        .namespace
        .as_deref()
        .map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    let _ = writeln!(out, "storage-valet audit ({scope})");
    let _ = writeln!(
        out,
        "  {} namespaces, {} serviceaccounts ({} with a role), {} pods ({} with a role), {} bucketaccesses",
        s.namespaces,
        s.service_accounts,
        s.service_accounts_with_role,
        s.pods,
        s.pods_with_role,
        s.bucket_accesses
    );
    let _ = writeln!(
        out,
        "  findings: {} error, {} warning, {} info",
        s.findings.error, s.findings.warning, s.findings.info
    );
    match &r.webhooks {
        None => {
            let _ = writeln!(out, "  webhook: not checked");
        }
        Some(w) if w.is_empty() => {
            let _ = writeln!(out, "  webhook: none found");
        }
        Some(w) => {
            for h in w {
                let _ = writeln!(
                    out,
                    "  webhook: {} / {} (failurePolicy {})",
                    h.configuration, h.name, h.failure_policy
                );
            }
        }
    }
    for sev in [Severity::Error, Severity::Warning, Severity::Info] {
        let of: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if of.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} ({})", sev.as_str().to_uppercase(), of.len());
        for f in of {
            let place = match (f.namespace.as_str(), f.object.as_str()) {
                ("", "") => "cluster".to_string(),
                ("", o) => o.to_string(),
                (n, o) => format!("{n} {o}"),
            };
            let _ = writeln!(out, "  [{}] {place}", f.kind.as_str());
            let _ = writeln!(out, "      {}", f.reason);
            let _ = writeln!(out, "      fix: {}", f.fix);
        }
    }
    inventory(r, &mut out);
    out
}

pub fn buckets_text(env: &BTreeMap<String, String>) -> String {
    if env.is_empty() {
        return "-".into();
    }
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn role_text(g: &Grant) -> &str {
    g.role_arn.as_deref().unwrap_or("-")
}

fn inventory(r: &Report, out: &mut String) {
    let mut rows: Vec<[String; 5]> = vec![[
        "NAMESPACE".into(),
        "SERVICEACCOUNT/POD".into(),
        "ROLE".into(),
        "BUCKETS".into(),
        "STATE".into(),
    ]];
    let mut problem: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for f in &r.findings {
        problem
            .entry((f.namespace.as_str(), f.object.as_str()))
            .or_insert(f.kind.as_str());
    }
    for sa in &r.service_accounts {
        let any_role =
            sa.grants.role_arn.is_some() || sa.pods.iter().any(|p| p.received.role_arn.is_some());
        if !any_role {
            continue;
        }
        let sa_obj = format!("serviceaccount/{}", sa.name);
        let state = if !sa.exists {
            "missing"
        } else {
            problem
                .get(&(sa.namespace.as_str(), sa_obj.as_str()))
                .copied()
                .unwrap_or("grants")
        };
        rows.push([
            sa.namespace.clone(),
            sa.name.clone(),
            role_text(&sa.grants).into(),
            buckets_text(&sa.grants.bucket_env),
            state.into(),
        ]);
        for p in &sa.pods {
            let obj = format!("pod/{}", p.name);
            let state = problem
                .get(&(sa.namespace.as_str(), obj.as_str()))
                .copied()
                .unwrap_or(if p.received == sa.grants { "ok" } else { "-" });
            let same = p.received == sa.grants;
            rows.push([
                String::new(),
                format!("  {}", p.name),
                if same {
                    "=".into()
                } else {
                    role_text(&p.received).into()
                },
                if same {
                    "=".into()
                } else {
                    buckets_text(&p.received.bucket_env)
                },
                state.into(),
            ]);
        }
    }
    if rows.len() == 1 {
        let _ = writeln!(out, "\nINVENTORY: no ServiceAccount or pod with a role");
        return;
    }
    let _ = writeln!(
        out,
        "\nINVENTORY (pods: = means as the ServiceAccount grants)"
    );
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::from("  ");
        for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if !r.bucket_accesses.is_empty() {
        let _ = writeln!(out, "\nBUCKETACCESSES");
        for b in &r.bucket_accesses {
            let _ = writeln!(
                out,
                "  {}/{} -> serviceaccount/{}: Ready={}",
                b.namespace,
                b.name,
                b.service_account.as_deref().unwrap_or("-"),
                b.ready.as_deref().unwrap_or("(none)")
            );
        }
    }
}
