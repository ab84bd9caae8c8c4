//! Hot reload the way the kubelet rotates a Secret volume: a new timestamped
//! directory, then an atomic swap of the `..data` symlink.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, handshake, write_pair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::version::TLS13;
use valet_tls::{
    CaBundle, ReloadOutcome, ReloadingResolver, ServingPair, generate_ca, generate_serving,
    server_config,
};

const DAY: Duration = Duration::from_secs(86_400);
/// Long enough that only file-system events can explain a reload in time.
const NO_RECHECK: Duration = Duration::from_secs(3600);

/// A Secret volume as the kubelet lays it out.
struct SecretVolume {
    root: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(root: &Path, pair: &ServingPair) -> anyhow::Result<Self> {
        let mut volume = Self {
            root: root.to_path_buf(),
            version: 0,
        };
        volume.publish(&pair.cert_pem, &pair.key_pem)?;
        symlink("..data/tls.crt", root.join("tls.crt"))?;
        symlink("..data/tls.key", root.join("tls.key"))?;
        Ok(volume)
    }

    fn publish(&mut self, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
        self.version += 1;
        let dir_name = format!("..2026_11_23_00_00_0{}.000000", self.version);
        write_pair(&self.root.join(&dir_name), cert_pem, key_pem)?;
        let tmp = self.root.join("..data_tmp");
        symlink(&dir_name, &tmp)?;
        std::fs::rename(&tmp, self.root.join("..data"))?;
        Ok(())
    }

    fn cert(&self) -> PathBuf {
        self.root.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.root.join("tls.key")
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("test PEM")
}

/// Polls `condition` until it holds; the deadline only turns a hang into a failure.
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pairs(n: usize) -> anyhow::Result<(CaBundle, Vec<ServingPair>)> {
    let ca = generate_ca("reload CA", DAY)?;
    let names = vec!["svc.ns.svc".to_string()];
    let pairs = (0..n)
        .map(|_| generate_serving(&ca, &names, DAY))
        .collect::<Result<_, _>>()?;
    Ok((ca, pairs))
}

#[tokio::test]
async fn symlink_swap_is_picked_up_by_the_directory_watch() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, pairs) = pairs(3)?;
    let mut volume = SecretVolume::new(dir.path(), &pairs[0])?;
    let resolver = ReloadingResolver::from_files(volume.cert(), volume.key())?;
    let _watch = resolver.spawn_watcher(NO_RECHECK)?;
    let server = Arc::new(server_config(Arc::clone(&resolver) as _)?);
    let client = || client_config(&ca.cert_pem, &[&TLS13], &[b"h2"]);

    assert_eq!(resolver.generation(), 1);
    let first = handshake(Arc::clone(&server), client()?, "svc.ns.svc").await?;
    assert_eq!(first.peer_cert, der(&pairs[0].cert_pem));

    // Two rotations in a row: the watch must survive the first swap.
    for (n, pair) in pairs.iter().enumerate().skip(1) {
        volume.publish(&pair.cert_pem, &pair.key_pem)?;
        let want = der(&pair.cert_pem);
        wait_for("the new pair to be served", || {
            resolver.current().cert[0] == want
        })
        .await;
        assert_eq!(resolver.generation(), n as u64 + 1);
        let seen = handshake(Arc::clone(&server), client()?, "svc.ns.svc").await?;
        assert_eq!(seen.peer_cert, want, "rotation {n}");
    }
    assert_eq!(resolver.rejected_reloads(), 0);
    assert!(resolver.seconds_until_expiry() > 0.0);
    Ok(())
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_old_pair_until_a_good_one_arrives() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_ca, pairs) = pairs(3)?;
    let mut volume = SecretVolume::new(dir.path(), &pairs[0])?;
    let resolver = ReloadingResolver::from_files(volume.cert(), volume.key())?;
    let _watch = resolver.spawn_watcher(NO_RECHECK)?;
    let served_a = der(&pairs[0].cert_pem);

    // New certificate with a key from another pair: must be refused.
    volume.publish(&pairs[1].cert_pem, &pairs[2].key_pem)?;
    wait_for("the mismatched pair to be refused", || {
        resolver.rejected_reloads() >= 1
    })
    .await;
    assert_eq!(resolver.current().cert[0], served_a);
    assert_eq!(resolver.generation(), 1);

    // Garbage in the certificate file: refused too.
    volume.publish(
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
        &pairs[1].key_pem,
    )?;
    wait_for("the corrupt pair to be refused", || {
        resolver.rejected_reloads() >= 2
    })
    .await;
    assert_eq!(resolver.current().cert[0], served_a);

    // Re-checking the same broken files does not count again or reload.
    assert!(matches!(resolver.reload(), ReloadOutcome::Unchanged));
    assert_eq!(resolver.rejected_reloads(), 2);

    volume.publish(&pairs[2].cert_pem, &pairs[2].key_pem)?;
    let want = der(&pairs[2].cert_pem);
    wait_for("the good pair to be served", || {
        resolver.current().cert[0] == want
    })
    .await;
    assert_eq!(resolver.generation(), 2);
    Ok(())
}

#[tokio::test]
async fn periodic_recheck_reloads_without_any_event() -> anyhow::Result<()> {
    // Files written in a directory that is not watched (the watch is on
    // `dir`, the writes go through a symlinked directory elsewhere), so only
    // the periodic re-check can notice.
    let dir = tempfile::tempdir()?;
    let elsewhere = tempfile::tempdir()?;
    let (_ca, pairs) = pairs(2)?;
    write_pair(elsewhere.path(), &pairs[0].cert_pem, &pairs[0].key_pem)?;
    symlink(elsewhere.path().join("tls.crt"), dir.path().join("tls.crt"))?;
    symlink(elsewhere.path().join("tls.key"), dir.path().join("tls.key"))?;
    let resolver =
        ReloadingResolver::from_files(dir.path().join("tls.crt"), dir.path().join("tls.key"))?;
    let _watch = resolver.spawn_watcher(Duration::from_millis(200))?;

    write_pair(elsewhere.path(), &pairs[1].cert_pem, &pairs[1].key_pem)?;
    let want = der(&pairs[1].cert_pem);
    wait_for("the re-check to load the new pair", || {
        resolver.current().cert[0] == want
    })
    .await;
    assert_eq!(resolver.generation(), 2);
    Ok(())
}

#[tokio::test]
async fn reload_called_directly_reports_a_rotation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_ca, pairs) = pairs(2)?;
    let mut volume = SecretVolume::new(dir.path(), &pairs[0])?;
    let resolver = ReloadingResolver::from_files(volume.cert(), volume.key())?;
    volume.publish(&pairs[1].cert_pem, &pairs[1].key_pem)?;
    assert!(matches!(resolver.reload(), ReloadOutcome::Reloaded));
    assert_eq!(resolver.current().cert[0], der(&pairs[1].cert_pem));
    Ok(())
}
