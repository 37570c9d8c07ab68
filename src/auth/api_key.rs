//! Bearer API keys (SPEC §3.4): only the SHA-256 of each key is in the policy, so the
//! lookup hashes what was presented and finds it in a map built at load. A key the policy
//! does not hold may be in the key store (§3.8); only then does the lookup wait for anything.

use std::sync::Arc;

use super::key_store::KeyStore;
use super::{Identity, Principal};
use crate::error::Error;
use crate::policy::snapshot::Snapshot;
use crate::policy::{ApiKey, Policy};
use crate::trace;

/// A key's verdict, or the key-store lookup still to be waited for.
pub enum Verdict {
    Ready(Result<Principal, Error>),
    /// Not the policy's: the key store's to say (`in_store`), by this hash.
    InStore([u8; 32]),
}

/// Policy keys first (a hash in both is the policy's), then, when there is one, the key
/// store (`in_store`); the same checks either way. Most requests end here, with no future
/// built.
pub fn verify(policy: &Policy, has_store: bool, presented: &str, now_unix: i64) -> Verdict {
    let hash = digest(presented);
    match policy.api_keys.get(&hash) {
        Some(key) => Verdict::Ready(check(key, now_unix)),
        None if has_store => Verdict::InStore(hash),
        None => Verdict::Ready(Err(Error::InvalidApiKey)),
    }
}

/// The key store's verdict on a key the policy does not hold.
pub async fn in_store(
    snap: &Snapshot,
    store: &KeyStore,
    hash: [u8; 32],
    now_unix: i64,
    span: Option<&trace::Span>,
) -> Result<Principal, Error> {
    let lookup = trace::child(span, "scopegate.key_store", trace::Kind::Client);
    let found = store.lookup(snap, &hash).await;
    trace::end(lookup, &found);
    let key = found?.ok_or(Error::InvalidApiKey)?;
    check(&key, now_unix)
}

/// The policy's keys alone (benchmarks of the lookup itself).
pub fn verify_in_policy(
    policy: &Policy,
    presented: &str,
    now_unix: i64,
) -> Result<Principal, Error> {
    match verify(policy, false, presented, now_unix) {
        Verdict::Ready(decided) => decided,
        Verdict::InStore(_) => Err(Error::InvalidApiKey),
    }
}

fn check(key: &Arc<ApiKey>, now_unix: i64) -> Result<Principal, Error> {
    if key.disabled {
        return Err(Error::ApiKeyDisabled);
    }
    if key.expires.is_some_and(|e| now_unix >= e) {
        return Err(Error::ApiKeyExpired);
    }
    Ok(Principal {
        scopes: key.scopes.clone(),
        scopes_header: Some(key.scopes_header.clone()),
        identity: Identity::ApiKey { key: key.clone() },
        subject: None,
        claim_headers: Vec::new(),
    })
}

/// The hash keys are found by: a timing difference in the lookup reveals at most whether a
/// random SHA-256 prefix exists, which is useless without the preimage.
fn digest(presented: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(d.as_ref());
    hash
}

/// A new random key and the policy line that admits it (the `key new` command).
pub fn generate(prefix: &str) -> (String, String) {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // The system RNG failing is not recoverable for a key generator.
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("system random generator failed");
    let key = format!(
        "{prefix}{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    );
    let hash = crate::policy::compile::sha256_hex(key.as_bytes());
    (key, hash)
}
