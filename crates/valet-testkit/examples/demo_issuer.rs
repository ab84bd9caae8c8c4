//! The tests' HTTPS OIDC issuer as a process, for trying `valet broker
//! apply` or `valet trust check` by hand against moto:
//!
//! ```sh
//! cargo run -p valet-testkit --example demo_issuer -- /tmp/issuer-ca.pem
//! ```
//!
//! prints the issuer URL on stdout, writes the CA that signed its serving
//! certificate to the given path (pass it as `--oidc-ca-file`) and serves
//! discovery and JWKS until stdin closes or the process is interrupted.

use anyhow::Context;
use tokio::io::AsyncReadExt;
use valet_testkit::oidc::OidcIssuer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ca_path = std::env::args()
        .nth(1)
        .context("usage: demo_issuer CA_PEM_PATH (where to write the issuer's CA)")?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let issuer = OidcIssuer::start().await?;
    std::fs::write(&ca_path, issuer.ca_pem()).with_context(|| format!("writing {ca_path}"))?;
    println!("{}", issuer.url());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    tokio::select! {
        _ = async { while stdin.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {} } => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
