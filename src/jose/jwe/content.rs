//! Content encryption: AES-GCM (A256GCM, A128GCM) opening of a parsed
//! [`Message`] with a recovered CEK, sealing of a new message with output in
//! either serialization, and [`Secret`], the wiped-on-drop holder for CEKs
//! and KEKs. Key management (which CEK, how it is wrapped) is left to
//! [`super::key_management`].

use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde_json::Map;

use super::key_management::wrap_new_cek;
use super::parse::Message;
use super::{ContentEnc, JweError, Serialization};
use crate::jose::keys::{Recipient, wipe};

/// Key bytes (CEK or KEK) that are wiped when dropped.
pub(super) struct Secret(pub(super) Vec<u8>);

impl Secret {
    pub(super) fn zeroed(len: usize) -> Secret {
        Secret(vec![0; len])
    }

    pub(super) fn random(len: usize) -> Result<Secret, JweError> {
        let mut secret = Secret::zeroed(len);
        rand::fill(&mut secret.0).map_err(|_| JweError::Crypto("random generator failed"))?;
        Ok(secret)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// AES-GCM open of the content. The CEK length is checked against `enc`
/// here, whatever produced it.
pub(super) fn open(message: &Message, cek: &[u8]) -> Result<Vec<u8>, JweError> {
    let enc = message.header.enc;
    if cek.len() != enc.cek_len() {
        return Err(JweError::BadLength {
            what: "content encryption key",
            expected: enc.cek_len(),
            got: cek.len(),
        });
    }
    let key = UnboundKey::new(enc.aead(), cek)
        .map_err(|_| JweError::Crypto("AES-GCM key setup failed"))?;
    let mut plaintext = vec![0; message.ciphertext.len()];
    LessSafeKey::new(key)
        .open_separate_gather(
            Nonce::assume_unique_for_key(message.iv),
            Aad::from(message.aad.as_slice()),
            &message.ciphertext,
            &message.tag,
            &mut plaintext,
        )
        .map_err(|_| JweError::Decrypt)?;
    Ok(plaintext)
}

pub(super) fn seal(
    plaintext: &[u8],
    cty: Option<&str>,
    to: &Recipient,
    kid: Option<&str>,
    ser: Serialization,
) -> Result<Vec<u8>, JweError> {
    let enc = ContentEnc::A256Gcm;
    let mut header = Map::new();
    let (cek, encrypted_key) = wrap_new_cek(to, enc, &mut header)?;
    header.insert("enc".into(), enc.name().into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    if let Some(cty) = cty {
        header.insert("cty".into(), cty.into());
    }
    let header =
        serde_json::to_vec(&header).map_err(|_| JweError::Crypto("header serialization failed"))?;
    let protected = B64.encode(header);

    let mut iv = [0u8; NONCE_LEN];
    rand::fill(&mut iv).map_err(|_| JweError::Crypto("random generator failed"))?;
    let key = UnboundKey::new(enc.aead(), &cek.0)
        .map_err(|_| JweError::Crypto("AES-GCM key setup failed"))?;
    let mut ciphertext = plaintext.to_vec();
    let tag = LessSafeKey::new(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| JweError::Crypto("AES-GCM encryption failed"))?;

    let encrypted_key = B64.encode(encrypted_key);
    let iv = B64.encode(iv);
    let tag = B64.encode(tag.as_ref());
    match ser {
        Serialization::Compact => {
            let mut out = String::with_capacity(
                protected.len() + encrypted_key.len() + ciphertext.len() * 4 / 3 + 64,
            );
            for part in [&protected, &encrypted_key, &iv] {
                out.push_str(part);
                out.push('.');
            }
            B64.encode_string(&ciphertext, &mut out);
            out.push('.');
            out.push_str(&tag);
            Ok(out.into_bytes())
        }
        Serialization::Flattened => serde_json::to_vec(&FlattenedOut {
            protected: &protected,
            encrypted_key: &encrypted_key,
            iv: &iv,
            ciphertext: &B64.encode(&ciphertext),
            tag: &tag,
        })
        .map_err(|_| JweError::Crypto("JSON serialization failed")),
    }
}

#[derive(Serialize)]
struct FlattenedOut<'a> {
    protected: &'a str,
    /// RFC 7516 §7.2.1: absent when the encrypted key is empty (`dir`).
    #[serde(skip_serializing_if = "str::is_empty")]
    encrypted_key: &'a str,
    iv: &'a str,
    ciphertext: &'a str,
    tag: &'a str,
}
