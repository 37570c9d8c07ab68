//! JWE (RFC 7516) decryption and encryption for tokens and payloads.
//!
//! Supported: compact and flattened JSON serializations; key management
//! RSA-OAEP-256, RSA-OAEP (decrypt only), ECDH-ES+A256KW, ECDH-ES+A128KW (P-256)
//! and `dir`; content encryption A256GCM and A128GCM (decrypt only). Every
//! primitive comes from aws-lc-rs; this module composes them and, above all,
//! decides what to refuse: the caller's [`Accept`] list, `zip`, `crit`, header
//! size, strict base64url, and lengths are all checked before any key is used.
//! Key-locating header parameters (`jku`, `x5u`, `jwk`, `x5c`) are never read:
//! only the caller's own keys decrypt.
//!
//! This file holds the public API and its types; `parse` turns input into a
//! checked `Message`, `key_management` recovers or wraps the CEK, and
//! `content` does the AES-GCM part and writes the output.

mod content;
mod key_management;
#[cfg(test)]
mod key_management_tests;
mod parse;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod round_trip_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod vector_tests;

use std::fmt;

use aws_lc_rs::aead;

use super::keys::{JweKey, Recipient, SharedKey};
use content::seal;
use key_management::{decrypt_direct, decrypt_with_keys};
use parse::Message;

/// Largest decoded protected header accepted; real headers are a few hundred
/// bytes, and this bounds the JSON parsing done before any authentication.
const MAX_PROTECTED_HEADER: usize = 8 * 1024;

/// JWE serialization forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serialization {
    /// `protected.encrypted_key.iv.ciphertext.tag`.
    Compact,
    /// RFC 7516 §7.2.2 flattened JSON (one recipient, no `recipients` array).
    Flattened,
}

/// Key management algorithms (`alg`) this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    RsaOaep256,
    RsaOaep,
    EcdhEsA256Kw,
    EcdhEsA128Kw,
    Dir,
}

impl KeyAlg {
    const ALL: [KeyAlg; 5] = [
        KeyAlg::RsaOaep256,
        KeyAlg::RsaOaep,
        KeyAlg::EcdhEsA256Kw,
        KeyAlg::EcdhEsA128Kw,
        KeyAlg::Dir,
    ];

    /// The JWA name, as written in the `alg` header parameter.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::RsaOaep256 => "RSA-OAEP-256",
            KeyAlg::RsaOaep => "RSA-OAEP",
            KeyAlg::EcdhEsA256Kw => "ECDH-ES+A256KW",
            KeyAlg::EcdhEsA128Kw => "ECDH-ES+A128KW",
            KeyAlg::Dir => "dir",
        }
    }

    fn from_name(name: &str) -> Option<KeyAlg> {
        KeyAlg::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

/// Content encryption algorithms (`enc`) this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEnc {
    A256Gcm,
    A128Gcm,
}

impl ContentEnc {
    /// The JWA name, as written in the `enc` header parameter.
    pub fn name(self) -> &'static str {
        match self {
            ContentEnc::A256Gcm => "A256GCM",
            ContentEnc::A128Gcm => "A128GCM",
        }
    }

    fn from_name(name: &str) -> Option<ContentEnc> {
        [ContentEnc::A256Gcm, ContentEnc::A128Gcm]
            .into_iter()
            .find(|enc| enc.name() == name)
    }

    fn cek_len(self) -> usize {
        self.aead().key_len()
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            ContentEnc::A256Gcm => &aead::AES_256_GCM,
            ContentEnc::A128Gcm => &aead::AES_128_GCM,
        }
    }
}

/// What the caller lets through. Anything outside these lists is refused
/// before a key is touched.
#[derive(Debug, Clone, Copy)]
pub struct Accept {
    pub algs: &'static [KeyAlg],
    pub encs: &'static [ContentEnc],
}

/// JWE tokens: only the algorithms we advertise in our JWKS.
pub const ACCEPT_TOKEN: Accept = Accept {
    algs: &[KeyAlg::RsaOaep256, KeyAlg::EcdhEsA256Kw],
    encs: &[ContentEnc::A256Gcm],
};

/// Request payloads: additionally the older or smaller variants some client
/// libraries default to, and `dir` with a shared key.
pub const ACCEPT_PAYLOAD: Accept = Accept {
    algs: &[
        KeyAlg::RsaOaep256,
        KeyAlg::RsaOaep,
        KeyAlg::EcdhEsA256Kw,
        KeyAlg::EcdhEsA128Kw,
        KeyAlg::Dir,
    ],
    encs: &[ContentEnc::A256Gcm, ContentEnc::A128Gcm],
};

