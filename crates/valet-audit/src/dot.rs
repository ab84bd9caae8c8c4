//! Graphviz: namespace -> ServiceAccount -> role -> bucket; whatever has a
//! finding is red, with the finding kinds in its label.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::report::Report;

/// A DOT double-quoted string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for ch in s.chars() {
        match ch {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Buckets (with prefixes) named by `S3_BUCKET*` / `S3_PREFIX*` env.
fn buckets(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter()
        .filter_map(|(k, bucket)| {
            let suffix = k.strip_prefix("S3_BUCKET")?;
            let prefix = env.get(&format!("S3_PREFIX{suffix}"));
            Some(match prefix {
                Some(p) => format!("{bucket}/{p}"),
                None => bucket.clone(),
            })
        })
        .collect()
}

pub fn render(r: &Report) -> String {
    // object -> finding kinds, per namespace.
    let mut kinds: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for f in &r.findings {
        kinds
            .entry((f.namespace.clone(), f.object.clone()))
            .or_default()
            .insert(f.kind.as_str());
    }
    let mut out = String::from(
        "digraph audit {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    let mut nodes: BTreeMap<String, (String, bool, &str)> = BTreeMap::new();
    let mut edges: BTreeSet<(String, String, bool)> = BTreeSet::new();
    let mut node = |id: String, label: String, red: bool, shape: &'static str| {
        let e = nodes.entry(id).or_insert((label, false, shape));
        e.1 |= red;
    };
    for sa in &r.service_accounts {
        let ns_id = format!("ns/{}", sa.namespace);
        node(ns_id.clone(), sa.namespace.clone(), false, "folder");
        let sa_id = format!("sa/{}/{}", sa.namespace, sa.name);
        let mut sa_kinds: BTreeSet<&str> = BTreeSet::new();
        let obj = format!("serviceaccount/{}", sa.name);
        if let Some(k) = kinds.get(&(sa.namespace.clone(), obj)) {
            sa_kinds.extend(k);
        }
        for p in &sa.pods {
            if let Some(k) = kinds.get(&(sa.namespace.clone(), format!("pod/{}", p.name))) {
                sa_kinds.extend(k);
            }
        }
        let red = !sa_kinds.is_empty();
        let mut label = format!("serviceaccount {}\\n{} pods", sa.name, sa.pods.len());
        if !sa_kinds.is_empty() {
            let _ = write!(
                label,
                "\\n{}",
                sa_kinds.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        node(sa_id.clone(), label, red, "box");
        edges.insert((ns_id, sa_id.clone(), false));
        let mut grants: Vec<(&crate::report::Grant, bool)> = vec![(&sa.grants, false)];
        // Roles pods still run with that the ServiceAccount no longer grants.
        grants.extend(
            sa.pods
                .iter()
                .filter(|p| p.received != sa.grants)
                .map(|p| (&p.received, true)),
        );
        for (g, stale) in grants {
            let Some(role) = g.role_arn.as_deref() else {
                continue;
            };
            let role_id = format!("role/{role}");
            node(role_id.clone(), role.to_string(), false, "ellipse");
            edges.insert((sa_id.clone(), role_id.clone(), stale));
            for b in buckets(&g.bucket_env) {
                let b_id = format!("bucket/{b}");
                node(b_id.clone(), format!("s3://{b}"), false, "cylinder");
                edges.insert((role_id.clone(), b_id, stale));
            }
        }
    }
    for b in &r.bucket_accesses {
        let ns_id = format!("ns/{}", b.namespace);
        node(ns_id.clone(), b.namespace.clone(), false, "folder");
        let id = format!("ba/{}/{}", b.namespace, b.name);
        let red = b.ready.as_deref() != Some("True");
        node(
            id.clone(),
            format!(
                "bucketaccess {}\\nReady={}",
                b.name,
                b.ready.as_deref().unwrap_or("none")
            ),
            red,
            "note",
        );
        edges.insert((ns_id, id.clone(), false));
        if let Some(sa) = &b.service_account {
            edges.insert((id, format!("sa/{}/{sa}", b.namespace), false));
        }
    }
    let cluster: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.namespace.is_empty())
        .map(|f| format!("{}: {}", f.kind.as_str(), f.object))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !cluster.is_empty() {
        node(
            "cluster".into(),
            format!("cluster\\n{}", cluster.join("\\n")),
            true,
            "octagon",
        );
    }
    let known: BTreeSet<String> = nodes.keys().cloned().collect();
    for (id, (label, red, shape)) in &nodes {
        let color = if *red {
            ", color=red, fontcolor=red"
        } else {
            ""
        };
        // Labels carry `\n` escapes on purpose: quote only what the id needs.
        let _ = writeln!(
            out,
            "  {} [label=\"{}\", shape={shape}{color}];",
            quote(id),
            label.replace('"', "\\\"")
        );
    }
    for (from, to, stale) in &edges {
        if !known.contains(to) {
            continue;
        }
        let style = if *stale {
            " [color=red, style=dashed, label=\"stale\"]"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} -> {}{style};", quote(from), quote(to));
    }
    out.push_str("}\n");
    out
}
