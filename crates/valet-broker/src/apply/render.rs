//! The plan as a reviewer reads it: every S3 and IAM change, policy
//! documents as diffs, the OIDC provider a run makes, and the
//! ServiceAccount annotations.

use std::fmt::Write as _;

use serde_json::Value;
use valet_buckets::plan::{creates, json_diff_lines};

use super::{Planned, Plans};
use crate::provision::Step;

pub fn render_plan(plans: &Plans) -> String {
    let mut out = String::new();
    for item in &plans.claims {
        let src = &item.source;
        let _ = writeln!(
            out,
            "BucketClaim {}/{} ({})",
            src.namespace,
            src.name(),
            src.origin
        );
        match &item.outcome {
            Err(e) => {
                let _ = writeln!(out, "  ! error: {e}");
            }
            Ok(p) => {
                let b = &p.bucket;
                let _ = writeln!(
                    out,
                    "  class {}: bucket {} in account {} ({})",
                    p.class, b.name, b.account, b.region
                );
                if p.changes.is_empty() {
                    let _ = writeln!(out, "  = no changes");
                }
                let mark = if creates(&p.changes) { "+" } else { "~" };
                for change in &p.changes {
                    let _ = writeln!(out, "  {mark} {change}");
                }
            }
        }
    }
    for (account, p) in &plans.providers {
        let _ = writeln!(out, "IAM OIDC provider in account {account}");
        let _ = writeln!(
            out,
            "  + create or repair {} (client ID {}), then check the trust links again",
            p.arn, p.audience
        );
        let _ = writeln!(out, "    found: {}", p.found);
    }
    for item in &plans.accesses {
        let ns = &item.source.namespace;
        let _ = writeln!(
            out,
            "BucketAccess {ns}/{} ({})",
            item.source.name(),
            item.source.origin
        );
        match &item.outcome {
            Err(e) => {
                let _ = writeln!(out, "  ! error: {e}");
            }
            Ok(p) => access(&mut out, ns, p),
        }
    }
    let claim_changes: usize = plans
        .claims
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok())
        .map(|p| p.changes.len())
        .sum();
    let role_changes: usize = plans
        .accesses
        .iter()
        .filter_map(|i| i.outcome.as_ref().ok())
        .map(|p| p.plan.steps.len())
        .sum();
    let changes = claim_changes + role_changes + plans.providers.len();
    let objects = plans.claims.len() + plans.accesses.len();
    let errors = plans.errors().count();
    let _ = writeln!(
        out,
        "Plan: {changes} change(s) to {objects} object(s), {errors} error(s)."
    );
    out
}

fn access(out: &mut String, ns: &str, p: &Planned) {
    let _ = writeln!(out, "  permitted: {}", p.permitted);
    let _ = writeln!(out, "  role {}", p.plan.role.arn);
    if p.plan.steps.is_empty() {
        let _ = writeln!(out, "  = no changes");
    }
    let mark = if p.plan.existed { "~" } else { "+" };
    let role = &p.plan.role;
    let found = &p.plan.found;
    for step in &p.plan.steps {
        let _ = writeln!(out, "  {mark} {step}");
        let (from, to) = match step {
            Step::CreateRole | Step::UpdateTrust => (json(&found.trust), json(&role.trust)),
            Step::PutAccessPolicy => (json(&found.access), json(&role.access)),
            Step::RevokeAccess => (json(&found.access), None),
            Step::PutBoundary => {
                let arn = role.boundary.as_deref().unwrap_or("");
                let _ = writeln!(out, "      + {arn}");
                continue;
            }
        };
        for line in json_diff_lines(from.as_ref(), to.as_ref()) {
            let _ = writeln!(out, "      {line}");
        }
    }
    match (p.trust.ok, p.provider_planned) {
        (true, _) => {
            let _ = writeln!(out, "  trust ok: {}", p.trust.message);
        }
        (false, true) => {
            let _ = writeln!(
                out,
                "  trust waits for the OIDC provider above (checked again once it is made)"
            );
        }
        (false, false) => {
            let _ = writeln!(out, "  trust FAIL: {}", p.trust.message);
        }
    }
    let _ = writeln!(
        out,
        "  ServiceAccount {ns}/{} annotations:",
        role.service_account
    );
    for (k, v) in &p.annotations {
        let _ = writeln!(out, "    {k}: {v}");
    }
}

/// A policy document as the JSON the diff shows (`None` stays absent).
fn json<T: serde::Serialize>(doc: &T) -> Option<Value> {
    serde_json::to_value(doc).ok().filter(|v| !v.is_null())
}
