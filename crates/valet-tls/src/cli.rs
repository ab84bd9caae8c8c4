//! `valet certs`: a CA and a serving certificate for the webhook Service,
//! kept in a directory or in Secrets, and the caBundle of the
//! MutatingWebhookConfiguration kept in step.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use tracing::info;

use crate::plan::{Action, Material, Plan, Policy, plan};
use crate::{TlsError, service_dns_names, store};

const DAY: Duration = Duration::from_secs(86_400);
/// Attempts at the caBundle update when someone else writes the same object.
const CONFLICT_RETRIES: usize = 5;

/// Flags of `valet certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service (the certificate is valid for its DNS names).
    #[arg(
        long,
        env = "VALET_CERTS_SERVICE",
        default_value = "storage-valet-webhook"
    )]
    pub service: String,

    /// Namespace of the Service (and of the Secret).
    #[arg(long, env = "VALET_CERTS_NAMESPACE", default_value = "storage-valet")]
    pub namespace: String,

    /// Directory for ca.crt, ca.key, tls.crt, tls.key. The default when no
    /// --secret is given is `certs/`; with --secret, files are written only
    /// when this is set.
    #[arg(long, env = "VALET_CERTS_OUT_DIR")]
    pub out_dir: Option<PathBuf>,

    /// Store the pair in this kubernetes.io/tls Secret (tls.crt, tls.key,
    /// ca.crt) and the CA in `<NAME>-ca`, which the webhook does not mount.
    #[arg(long, env = "VALET_CERTS_SECRET")]
    pub secret: Option<String>,

    /// Set the caBundle of every webhook in this MutatingWebhookConfiguration.
    #[arg(long, env = "VALET_CERTS_WEBHOOK_CONFIG")]
    pub webhook_config: Option<String>,

    /// Validity of the serving certificate, in days.
    #[arg(long, env = "VALET_CERTS_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Validity of a new CA, in days (a CA is kept while it outlives the
    /// serving certificates it signs).
    #[arg(long, env = "VALET_CERTS_CA_DAYS", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: u32,

    /// Renew the serving certificate when it expires within this many days.
    #[arg(long, env = "VALET_CERTS_RENEW_BEFORE", default_value_t = 30)]
    pub renew_before: u32,

    #[arg(long, env = valet_kube::ENV, help = valet_kube::HELP)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(transparent)]
    Tls(#[from] TlsError),

    #[error("cannot {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error(transparent)]
    KubeConfig(#[from] valet_kube::Error),

    #[error(
        "MutatingWebhookConfiguration {name} does not exist (apply the manifests first, or omit --webhook-config)"
    )]
    NoWebhookConfig { name: String },

    #[error("MutatingWebhookConfiguration {name} has no webhooks to patch")]
    EmptyWebhookConfig { name: String },

    #[error(
        "--days {days} must be longer than --renew-before {renew_before}, or every run would renew"
    )]
    RenewWindow { days: u32, renew_before: u32 },
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct CertsOutcome {
    pub ca: Action,
    pub serving: Action,
    pub reasons: Vec<String>,
    /// base64 of the PEM trust bundle: the value of `caBundle`.
    pub ca_bundle: String,
    pub files: Vec<PathBuf>,
    pub secret: Option<String>,
    /// Webhooks whose caBundle was updated.
    pub patched_webhooks: usize,
    pub not_after: SystemTime,
}

/// Runs `valet certs` and prints a summary on stderr and the caBundle on stdout.
pub async fn run(args: CertsArgs) -> Result<CertsOutcome, CertsError> {
    let outcome = execute(&args).await?;
    eprintln!(
        "CA: {}; serving certificate: {} (valid until {}, for {})",
        describe(outcome.ca),
        describe(outcome.serving),
        crate::fmt_time(outcome.not_after),
        service_dns_names(&args.service, &args.namespace).join(", "),
    );
    for reason in &outcome.reasons {
        eprintln!("  {reason}");
    }
    for file in &outcome.files {
        eprintln!("wrote {}", file.display());
    }
    if let Some(secret) = &outcome.secret {
        eprintln!(
            "Secret {ns}/{secret} (CA in {ns}/{ca})",
            ns = args.namespace,
            ca = store::ca_secret_name(secret)
        );
    }
    if let Some(name) = &args.webhook_config {
        eprintln!(
            "caBundle set on {} webhook(s) of {name}",
            outcome.patched_webhooks
        );
    }
    eprintln!("caBundle (base64):");
    println!("{}", outcome.ca_bundle);
    Ok(outcome)
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::Kept => "kept",
        Action::Created => "created",
        Action::Renewed => "renewed",
    }
}

