//! Bearer API keys (SPEC §3.4): only the SHA-256 of each key is in the policy, so the
//! lookup hashes what was presented and finds it in a map built at load.

use super::{Identity, Principal};
use crate::error::Error;
use crate::policy::{ApiKey, Policy};

pub fn verify(policy: &Policy, presented: &str, now_unix: i64) -> Result<Principal, Error> {
    let key = lookup(policy, presented).ok_or(Error::InvalidApiKey)?;
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

/// Hash lookup: a timing difference here reveals at most whether a random SHA-256 prefix
/// exists, which is useless without the preimage.
pub fn lookup<'p>(policy: &'p Policy, presented: &str) -> Option<&'p ApiKey> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
    let hash: [u8; 32] = digest.as_ref().try_into().ok()?;
    policy.api_keys.get(&hash)
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
