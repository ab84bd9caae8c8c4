//! The broker's roles in its bucket accounts, read through the provisioning
//! role (`--broker-config`): ListRoles under the broker's path, then
//! ListRoleTags for each, keeping only roles our ownership tags prove are
//! the broker's for this cluster. Read-only; a failure is a note, not an
//! aborted audit.

use std::sync::Arc;

use tracing::debug;
use valet_broker::accounts::Accounts;
use valet_broker::config::BrokerConfig;
use valet_broker::iam::IamProbe;
use valet_broker::naming::role_path;
use valet_broker::provision::{MANAGED_BY, TAG_CLUSTER, TAG_MANAGED_BY, TAG_NAMESPACE};
use valet_trust::aws::AwsClients;

use crate::facts::{Facts, RoleFacts};
use crate::progress::Progress;

/// Every bucket account the config names (the default one included).
fn accounts_of(cfg: &BrokerConfig) -> Vec<String> {
    let mut all: Vec<String> = cfg.bucket_accounts.keys().cloned().collect();
    all.extend(cfg.default_bucket_account.clone());
    all.sort();
    all.dedup();
    all
}

/// Fills `facts.roles`; an account that cannot be read is a note. With
/// `namespace`, only that namespace's roles (its BucketAccesses are all the
/// audit read).
pub async fn collect_roles(cfg: BrokerConfig, namespace: Option<&str>, facts: &mut Facts) {
    let path = match role_path(&cfg.role_path, &cfg.cluster_name) {
        Ok(p) => p,
        Err(e) => {
            facts.notes.push(format!(
                "the broker config's rolePath is invalid ({e}): roles not checked"
            ));
            return;
        }
    };
    let aws = AwsClients::load(&cfg.aws_config()).await;
    let cluster = cfg.cluster_name.clone();
    let account_ids = accounts_of(&cfg);
    let accounts = Accounts::new(aws, Arc::new(cfg), Arc::new(IamProbe::default()));
    let mut roles = Vec::new();
    let mut complete = true;
    for account in account_ids {
        let clients = match accounts.get(&account).await {
            Ok(c) => c,
            Err(e) => {
                complete = false;
                facts.notes.push(format!(
                    "cannot reach bucket account {account} ({e}): its roles not checked"
                ));
                continue;
            }
        };
        let listed = match clients.iam.list_roles(&path).await {
            Ok(l) => l,
            Err(e) => {
                complete = false;
                facts.notes.push(format!(
                    "cannot list roles under {path} in bucket account {account} ({e}): not checked"
                ));
                continue;
            }
        };
        let mut progress = Progress::new("roles", listed.len());
        for (name, arn) in listed {
            progress.step();
            match clients.iam.list_role_tags(&name).await {
                Ok(tags) => {
                    let ours = tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
                        && tags.get(TAG_CLUSTER) == Some(&cluster)
                        && namespace.is_none_or(|ns| {
                            tags.get(TAG_NAMESPACE).map(String::as_str) == Some(ns)
                        });
                    if ours {
                        roles.push(RoleFacts {
                            account: account.clone(),
                            name,
                            arn,
                            tags,
                        });
                    }
                }
                Err(e) => {
                    complete = false;
                    facts.notes.push(format!(
                        "cannot read the tags of role {arn} ({e}): not checked"
                    ));
                }
            }
        }
        progress.finish();
    }
    debug!(roles = roles.len(), complete, "broker roles collected");
    facts.roles = Some(roles);
}