/// `run` without printing: for tests and other callers.
pub async fn execute(args: &CertsArgs) -> Result<CertsOutcome, CertsError> {
    if args.renew_before >= args.days {
        return Err(CertsError::RenewWindow {
            days: args.days,
            renew_before: args.renew_before,
        });
    }
    let policy = Policy {
        dns_names: service_dns_names(&args.service, &args.namespace),
        ca_common_name: format!("storage-valet CA for {}.{}", args.service, args.namespace),
        serving_validity: DAY * args.days,
        ca_validity: DAY * args.ca_days,
        renew_before: DAY * args.renew_before,
    };
    let out_dir = match (&args.out_dir, &args.secret) {
        (Some(dir), _) => Some(dir.clone()),
        (None, None) => Some(PathBuf::from("certs")),
        (None, Some(_)) => None,
    };
    let client = if args.secret.is_some() || args.webhook_config.is_some() {
        Some(client(args.kubeconfig.as_ref()).await?)
    } else {
        None
    };
    let secrets = client
        .as_ref()
        .map(|c| Api::<Secret>::namespaced(c.clone(), &args.namespace));

    // The Secret is the source of truth when there is one: it is what the
    // webhook serves.
    let existing = match (&secrets, &args.secret, &out_dir) {
        (Some(api), Some(name), _) => store::read_secrets(api, name).await?,
        (_, _, Some(dir)) => store::read_dir(dir)?,
        _ => Material::default(),
    };
    let plan = plan(&existing, &policy, SystemTime::now())?;
    let not_after =
        crate::inspect_certificate_pem(plan.serving.cert_pem.as_bytes(), "tls.crt".as_ref())?
            .not_after;

    let mut files = Vec::new();
    if let Some(dir) = &out_dir {
        // Rewriting unchanged files would wake every watcher for nothing;
        // the directory may still lag behind a Secret that is the source.
        let on_disk = store::read_dir(dir)?;
        if plan.changed() || !holds(&on_disk, &plan) {
            files = store::write_dir(dir, &plan)?;
        }
    }
    if let (Some(api), Some(name)) = (&secrets, &args.secret)
        && plan.changed()
    {
        store::write_secrets(api, name, &plan).await?;
        info!(namespace = %args.namespace, secret = %name, "certificate Secrets written");
    }
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&plan.trust_bundle_pem);
    let mut patched_webhooks = 0;
    if let (Some(client), Some(name)) = (&client, &args.webhook_config) {
        patched_webhooks = patch_ca_bundle(client, name, &plan).await?;
    }
    Ok(CertsOutcome {
        ca: plan.ca_action,
        serving: plan.serving_action,
        reasons: plan.reasons,
        ca_bundle,
        files,
        secret: args.secret.clone(),
        patched_webhooks,
        not_after,
    })
}

fn holds(material: &Material, plan: &Plan) -> bool {
    material.tls_cert_pem.as_deref() == Some(plan.serving.cert_pem.as_str())
        && material.tls_key_pem.as_deref() == Some(plan.serving.key_pem.as_str())
        && material.ca_cert_pem.as_deref() == Some(plan.trust_bundle_pem.as_str())
        && material.ca_key_pem.as_deref() == Some(plan.ca.key_pem.as_str())
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, CertsError> {
    Ok(valet_kube::client(kubeconfig.map(PathBuf::as_path)).await?)
}

/// Sets the caBundle of every webhook, replacing at the version read and
/// retrying on conflict (cert-manager's cainjector or a GitOps tool may be
/// writing the same object). Returns how many webhooks changed.
async fn patch_ca_bundle(
    client: &kube::Client,
    name: &str,
    plan: &Plan,
) -> Result<usize, CertsError> {
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let bundle = ByteString(plan.trust_bundle_pem.as_bytes().to_vec());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut config = api
            .get_opt(name)
            .await
            .map_err(|source| CertsError::Kube {
                action: format!("read MutatingWebhookConfiguration {name}"),
                source,
            })?
            .ok_or_else(|| CertsError::NoWebhookConfig {
                name: name.to_string(),
            })?;
        let webhooks = config
            .webhooks
            .as_mut()
            .filter(|w| !w.is_empty())
            .ok_or_else(|| CertsError::EmptyWebhookConfig {
                name: name.to_string(),
            })?;
        let mut changed = 0;
        for webhook in webhooks.iter_mut() {
            if webhook.client_config.ca_bundle.as_ref() != Some(&bundle) {
                webhook.client_config.ca_bundle = Some(bundle.clone());
                changed += 1;
            }
        }
        if changed == 0 {
            return Ok(0);
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => {
                info!(webhook_config = %name, webhooks = changed, "caBundle updated");
                return Ok(changed);
            }
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < CONFLICT_RETRIES => {
                continue;
            }
            Err(source) => {
                return Err(CertsError::Kube {
                    action: format!("update the caBundle of MutatingWebhookConfiguration {name}"),
                    source,
                });
            }
        }
    }
}
