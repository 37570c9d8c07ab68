//! The policy in force, behind one `ArcSwap`: everything that must change together changes
//! in one store. Requests load it once and keep that `Arc` to the end, so a request in
//! flight finishes under the policy it started with, and the next request on the same
//! keep-alive connection sees the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::Policy;
use super::compile::{self, Context};
use crate::yaml::FileErrors;

#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    /// Increases by one with every successful load; keys caches.
    pub generation: u64,
    pub sha256: String,
    /// RFC 3339.
    pub loaded_at: String,
    /// Fingerprint of the policy and every file it reads, to skip reloads that change nothing.
    pub fingerprint: [u8; 32],
    pub referenced_files: Vec<PathBuf>,
}

pub struct Policies {
    file: PathBuf,
    ctx: Context,
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// Serializes reloads (watcher and SIGHUP may race); requests never take it.
    reload: std::sync::Mutex<()>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Swapped(u64),
    Unchanged,
}

impl Policies {
    pub fn load(
        file: &Path,
        ctx: Context,
    ) -> Result<(Policies, Vec<crate::yaml::FileError>), FileErrors> {
        let bytes = read(file)?;
        let compiled = compile::compile_bytes(file, &bytes, &ctx)?;
        let warnings = compiled.warnings.clone();
        let snap = snapshot(compiled, 1);
        Ok((
            Policies {
                file: file.to_path_buf(),
                ctx,
                current: ArcSwap::from_pointee(snap),
                generation: AtomicU64::new(1),
                reload: std::sync::Mutex::new(()),
            },
            warnings,
        ))
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The snapshot for one request.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Compiles the file again and swaps it in if it is valid and different. On error the
    /// policy in force stays, and the error says why. The replaced policy is freed on a
    /// thread of its own (see `retire`).
    pub fn reload(&self) -> Result<Reloaded, FileErrors> {
        let (outcome, old) = self.swap()?;
        if let Some(old) = old {
            // Should no thread start, the closure, and the policy with it, is dropped here.
            let _ = std::thread::Builder::new()
                .name("policy-retire".into())
                .spawn(move || retire(old));
        }
        Ok(outcome)
    }

    fn swap(&self) -> Result<(Reloaded, Option<Arc<Snapshot>>), FileErrors> {
        let _guard = self.reload.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = read(&self.file)?;
        // Editors and ConfigMap swaps fire several events per change: hash first, and only
        // compile when some byte of the policy or a file it reads actually changed.
        let sha256 = compile::sha256_hex(&bytes);
        let current = self.current.load();
        if fingerprint(&sha256, &current.referenced_files) == current.fingerprint {
            return Ok((Reloaded::Unchanged, None));
        }
        drop(current);
        let compiled = compile::compile_hashed(&self.file, &bytes, sha256, &self.ctx)?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        drop(bytes);
        let old = self.current.swap(Arc::new(snapshot(compiled, generation)));
        Ok((Reloaded::Swapped(generation), Some(old)))
    }
}

/// How long a reload waits for the requests still using the replaced policy.
const RETIRE_WAIT: Duration = Duration::from_secs(10);

/// Frees a replaced policy here rather than in whichever request drops it last: a large
/// one takes milliseconds to free, which that request would otherwise pay. Requests that
/// started under it keep it alive, so wait for them (bounded; a request that outlives the
/// wait frees it itself).
fn retire(mut old: Arc<Snapshot>) {
    let deadline = Instant::now() + RETIRE_WAIT;
    loop {
        match Arc::try_unwrap(old) {
            Ok(snapshot) => return drop(snapshot),
            Err(shared) if Instant::now() < deadline => {
                old = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
        }
    }
}

fn snapshot(c: compile::Compiled, generation: u64) -> Snapshot {
    Snapshot {
        fingerprint: fingerprint(&c.sha256, &c.referenced_files),
        policy: c.policy,
        generation,
        sha256: c.sha256,
        loaded_at: now_rfc3339(),
        referenced_files: c.referenced_files,
    }
}

fn read(file: &Path) -> Result<Vec<u8>, FileErrors> {
    std::fs::read(file).map_err(|e| {
        crate::yaml::FileError::new(file, 0, format!("cannot read policy: {e}")).into()
    })
}

/// The policy's sha256 and every referenced file's path and bytes (key files are small).
fn fingerprint(policy_sha256: &str, referenced: &[PathBuf]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(policy_sha256.as_bytes());
    for f in referenced {
        ctx.update(f.as_os_str().as_encoded_bytes());
        ctx.update(&std::fs::read(f).unwrap_or_default());
    }
    ctx.finish().as_ref().try_into().unwrap_or([0; 32])
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_policy_lives_while_a_request_holds_it_and_is_freed_after() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, "version: 1\nscopes: { a: x }\n").unwrap();
        let (policies, _) = Policies::load(&file, Context::standalone()).unwrap();
        let in_flight = policies.current();
        let old = Arc::downgrade(&in_flight);
        std::fs::write(&file, "version: 1\nscopes: { a: x, b: y }\n").unwrap();
        assert_eq!(policies.reload().unwrap(), Reloaded::Swapped(2));
        assert_eq!(policies.current().policy.scopes.len(), 2);
        // The request that started under generation 1 still reads it, whole.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(in_flight.generation, 1);
        assert_eq!(in_flight.policy.scopes.len(), 1);
        assert!(old.upgrade().is_some());

        drop(in_flight);
        let deadline = Instant::now() + Duration::from_secs(5);
        while old.upgrade().is_some() {
            assert!(
                Instant::now() < deadline,
                "the replaced policy was never freed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A reload is refused with every error of the file (the loader `check` uses), and the
    /// policy in force stays.
    #[test]
    fn a_refused_reload_names_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, "version: 1\nscopes: { a: x }\n").unwrap();
        let (policies, _) = Policies::load(&file, Context::standalone()).unwrap();
        std::fs::write(
            &file,
            "version: 1\nscopes: { a: x }\nroutes:\n  - { id: r, methods: [GET], path: /r, auth: [jwt], scopes: [b] }\nrouts: []\napps:\n  - { client_id: c, algorithms: HS256 }\n",
        )
        .unwrap();
        let errors = policies.reload().unwrap_err();
        let lines: Vec<u64> = errors.0.iter().map(|e| e.line).collect();
        assert_eq!(lines, [4, 5, 7], "{errors}");
        assert_eq!(policies.current().generation, 1);
    }
}
