//! Reloading the policy, and the TLS certificate, when their files change, or on SIGHUP.
//!
//! We watch the *directories* holding the policy and every file it references, not the
//! files: editors save by writing a temp file and renaming it over the original, and a
//! Kubernetes ConfigMap update swaps the `..data` symlink to a new directory. Both replace
//! the inode a file watch would be attached to; a directory watch sees all of them. Bursts
//! are debounced, and the reload itself skips changes that leave every byte the same.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::observe::metrics::Metrics;
use crate::policy::snapshot::{Policies, Reloaded};
use crate::proxy::tls::{self, Certificate};

const DEBOUNCE: Duration = Duration::from_millis(20);

/// Why a reload was attempted, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// A policy file changed.
    FileChange,
    /// A TLS certificate or key file changed (the listener's, or an upstream client's).
    Certificate,
    /// SIGHUP: both.
    Signal,
}

/// Runs until the process exits. Returns a sender other tasks (SIGHUP) use to ask for a reload.
/// With `watch_files: false` only explicit triggers (SIGHUP) reload.
pub fn spawn(
    policies: Arc<Policies>,
    certificates: Vec<Arc<Certificate>>,
    metrics: Arc<Metrics>,
    watch_files: bool,
) -> notify::Result<mpsc::UnboundedSender<Trigger>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let fs_tx = tx.clone();
    let relevant = Arc::new(RwLock::new(HashSet::new()));
    let names = relevant.clone();
    let tls_files: Vec<&Path> = certificates.iter().flat_map(|c| c.files()).collect();
    let tls_names: HashSet<OsString> = tls_files
        .iter()
        .filter_map(|f| f.file_name().map(OsString::from))
        .collect();
    let tls_dirs: BTreeSet<PathBuf> = tls_files.iter().map(|f| directory(f)).collect();
    let mut watcher = if watch_files {
        Some(notify::recommended_watcher(
            move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else { return };
                if event.kind.is_access() {
                    return;
                }
                let names = names.read().unwrap_or_else(|p| p.into_inner());
                if event.paths.iter().any(|p| concerns(p, &names)) {
                    let _ = fs_tx.send(Trigger::FileChange);
                }
                if !tls_names.is_empty() && event.paths.iter().any(|p| concerns(p, &tls_names)) {
                    let _ = fs_tx.send(Trigger::Certificate);
                }
            },
        )?)
    } else {
        None
    };
    let mut watched = BTreeSet::new();
    if let Some(w) = &mut watcher {
        rewatch(w, &mut watched, &relevant, &policies, &tls_dirs);
    }
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            tokio::time::sleep(DEBOUNCE).await;
            let (mut policy, mut cert, mut trigger) = (false, false, Trigger::FileChange);
            for t in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match t {
                    Trigger::FileChange => policy = true,
                    Trigger::Certificate => cert = true,
                    Trigger::Signal => (policy, cert, trigger) = (true, true, t),
                }
            }
            if policy {
                reload_policy(&policies, &metrics, trigger).await;
                if let Some(w) = &mut watcher {
                    rewatch(w, &mut watched, &relevant, &policies, &tls_dirs);
                }
            }
            if cert {
                for c in &certificates {
                    reload_certificate(c, &metrics, trigger).await;
                }
            }
        }
    });
    Ok(tx)
}

async fn reload_policy(policies: &Arc<Policies>, metrics: &Arc<Metrics>, trigger: Trigger) {
    let p = policies.clone();
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || p.reload()).await;
    // Tenths of a millisecond: the last digits of a float are noise in a log line.
    let took_ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
    let result = match outcome {
        Ok(Ok(Reloaded::Swapped(generation))) => {
            tracing::info!(?trigger, generation, took_ms, "policy reloaded");
            metrics.generation.set(generation as i64);
            "success"
        }
        Ok(Ok(Reloaded::Unchanged)) => {
            tracing::debug!(?trigger, "policy unchanged");
            "unchanged"
        }
        Ok(Err(errors)) => {
            for e in &errors.0 {
                tracing::error!(?trigger, error = %e, "policy reload refused; the previous policy stays in force");
            }
            "failure"
        }
        Err(e) => {
            tracing::error!(error = %e, "policy reload task failed");
            "failure"
        }
    };
    metrics.reloads.with_label_values(&[result]).inc();
}

async fn reload_certificate(certificate: &Arc<Certificate>, metrics: &Metrics, trigger: Trigger) {
    let c = certificate.clone();
    let result = match tokio::task::spawn_blocking(move || c.reload()).await {
        Ok(Ok(tls::Reloaded::Swapped)) => {
            tracing::info!(?trigger, file = %certificate.files()[0].display(), "TLS certificate reloaded");
            "success"
        }
        Ok(Ok(tls::Reloaded::Unchanged)) => "unchanged",
        Ok(Err(e)) => {
            tracing::error!(?trigger, error = %e, "TLS certificate reload refused; the previous certificate stays in force");
            "failure"
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS certificate reload task failed");
            "failure"
        }
    };
    metrics.tls_reloads.with_label_values(&[result]).inc();
}

/// Whether an event's path is one of `names` (the policy's files, or the certificate's).
/// Directories are watched, so their other files (logs, a benchmark's output, editors' swap
/// files) must not cost a reload; names starting with `..` are the internals of a Kubernetes
/// ConfigMap or Secret volume (`..data`, `..<time>`).
fn concerns(path: &Path, names: &HashSet<OsString>) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"..") || names.contains(n))
}

/// The directory holding `file` (`.` for a bare name).
fn directory(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Watches the directory of every file the policy depends on (they may change on reload)
/// and of the TLS certificate and key.
fn rewatch(
    watcher: &mut impl Watcher,
    watched: &mut BTreeSet<PathBuf>,
    relevant: &RwLock<HashSet<OsString>>,
    policies: &Policies,
    tls_dirs: &BTreeSet<PathBuf>,
) {
    let snap = policies.current();
    *relevant.write().unwrap_or_else(|p| p.into_inner()) = std::iter::once(policies.file())
        .chain(snap.referenced_files.iter().map(PathBuf::as_path))
        .filter_map(|f| f.file_name().map(OsString::from))
        .collect();
    let dirs: BTreeSet<PathBuf> = std::iter::once(policies.file())
        .chain(snap.referenced_files.iter().map(PathBuf::as_path))
        .map(directory)
        .chain(tls_dirs.iter().cloned())
        .collect();
    for d in watched.difference(&dirs) {
        let _ = watcher.unwatch(d);
    }
    for d in dirs.difference(watched) {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
        }
    }
    *watched = dirs;
}
