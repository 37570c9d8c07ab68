//! Shared helpers for the JWE unit tests: the test plaintext, base64url and
//! compact-part helpers, hand-built messages for cases `encrypt` never
//! produces.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::*;
use crate::jose::keys::fixtures::SHARED;

pub(super) const SECRET: &[u8] = b"attack at dawn; this plaintext must never reach an error";

pub(super) fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

pub(super) fn unb64(text: &Value) -> Vec<u8> {
    B64.decode(text.as_str().expect("a string"))
        .expect("base64url")
}

pub(super) fn parts(token: &[u8]) -> Vec<String> {
    std::str::from_utf8(token)
        .unwrap()
        .split('.')
        .map(str::to_owned)
        .collect()
}

pub(super) fn join(parts: &[String]) -> Vec<u8> {
    parts.join(".").into_bytes()
}

pub(super) fn shared() -> SharedKey {
    SharedKey::parse(SHARED).unwrap()
}

/// `SECRET` sealed to the shared key, compact.
pub(super) fn sealed_to_shared() -> Vec<u8> {
    encrypt(
        SECRET,
        None,
        &Recipient::Direct(shared()),
        Serialization::Compact,
    )
    .unwrap()
}

pub(super) fn open_shared(input: &[u8]) -> Result<Decrypted, JweError> {
    decrypt(input, DecryptWith::Shared(&shared()), &ACCEPT_PAYLOAD)
}

pub(super) fn dir_header() -> Value {
    json!({ "alg": "dir", "enc": "A256GCM" })
}

/// AES-GCM with a fixed IV, for hand-built messages.
pub(super) fn gcm_seal(cek: &[u8], aad: &[u8], plaintext: &[u8]) -> ([u8; 12], Vec<u8>, Vec<u8>) {
    let algorithm = if cek.len() == 16 {
        &aead::AES_128_GCM
    } else {
        &aead::AES_256_GCM
    };
    let key = LessSafeKey::new(UnboundKey::new(algorithm, cek).unwrap());
    let iv = [9u8; 12];
    let mut ciphertext = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            &mut ciphertext,
        )
        .unwrap();
    (iv, ciphertext, tag.as_ref().to_vec())
}

/// A compact JWE with any header, for cases `encrypt` never produces.
pub(super) fn seal_compact(
    header: &Value,
    encrypted_key: &[u8],
    cek: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let protected = b64(serde_json::to_vec(header).unwrap());
    let (iv, ciphertext, tag) = gcm_seal(cek, protected.as_bytes(), plaintext);
    format!(
        "{protected}.{}.{}.{}.{}",
        b64(encrypted_key),
        b64(iv),
        b64(ciphertext),
        b64(tag)
    )
    .into_bytes()
}

/// A flattened JSON `dir` JWE with optional unprotected headers and aad.
pub(super) fn seal_flattened(
    protected: &Value,
    unprotected: Option<Value>,
    header: Option<Value>,
    aad: Option<&str>,
) -> Vec<u8> {
    let protected = b64(serde_json::to_vec(protected).unwrap());
    let mut full_aad = protected.clone();
    if let Some(aad) = aad {
        full_aad = format!("{full_aad}.{}", b64(aad));
    }
    let (iv, ciphertext, tag) = gcm_seal(shared().as_bytes(), full_aad.as_bytes(), SECRET);
    let mut json = json!({
        "protected": protected,
        "iv": b64(iv),
        "ciphertext": b64(ciphertext),
        "tag": b64(tag),
    });
    if let Some(unprotected) = unprotected {
        json["unprotected"] = unprotected;
    }
    if let Some(header) = header {
        json["header"] = header;
    }
    if let Some(aad) = aad {
        json["aad"] = json!(b64(aad));
    }
    serde_json::to_vec(&json).unwrap()
}

/// Decodes one part, flips a bit in its middle byte and re-encodes it,
/// so the change survives strict base64url decoding.
pub(super) fn flip(token: &[u8], part: usize) -> Vec<u8> {
    let mut parts = parts(token);
    let mut bytes = B64.decode(&parts[part]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    parts[part] = b64(bytes);
    join(&parts)
}
