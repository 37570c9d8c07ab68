//! Cache of verified asymmetric tokens (RSA, ECDSA, EdDSA, JWE): the signature check is the
//! expensive part of a request, and a client reuses its token for many of them.
//!
//! The key is a SHA-256 of the policy generation and the token, so a reload makes every
//! entry unreachable at the swap: a revoked app never rides on a cached verdict. Entries
//! expire no later than the token's `exp`; time and replay checks still run on every hit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::jwt::Verified;

const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(3600);

pub struct TokenCache {
    cache: moka::sync::Cache<[u8; 32], Entry>,
}

#[derive(Clone)]
struct Entry {
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
        TokenCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build(),
        }
    }

    pub fn key(generation: u64, token: &str) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&generation.to_le_bytes());
        ctx.update(token.as_bytes());
        ctx.finish().as_ref().try_into().unwrap_or([0; 32])
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Verified>> {
        self.cache.get(key).map(|e| e.verified)
    }

    /// Stores a verdict until the token's `exp` (capped), measured from `now_unix`.
    pub fn insert(&self, key: [u8; 32], verified: Arc<Verified>, now_unix: f64) {
        let ttl = match verified.exp {
            Some(exp) if exp > now_unix => {
                // Cap before converting: a signed `exp` of 1e20 must not overflow a Duration.
                Duration::from_secs_f64((exp - now_unix).min(MAX_ENTRY_LIFETIME.as_secs_f64()))
            }
            Some(_) => return,
            None => MAX_ENTRY_LIFETIME,
        };
        self.cache.insert(
            key,
            Entry {
                verified,
                deadline: Instant::now() + ttl,
            },
        );
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}
