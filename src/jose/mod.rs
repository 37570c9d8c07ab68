//! JOSE for scopegate: JWE (RFC 7516) decryption of encrypted tokens and
//! request payloads, encryption of responses, and the keys involved.
//!
//! Built only from aws-lc-rs primitives (RSA-OAEP, AES-GCM, AES key wrap,
//! ECDH P-256, the single-step KDF); this module implements no cryptographic
//! primitive itself. [`keys`] loads and describes keys, [`jwe`] parses,
//! checks and (de)crypts messages.

pub mod jwe;
pub mod keys;

pub use jwe::{
    ACCEPT_PAYLOAD, ACCEPT_TOKEN, Accept, ContentEnc, DecryptWith, Decrypted, JweError, KeyAlg,
    Serialization, decrypt, encrypt, encrypt_to_jwe_key,
};
pub use keys::{JweKey, KeyError, Recipient, SharedKey, jwks_document};
