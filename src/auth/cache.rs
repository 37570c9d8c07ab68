//! Cache of verified tokens: a client reuses its token for many requests, and the
//! signature check is the expensive part of one.
//!
//! Two levels. In front, each thread keeps the few tokens it saw last in a small table found
//! by the token's last bytes and confirmed by comparing the whole token: a hit costs a
//! compare, no hashing, so it serves HMAC tokens too (an HMAC costs about what a SHA-256 key
//! for the shared level would). Behind it, for asymmetric and JWE tokens only, a shared
//! moka cache keyed by a SHA-256 of the token.
//!
//! Both levels hold the policy generation of each verdict and answer only for the current
//! one (the front also checks the cache's own id, so two proxies in one process never share
//! verdicts): a reload makes every entry stale at the swap, and a revoked app never rides on
//! a cached verdict. A stale shared entry is replaced in place when its token comes again,
//! so reloads do not grow the cache (a policy reloaded every second kept adding a copy of
//! every live token until the tokens expired, up to an hour). Entries
//! expire no later than the token's `exp` (and within an hour); time and replay checks
//! still run on every hit.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;

use super::jwt::Verified;

const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(3600);

/// Entries per thread in the front table: a power of two, indexed by a hash's top bits.
const LOCAL_SLOTS: usize = 64;
const SLOT_BITS: u32 = LOCAL_SLOTS.trailing_zeros();
const _: () = assert!(LOCAL_SLOTS.is_power_of_two());

pub struct TokenCache {
    /// Tells this cache's entries in the per-thread tables from another's.
    id: u64,
    cache: moka::sync::Cache<[u8; 32], Entry>,
    /// Slots of the per-thread tables that hold one of this cache's verdicts (live or not
    /// yet replaced), across threads: counted on insert, where a slot changes hands.
    local_entries: AtomicU64,
}

struct Local {
    cache: u64,
    generation: u64,
    token: Box<str>,
    verified: Arc<Verified>,
    /// Unix seconds.
    deadline: f64,
}

thread_local! {
    static LOCAL: RefCell<Vec<Option<Local>>> = const { RefCell::new(Vec::new()) };
}

/// A token's slot: from its last bytes (the signature's, arbitrary for any honest token). A
/// token crafted to collide only evicts its neighbour; a hit needs the whole token equal.
fn slot(token: &str) -> usize {
    let b = token.as_bytes();
    let tail = b[b.len().saturating_sub(8)..]
        .iter()
        .fold(0u64, |x, &c| x << 8 | u64::from(c));
    (tail.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as usize
}

/// How long a verdict may be kept: until `exp`, at most an hour; `None` once expired.
fn lifetime(verified: &Verified, now_unix: f64) -> Option<f64> {
    let max = MAX_ENTRY_LIFETIME.as_secs_f64();
    match verified.exp {
        Some(exp) if exp > now_unix => Some((exp - now_unix).min(max)),
        Some(_) => None,
        None => Some(max),
    }
}

#[derive(Clone)]
struct Entry {
    generation: u64,
    verified: Arc<Verified>,
    deadline: Instant,
}

struct UntilExp;

impl Expiry<[u8; 32], Entry> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], e: &Entry, now: Instant) -> Option<Duration> {
        Some(e.deadline.saturating_duration_since(now))
    }
}

impl TokenCache {
    pub fn new(capacity: u64) -> TokenCache {
        static IDS: AtomicU64 = AtomicU64::new(0);
        TokenCache {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build(),
            local_entries: AtomicU64::new(0),
        }
    }

