//! Mountpoint for S3 CSI volumes and roles shared between ServiceAccounts.
//! Pure. A volume with driver-level credentials reads S3 as the driver's own
//! IAM identity, whatever the pod's ServiceAccount: used from several
//! namespaces, it is one identity shared across tenants.

use std::collections::{BTreeMap, BTreeSet};

use crate::facts::{Facts, S3VolumeFacts};
use crate::judge::{Finding, Kind, Severity};

/// `namespace/pod` names of the pods mounting `v`'s claim.
fn pods_of<'a>(facts: &'a Facts, v: &S3VolumeFacts) -> Vec<(&'a str, &'a str)> {
    let Some((ns, claim)) = &v.claim else {
        return Vec::new();
    };
    facts
        .pods
        .iter()
        .filter(|p| &p.namespace == ns && p.claims.iter().any(|c| c == claim))
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .collect()
}

pub fn s3_volumes(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(volumes) = &facts.s3_volumes else {
        return;
    };
    // Namespaces whose pods read S3 through the driver's own credentials.
    let driver_namespaces: BTreeSet<&str> = volumes
        .iter()
        .filter(|v| v.driver_credentials)
        .flat_map(|v| pods_of(facts, v))
        .map(|(ns, _)| ns)
        .collect();
    for v in volumes {
        let pods = pods_of(facts, v);
        let bucket = v.bucket.as_deref().unwrap_or("(no bucketName)");
        let claim = v
            .claim
            .as_ref()
            .map_or("no claim".to_string(), |(ns, c)| format!("claim {ns}/{c}"));
        let mounted: Vec<&str> = pods.iter().map(|(_, p)| *p).collect();
        let credentials = if v.driver_credentials {
            "the driver's own credentials"
        } else {
            "the pods' own credentials (authenticationSource: pod)"
        };
        let namespace = v
            .claim
            .as_ref()
            .map(|(ns, _)| ns.clone())
            .unwrap_or_default();
        out.push(Finding {
            severity: Severity::Info,
            kind: Kind::S3CsiVolume,
            namespace: namespace.clone(),
            object: format!("persistentvolume/{}", v.name),
            reason: format!(
                "Mountpoint for S3 CSI volume of bucket {bucket}, {claim}, mounted by {} pod(s){}{}; reads S3 with {credentials}",
                mounted.len(),
                if mounted.is_empty() { "" } else { ": " },
                mounted.join(", ")
            ),
            fix: "nothing to do: inventory".into(),
        });
        if v.driver_credentials && driver_namespaces.len() > 1 && !pods.is_empty() {
            let others: Vec<&str> = driver_namespaces
                .iter()
                .copied()
                .filter(|ns| *ns != namespace)
                .collect();
            out.push(Finding {
                severity: Severity::Warning,
                kind: Kind::SharedDriverCredentials,
                namespace,
                object: format!("persistentvolume/{}", v.name),
                reason: format!(
                    "bucket {bucket} is read with the CSI driver's own credentials, which pods in namespace(s) {} use too: every one of them can reach whatever the driver's role can",
                    others.join(", ")
                ),
                fix: format!(
                    "set volumeAttributes.authenticationSource: pod on PersistentVolume {} so its pods use their ServiceAccount's role, and give the driver's role no bucket access",
                    v.name
                ),
            });
        }
    }
}

/// Roles named by the role-arn annotation of several ServiceAccounts.
pub fn shared_roles(facts: &Facts, out: &mut Vec<Finding>) {
    let mut by_role: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for sa in &facts.service_accounts {
        if let Some(role) = sa.config.role_arn.as_deref() {
            by_role
                .entry(role)
                .or_default()
                .push(format!("{}/{}", sa.namespace, sa.name));
        }
    }
    for (role, sas) in by_role.into_iter().filter(|(_, s)| s.len() > 1) {
        let name = role.rsplit('/').next().unwrap_or(role);
        out.push(Finding {
            severity: Severity::Info,
            kind: Kind::SharedRole,
            namespace: String::new(),
            object: format!("role/{name}"),
            reason: format!(
                "role {role} is the role of {} ServiceAccounts: {}; the pods of each can do whatever the others can",
                sas.len(),
                sas.join(", ")
            ),
            fix: "give each ServiceAccount its own role (a BucketAccess per ServiceAccount does)".into(),
        });
    }
}
