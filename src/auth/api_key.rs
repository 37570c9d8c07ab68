//! Bearer API keys (SPEC §3.4): only the SHA-256 of each key is in the policy, so the
//! lookup hashes what was presented and finds it in a map built at load. A key the policy
//! does not hold may be in the key store (§3.8); only then does the lookup wait for anything.

use super::key_store::KeyStore;
use super::{Identity, Principal};
use crate::error::Error;
use crate::observe::trace;
use crate::policy::snapshot::Snapshot;
use crate::policy::{ApiKey, Policy};

/// Policy keys first (a hash in both is the policy's), then the key store if there is one;
/// the same checks either way.
pub async fn verify(
    snap: &Snapshot,
    store: Option<&KeyStore>,
    presented: &str,
    now_unix: i64,
    span: Option<&trace::Span>,
) -> Result<Principal, Error> {
    let hash = digest(presented);
    if let Some(key) = snap.policy.api_keys.get(&hash) {
        return check(key, now_unix);
    }
    let Some(store) = store else {
        return Err(Error::InvalidApiKey);
    };
    let lookup = trace::child(span, "scopegate.key_store", trace::Kind::Client);
    let found = store.lookup(snap, &hash).await;
    trace::end(lookup, &found);
    let key = found?.ok_or(Error::InvalidApiKey)?;
    check(&key, now_unix)
}

/// The policy's keys alone, without awaiting anything (benchmarks of the lookup itself).
pub fn verify_in_policy(
    policy: &Policy,
    presented: &str,
    now_unix: i64,
) -> Result<Principal, Error> {
    let key = policy
        .api_keys
        .get(&digest(presented))
        .ok_or(Error::InvalidApiKey)?;
    check(key, now_unix)
}

fn check(key: &ApiKey, now_unix: i64) -> Result<Principal, Error> {
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