    pub fn key(token: &str) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        digest.as_ref().try_into().unwrap_or([0; 32])
    }

    /// The shared verdict for the token under `key`, if it was reached under `generation`.
    pub fn get(&self, key: &[u8; 32], generation: u64) -> Option<Arc<Verified>> {
        self.cache
            .get(key)
            .filter(|e| e.generation == generation)
            .map(|e| e.verified)
    }

    /// Stores a verdict until the token's `exp` (capped), measured from `now_unix`,
    /// replacing the token's verdict under an older generation.
    pub fn insert(&self, key: [u8; 32], generation: u64, verified: Arc<Verified>, now_unix: f64) {
        let Some(secs) = lifetime(&verified, now_unix) else {
            return;
        };
        self.cache.insert(
            key,
            Entry {
                generation,
                verified,
                deadline: Instant::now() + Duration::from_secs_f64(secs),
            },
        );
    }

    /// This thread's verdict for `token` under `generation`, if it has a live one.
    pub fn get_local(&self, generation: u64, token: &str, now_unix: f64) -> Option<Arc<Verified>> {
        LOCAL.with_borrow(|slots| {
            let e = slots.get(slot(token))?.as_ref()?;
            (e.cache == self.id
                && e.generation == generation
                && now_unix < e.deadline
                && *e.token == *token)
                .then(|| e.verified.clone())
        })
    }

    /// Keeps a verdict in this thread's table, replacing whatever held the token's slot.
    pub fn insert_local(
        &self,
        generation: u64,
        token: &str,
        verified: &Arc<Verified>,
        now_unix: f64,
    ) {
        let Some(secs) = lifetime(verified, now_unix) else {
            return;
        };
        LOCAL.with_borrow_mut(|slots| {
            if slots.is_empty() {
                slots.resize_with(LOCAL_SLOTS, || None);
            }
            let s = &mut slots[slot(token)];
            if s.as_ref().is_none_or(|l| l.cache != self.id) {
                self.local_entries.fetch_add(1, Ordering::Relaxed);
            }
            *s = Some(Local {
                cache: self.id,
                generation,
                token: token.into(),
                verified: verified.clone(),
                deadline: now_unix + secs,
            });
        });
    }

    /// Entries of the shared cache (asymmetric and JWE tokens).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Slots of the per-thread tables holding this cache's verdicts (HMAC tokens live only
    /// there); at most `LOCAL_SLOTS` per thread. A slot another cache took over is still
    /// counted: one proxy per process is the case this is for.
    pub fn local_entry_count(&self) -> u64 {
        self.local_entries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::jwt;
    use crate::policy::Policy;
    use crate::policy::compile::{Context, compile_bytes};

    const NOW: u64 = 1_800_000_000;

    fn policy() -> Policy {
        let text = "version: 1\nscopes:\n  bots:read: x\napps:\n  - client_id: app-hs\n    \
                    algorithms: [HS256]\n    secret: { value: cache-test-secret-0123456789-0123456789 }\n    \
                    scopes: [bots:read]\n";
        compile_bytes(Path::new("p.yaml"), text.as_bytes(), &Context::standalone())
            .expect("test policy")
            .policy
    }

    /// A token for `app-hs` living `ttl` seconds from `NOW`, and its verdict.
    fn verified(policy: &Policy, ttl: u64, jti: bool) -> (String, Arc<Verified>) {
        let app = policy.apps.get("app-hs").expect("app");
        let token = crate::auth::mint::mint(app, policy.app_id_claim(), &[], ttl, jti, NOW)
            .expect("minted");
        let v = jwt::verify_jws(policy, &token, false).expect("verifies");
        (token, Arc::new(v))
    }

    #[test]
    fn a_thread_finds_its_token_only_under_the_same_cache_generation_and_in_time() {
        let policy = policy();
        let now = NOW as f64;
        let cache = TokenCache::new(10);
        let (token, v) = verified(&policy, 600, false);
        assert!(cache.get_local(1, &token, now).is_none());
        cache.insert_local(1, &token, &v, now);
        let hit = cache.get_local(1, &token, now + 1.0).expect("a hit");
        assert!(Arc::ptr_eq(&hit, &v));

        assert!(
            cache.get_local(2, &token, now).is_none(),
            "another generation"
        );
        let other = TokenCache::new(10);
        assert!(other.get_local(1, &token, now).is_none(), "another cache");
        assert!(
            cache.get_local(1, &token, now + 600.0).is_none(),
            "kept past exp"
        );
        let elsewhere = std::thread::scope(|s| {
            s.spawn(|| cache.get_local(1, &token, now).is_some())
                .join()
                .unwrap()
        });
        assert!(!elsewhere, "another thread's table");
    }

    #[test]
    fn a_token_sharing_a_slot_is_not_taken_for_another() {
        let policy = policy();
        let now = NOW as f64;
        let cache = TokenCache::new(10);
        let (token, v) = verified(&policy, 600, false);
        cache.insert_local(1, &token, &v, now);
        // Same last eight bytes, so the same slot; one byte differs further in.
        let mut forged = token.clone().into_bytes();
        forged[10] ^= 0x01;
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(slot(&forged), slot(&token));
        assert!(cache.get_local(1, &forged, now).is_none());
        // Storing it evicts the first: one slot, one token.
        cache.insert_local(1, &forged, &v, now);
        assert!(cache.get_local(1, &token, now).is_none());
    }

    /// A reload makes the shared verdict stale; the next verdict for the token takes its
    /// place rather than a new entry beside it.
    #[test]
    fn a_shared_verdict_answers_for_its_generation_and_is_replaced_in_place() {
        let policy = policy();
        let now = NOW as f64;
        let cache = TokenCache::new(100);
        let (token, v) = verified(&policy, 600, false);
        let key = TokenCache::key(&token);
        cache.insert(key, 1, v.clone(), now);
        assert!(cache.get(&key, 1).is_some_and(|hit| Arc::ptr_eq(&hit, &v)));
        assert!(cache.get(&key, 2).is_none(), "another generation");
        for generation in 2..50 {
            cache.insert(key, generation, v.clone(), now);
        }
        cache.cache.run_pending_tasks();
        assert_eq!(cache.cache.entry_count(), 1);
        assert!(cache.get(&key, 49).is_some());
        assert!(cache.get(&key, 1).is_none());
    }

    #[test]
    fn lifetimes_end_at_exp_within_an_hour() {
        let policy = policy();
        let now = NOW as f64;
        let (_, short) = verified(&policy, 60, false);
        assert_eq!(lifetime(&short, now), Some(60.0));
        let (_, long) = verified(&policy, 86_400, false);
        assert_eq!(lifetime(&long, now), Some(3600.0));
        assert_eq!(lifetime(&short, now + 60.0), None, "expired: not kept");

        let cache = TokenCache::new(10);
        let (token, v) = verified(&policy, 60, false);
        cache.insert_local(1, &token, &v, now + 61.0);
        assert!(cache.get_local(1, &token, now).is_none());
    }
}
