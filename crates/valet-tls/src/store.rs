//! Where `valet certs` keeps certificates: a directory, or two Secrets (the
//! serving `kubernetes.io/tls` Secret the webhook mounts, and a separate CA
//! Secret the webhook never sees, so a compromised webhook pod cannot mint
//! certificates).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::TlsError;
use crate::cli::CertsError;
use crate::plan::{Material, Plan};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "valet-certs");

pub fn read_dir(dir: &Path) -> Result<Material, TlsError> {
    let read = |name: &str| -> Result<Option<String>, TlsError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TlsError::Read {
                what: "certificate material",
                path,
                source,
            }),
        }
    };
    Ok(Material {
        ca_cert_pem: read(CA_CERT)?,
        ca_key_pem: read(CA_KEY)?,
        tls_cert_pem: read(TLS_CERT)?,
        tls_key_pem: read(TLS_KEY)?,
    })
}

/// Writes every file through a temporary name and a rename, so that a
/// webhook watching the directory never reads a half-written file.
pub fn write_dir(dir: &Path, plan: &Plan) -> Result<Vec<PathBuf>, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = [
        (CA_CERT, plan.trust_bundle_pem.as_str(), false),
        (CA_KEY, plan.ca.key_pem.as_str(), true),
        (TLS_KEY, plan.serving.key_pem.as_str(), true),
        (TLS_CERT, plan.serving.cert_pem.as_str(), false),
    ];
    let mut written = Vec::new();
    for (name, contents, secret) in files {
        let path = dir.join(name);
        write_atomic(&path, contents, secret).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn write_atomic(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The CA Secret's name for a serving Secret.
pub fn ca_secret_name(serving_secret: &str) -> String {
    format!("{serving_secret}-ca")
}

pub async fn read_secrets(api: &Api<Secret>, name: &str) -> Result<Material, CertsError> {
    let serving = get(api, name).await?;
    let ca = get(api, &ca_secret_name(name)).await?;
    let field = |secret: &Option<Secret>, key: &str| {
        secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Ok(Material {
        // The CA Secret is the source of truth for the CA; the copy in the
        // serving Secret is only for clients that mount it.
        ca_cert_pem: field(&ca, CA_CERT).or_else(|| field(&serving, CA_CERT)),
        ca_key_pem: field(&ca, CA_KEY),
        tls_cert_pem: field(&serving, TLS_CERT),
        tls_key_pem: field(&serving, TLS_KEY),
    })
}

async fn get(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, CertsError> {
    api.get_opt(name).await.map_err(|source| CertsError::Kube {
        action: format!("read Secret {name}"),
        source,
    })
}

pub async fn write_secrets(api: &Api<Secret>, name: &str, plan: &Plan) -> Result<(), CertsError> {
    let data = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), ByteString(v.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>()
    };
    upsert(
        api,
        name,
        "kubernetes.io/tls",
        data(&[
            (TLS_CERT, &plan.serving.cert_pem),
            (TLS_KEY, &plan.serving.key_pem),
            (CA_CERT, &plan.trust_bundle_pem),
        ]),
    )
    .await?;
    upsert(
        api,
        &ca_secret_name(name),
        "Opaque",
        data(&[
            (CA_CERT, &plan.trust_bundle_pem),
            (CA_KEY, &plan.ca.key_pem),
        ]),
    )
    .await
}

/// Create, or replace at the version just read so that a concurrent writer
/// makes this fail (409) instead of being overwritten silently.
async fn upsert(
    api: &Api<Secret>,
    name: &str,
    type_: &str,
    data: BTreeMap<String, ByteString>,
) -> Result<(), CertsError> {
    let existing = get(api, name).await?;
    let mut secret = existing.clone().unwrap_or_default();
    let labels = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
    secret.metadata = ObjectMeta {
        name: Some(name.to_string()),
        ..secret.metadata
    };
    // The type of an existing Secret is immutable: keep whatever it is.
    if secret.type_.is_none() {
        secret.type_ = Some(type_.to_string());
    }
    secret.data = Some(data);
    secret.string_data = None;
    let pp = PostParams::default();
    let result = match existing {
        Some(_) => api.replace(name, &pp, &secret).await,
        None => api.create(&pp, &secret).await,
    };
    result.map(|_| ()).map_err(|source| CertsError::Kube {
        action: format!("write Secret {name}"),
        source,
    })
}
