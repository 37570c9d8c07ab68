//! JOSE for scopegate: JWE (RFC 7516) decryption of encrypted tokens and
//! request payloads, encryption of responses, and the keys involved.
//!
//! Built only from aws-lc-rs primitives (RSA-OAEP, AES-GCM, AES key wrap,
//! ECDH P-256, the single-step KDF); this module implements no cryptographic
//! primitive itself. [`keys`] loads and describes keys, [`jwe`] parses,
//! checks and (de)crypts messages.

pub mod jwe;
pub mod keys;
pub mod signing;

pub use jwe::{
    ACCEPT_PAYLOAD, ACCEPT_TOKEN, Accept, ContentEnc, DecryptWith, Decrypted, JweError, KeyAlg,
    Serialization, decrypt, encrypt, encrypt_to_jwe_key,
};
pub use keys::{JweKey, KeyError, Recipient, SharedKey, jwks_document};

/// Key families an app's public key can belong to; an `alg` must match its key's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl PublicKeyKind {
    /// Whether `alg` is one this kind of key verifies.
    pub fn fits(self, alg: jsonwebtoken::Algorithm) -> bool {
        use jsonwebtoken::Algorithm::*;
        match self {
            PublicKeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            PublicKeyKind::EcP256 => alg == ES256,
            PublicKeyKind::EcP384 => alg == ES384,
            PublicKeyKind::Ed25519 => alg == EdDSA,
        }
    }
}
