//! A rustls certificate resolver whose key pair follows the files on disk.
//!
//! New handshakes pick up a rotated pair; connections already open keep the
//! pair they negotiated. A broken rotation is refused and the old pair keeps
//! serving, so a bad Secret update never takes the webhook down.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::load::{LoadedPair, load_pair};
use crate::{CertInfo, TlsError};

/// How often the files are re-read even without a file-system event: inotify
/// events can be missed (watched directory replaced, overlay file systems).
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Writers that are not atomic (cert first, key second) produce a burst of
/// events; waiting for the burst to end avoids rejecting a half-written pair.
const SETTLE: Duration = Duration::from_millis(150);

struct Current {
    key: Arc<CertifiedKey>,
    info: CertInfo,
    source: Vec<u8>,
    /// Stored with the pair so that a reader never sees a new pair with an
    /// old generation or the reverse.
    generation: u64,
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files hold the pair already served.
    Unchanged,
    /// A new pair was loaded and is served from now on.
    Reloaded,
    /// The files changed but the new pair is unusable; the old one stays.
    Rejected(TlsError),
}

pub struct ReloadingResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<Current>,
    rejected: AtomicU64,
    /// The last refused contents, so that a broken pair is logged once and
    /// not every re-check interval. Held for a whole reload: reloads from the
    /// watcher and from callers never interleave.
    last_rejected: Mutex<Option<Vec<u8>>>,
    /// Set while the files cannot be read, to log the failure once.
    read_failing: AtomicBool,
}

impl std::fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl ReloadingResolver {
    /// Loads the initial pair; fails (and the server should not start) when
    /// it is unusable.
    pub fn from_files(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Arc<Self>, TlsError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let LoadedPair { key, info, source } = load_pair(&cert_path, &key_path, SystemTime::now())?;
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: ArcSwap::from_pointee(Current {
                key,
                info,
                source,
                generation: 1,
            }),
            rejected: AtomicU64::new(0),
            last_rejected: Mutex::new(None),
            read_failing: AtomicBool::new(false),
        }))
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.load().key)
    }

    /// Validity and names of the certificate currently served.
    pub fn cert_info(&self) -> CertInfo {
        self.current.load().info.clone()
    }

    /// When the certificate currently served expires.
    pub fn not_after(&self) -> SystemTime {
        self.current.load().info.not_after
    }

    /// Seconds until the served certificate expires (negative once expired):
    /// the value of the expiry gauge.
    pub fn seconds_until_expiry(&self) -> f64 {
        match self.not_after().duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        }
    }

    /// 1 for the initial pair, +1 per successful reload.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// How many changed pairs were refused.
    pub fn rejected_reloads(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// Re-reads the files and swaps the pair when they changed and are valid.
    pub fn reload(&self) -> ReloadOutcome {
        match self.try_reload() {
            Ok(true) => {
                let current = self.current.load();
                let (generation, info) = (current.generation, &current.info);
                info!(
                    cert = %self.cert_path.display(),
                    generation,
                    not_after = %crate::fmt_time(info.not_after),
                    "serving certificate reloaded"
                );
                ReloadOutcome::Reloaded
            }
            Ok(false) => ReloadOutcome::Unchanged,
            Err(error) => {
                self.rejected.fetch_add(1, Ordering::AcqRel);
                ReloadOutcome::Rejected(error)
            }
        }
    }

    fn try_reload(&self) -> Result<bool, TlsError> {
        let mut last_rejected = self
            .last_rejected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Compare raw bytes first: a re-check every few seconds must not
        // re-parse keys when nothing changed.
        let mut source = match read_both(&self.cert_path, &self.key_path) {
            Ok(source) => {
                self.read_failing.store(false, Ordering::Release);
                source
            }
            Err(error) => {
                if !self.read_failing.swap(true, Ordering::AcqRel) {
                    warn!(%error, "cannot re-read the certificate pair; still serving the previous one");
                }
                return Err(error);
            }
        };
        let previous = self.current.load_full();
        if source == previous.source {
            return Ok(false);
        }
        if last_rejected.as_deref() == Some(source.as_slice()) {
            return Ok(false);
        }
        match load_pair(&self.cert_path, &self.key_path, SystemTime::now()) {
            Ok(pair) => {
                *last_rejected = None;
                self.current.store(Arc::new(Current {
                    key: pair.key,
                    info: pair.info,
                    source: pair.source,
                    generation: previous.generation + 1,
                }));
                Ok(true)
            }
            Err(error) => {
                warn!(
                    %error,
                    cert = %self.cert_path.display(),
                    key = %self.key_path.display(),
                    "new certificate pair refused; still serving the previous one"
                );
                *last_rejected = Some(std::mem::take(&mut source));
                Err(error)
            }
        }
    }

    /// Watches the directories holding the pair and reloads on change, plus
    /// a re-check every `recheck_every`.
    ///
    /// The directory, not the files, is watched: the kubelet updates a
    /// Secret volume by swapping the `..data` symlink, after which a watch on
    /// the old file would never fire again. Must run inside a Tokio runtime;
    /// the watch stops when the returned handle is dropped.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        recheck_every: Duration,
    ) -> Result<WatcherHandle, TlsError> {
        let wake = Arc::new(Notify::new());
        let notify_wake = Arc::clone(&wake);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    notify_wake.notify_one();
                }
            })
            .map_err(|source| TlsError::Watch {
                path: self.cert_path.clone(),
                source,
            })?;
        let mut dirs = vec![parent_dir(&self.cert_path), parent_dir(&self.key_path)];
        dirs.dedup();
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| TlsError::Watch {
                    path: dir.clone(),
                    source,
                })?;
        }

        let resolver = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(recheck_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = wake.notified() => {
                        // Let the burst of events from one rotation finish.
                        tokio::time::sleep(SETTLE).await;
                    }
                    _ = tick.tick() => {}
                }
                let resolver = Arc::clone(&resolver);
                // File reads and key parsing block; keep them off the reactor.
                match tokio::task::spawn_blocking(move || resolver.reload()).await {
                    Ok(outcome) => debug!(?outcome, "certificate re-check"),
                    Err(error) => warn!(%error, "certificate re-check task failed"),
                }
            }
        });
        Ok(WatcherHandle {
            _watcher: watcher,
            task,
        })
    }
}

fn read_both(cert_path: &Path, key_path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |path: &Path, what| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let mut bytes = read(cert_path, "certificate")?;
    bytes.extend_from_slice(&read(key_path, "private key")?);
    Ok(bytes)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Keeps the directory watch and the re-check task alive; dropping it stops both.
pub struct WatcherHandle {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