/// Which key(s) may decrypt.
#[derive(Debug, Clone, Copy)]
pub enum DecryptWith<'a> {
    /// The proxy's own key pairs (RSA-OAEP*, ECDH-ES*).
    Keys(&'a [JweKey]),
    /// A key shared with the client (`dir` only).
    Shared(&'a SharedKey),
}

/// A successfully decrypted and authenticated JWE.
pub struct Decrypted {
    pub plaintext: Vec<u8>,
    pub cty: Option<String>,
    pub alg: KeyAlg,
    pub enc: ContentEnc,
    /// With [`DecryptWith::Keys`], the kid of the proxy key that decrypted;
    /// with [`DecryptWith::Shared`], the header's `kid`, if any.
    pub kid: Option<String>,
    pub serialization: Serialization,
}

impl fmt::Debug for Decrypted {
    /// Plaintext is elided so a stray `{:?}` cannot leak it into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("cty", &self.cty)
            .field("alg", &self.alg)
            .field("enc", &self.enc)
            .field("kid", &self.kid)
            .field("serialization", &self.serialization)
            .finish()
    }
}

/// Why a JWE was refused. The detail is for logs only: callers map every
/// variant to one public error so clients learn nothing from the difference.
/// No variant carries key bytes or plaintext; header values quoted here are
/// truncated.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    #[error("malformed JWE JSON ({0})")]
    Json(String),
    #[error("invalid base64url in {0}")]
    Base64(&'static str),
    #[error("protected header is {0} bytes; the limit is {MAX_PROTECTED_HEADER}")]
    HeaderTooLarge(usize),
    #[error("invalid JOSE header: {0}")]
    Header(&'static str),
    #[error("{param} {value:?} is not accepted here")]
    NotAccepted { param: &'static str, value: String },
    #[error("header parameter {0:?} is not supported")]
    Unsupported(&'static str),
    #[error("no configured key has kid {0:?}")]
    UnknownKid(String),
    #[error("no configured key fits alg {0}")]
    NoKey(&'static str),
    #[error("key does not fit the algorithm: {0}")]
    KeyMismatch(&'static str),
    #[error("invalid epk: {0}")]
    BadEpk(&'static str),
    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("AES key unwrap failed (wrong key or altered encrypted_key/epk)")]
    KeyUnwrap,
    #[error("decryption failed (wrong key or altered message)")]
    Decrypt,
    #[error("crypto library failure: {0}")]
    Crypto(&'static str),
}

/// Decrypts a JWE in compact serialization (five base64url parts separated
/// by dots) or flattened JSON (an object; detected by its first non-space
/// byte being `{`), after checking the header against `accept` and the key.
pub fn decrypt(
    input: &[u8],
    with: DecryptWith<'_>,
    accept: &Accept,
) -> Result<Decrypted, JweError> {
    let message = Message::parse(input, accept)?;
    match with {
        DecryptWith::Keys(keys) => decrypt_with_keys(&message, keys),
        DecryptWith::Shared(key) => decrypt_direct(&message, key.as_bytes()),
    }
}

/// Encrypts `plaintext` to a client. Always A256GCM with a fresh random CEK
/// and 96-bit IV: RSA recipients get RSA-OAEP-256, EC recipients
/// ECDH-ES+A256KW with a fresh ephemeral key, shared keys `dir`.
///
/// With `dir`, IVs are random, so one shared key should not seal more than
/// about 2^32 messages (NIST SP 800-38D §8.3).
pub fn encrypt(
    plaintext: &[u8],
    cty: Option<&str>,
    to: &Recipient,
    ser: Serialization,
) -> Result<Vec<u8>, JweError> {
    seal(plaintext, cty, to, None, ser)
}

/// Encrypts to one of the proxy's own keys and sets its `kid`, as a client
/// would when building a JWE token; used by tests, benches and self-checks.
pub fn encrypt_to_jwe_key(
    plaintext: &[u8],
    cty: Option<&str>,
    key: &JweKey,
    ser: Serialization,
) -> Result<Vec<u8>, JweError> {
    seal(plaintext, cty, &key.public, Some(&key.kid), ser)
}
