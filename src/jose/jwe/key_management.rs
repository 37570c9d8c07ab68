//! Key management: recovering the CEK from a parsed [`Message`] with the
//! caller's keys (RSA-OAEP-256, RSA-OAEP, ECDH-ES+A256KW, ECDH-ES+A128KW
//! with the Concat KDF and AES key wrap, or `dir` with a shared key), and
//! producing and wrapping a fresh CEK for a recipient when encrypting.
//! Content encryption itself is in [`super::content`].

use aws_lc_rs::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::kdf::{SskdfDigestAlgorithmId, get_sskdf_digest_algorithm, sskdf_digest};
use aws_lc_rs::key_wrap::{AES_128, AES_256, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::content::{Secret, open};
use super::parse::{Message, decode, decode_array};
use super::{ContentEnc, Decrypted, JweError, KeyAlg};
use crate::jose::keys::{EcPublicKey, JweKey, PrivateKey, Recipient};

/// AES key wrap adds one 64-bit integrity block (RFC 3394).
const KW_OVERHEAD: usize = 8;

/// The `epk` members used; others (e.g. `kid`) are ignored.
#[derive(Deserialize)]
struct EpkJwk {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

pub(super) fn decrypt_with_keys(message: &Message, keys: &[JweKey]) -> Result<Decrypted, JweError> {
    let alg = message.header.alg;
    let wants_rsa = match alg {
        KeyAlg::RsaOaep256 | KeyAlg::RsaOaep => true,
        KeyAlg::EcdhEsA256Kw | KeyAlg::EcdhEsA128Kw => false,
        KeyAlg::Dir => return Err(JweError::KeyMismatch("dir needs a shared key")),
    };
    if message.encrypted_key.is_empty() {
        return Err(JweError::Malformed("encrypted_key is empty"));
    }
    let fits = |key: &&JweKey| matches!(key.private, PrivateKey::Rsa(_)) == wants_rsa;
    let candidates: Vec<&JweKey> = match &message.header.kid {
        Some(kid) => {
            let key = keys
                .iter()
                .find(|key| key.kid == *kid)
                .ok_or_else(|| JweError::UnknownKid(kid.chars().take(64).collect()))?;
            if !fits(&key) {
                return Err(JweError::KeyMismatch(
                    "the key named by kid is of another type",
                ));
            }
            vec![key]
        }
        None => keys.iter().filter(fits).collect(),
    };
    if candidates.is_empty() {
        return Err(JweError::NoKey(alg.name()));
    }
    // Without a kid every key of the right type is tried. RSA failures never
    // short-circuit (see `rsa_unwrap`), so all attempts look alike.
    let mut failure = JweError::Decrypt;
    for key in candidates {
        match recover_cek(message, &key.private).and_then(|cek| open(message, &cek.0)) {
            Ok(plaintext) => {
                let kid = Some(key.kid.clone());
                return Ok(message.decrypted(plaintext, kid));
            }
            Err(err) => failure = err,
        }
    }
    Err(failure)
}

/// `dir`: the shared key is the CEK. Takes raw bytes so the RFC 7520 §5.6
/// vector (a 128-bit key) can be tested through the same path.
pub(super) fn decrypt_direct(message: &Message, key: &[u8]) -> Result<Decrypted, JweError> {
    if message.header.alg != KeyAlg::Dir {
        return Err(JweError::KeyMismatch("a shared key only decrypts alg dir"));
    }
    if !message.encrypted_key.is_empty() {
        return Err(JweError::Malformed("dir requires an empty encrypted_key"));
    }
    let expected = message.header.enc.cek_len();
    if key.len() != expected {
        return Err(JweError::KeyMismatch(
            "shared key length does not match enc",
        ));
    }
    let plaintext = open(message, key)?;
    let kid = message.header.kid.clone();
    Ok(message.decrypted(plaintext, kid))
}

fn recover_cek(message: &Message, key: &PrivateKey) -> Result<Secret, JweError> {
    let header = &message.header;
    let cek_len = header.enc.cek_len();
    match (key, header.alg) {
        (PrivateKey::Rsa(key), KeyAlg::RsaOaep256) => rsa_unwrap(
            key,
            &OAEP_SHA256_MGF1SHA256,
            &message.encrypted_key,
            cek_len,
        ),
        (PrivateKey::Rsa(key), KeyAlg::RsaOaep) => {
            rsa_unwrap(key, &OAEP_SHA1_MGF1SHA1, &message.encrypted_key, cek_len)
        }
        (PrivateKey::Ec(key), KeyAlg::EcdhEsA256Kw | KeyAlg::EcdhEsA128Kw) => {
            let peer = epk_point(header.epk.as_ref().ok_or(JweError::BadEpk("missing"))?)?;
            let apu = decode_optional(header.apu.as_deref(), "apu")?;
            let apv = decode_optional(header.apv.as_deref(), "apv")?;
            let kek = ecdh_kek(key, &peer, header.alg, &apu, &apv)?;
            kw_unwrap(&kek.0, &message.encrypted_key, cek_len)
        }
        _ => Err(JweError::KeyMismatch("key type does not match alg")),
    }
}

/// RSA-OAEP unwrap that never reveals *why* it failed: on any failure (bad
/// padding, wrong length) a random CEK of the right length is used instead,
/// so the attacker only ever sees the GCM tag check fail (RFC 7516 §11.5),
/// which blunts Bleichenbacher/Manger-style oracles.
fn rsa_unwrap(
    key: &OaepPrivateDecryptingKey,
    algorithm: &'static OaepAlgorithm,
    encrypted_key: &[u8],
    cek_len: usize,
) -> Result<Secret, JweError> {
    // Drawn before decrypting so both outcomes do the same work.
    let fallback = Secret::random(cek_len)?;
    let mut buffer = Secret::zeroed(key.min_output_size());
    match key.decrypt(algorithm, encrypted_key, &mut buffer.0, None) {
        Ok(cek) if cek.len() == cek_len => Ok(Secret(cek.to_vec())),
        _ => Ok(fallback),
    }
}

/// Reads `epk` as an uncompressed P-256 point. Whether the point is on the
/// curve is checked by aws-lc-rs when it is used.
fn epk_point(epk: &Value) -> Result<[u8; 65], JweError> {
    let jwk = EpkJwk::deserialize(epk)
        .map_err(|_| JweError::BadEpk("not a JWK with string kty, crv, x and y"))?;
    if jwk.kty != "EC" || jwk.crv != "P-256" {
        return Err(JweError::BadEpk("must be kty EC on crv P-256"));
    }
    let x: [u8; 32] = decode_array(jwk.x.as_bytes(), "epk x")?;
    let y: [u8; 32] = decode_array(jwk.y.as_bytes(), "epk y")?;
    let mut point = [0u8; 65];
    point[0] = 4;
    point[1..33].copy_from_slice(&x);
    point[33..].copy_from_slice(&y);
    Ok(point)
}

fn decode_optional(b64: Option<&str>, what: &'static str) -> Result<Vec<u8>, JweError> {
    b64.map_or(Ok(Vec::new()), |b64| decode(b64.as_bytes(), what))
}

/// ECDH with the sender's ephemeral key, then the Concat KDF, giving the
/// key-wrapping key.
fn ecdh_kek(
    key: &agreement::PrivateKey,
    peer: &[u8],
    alg: KeyAlg,
    apu: &[u8],
    apv: &[u8],
) -> Result<Secret, JweError> {
    let mut kek = Secret::zeroed(kek_len(alg)?);
    agreement::agree(
        key,
        UnparsedPublicKey::new(&ECDH_P256, peer),
        JweError::BadEpk("not a valid P-256 point"),
        |z| concat_kdf(z, alg.name(), apu, apv, &mut kek.0),
    )?;
    Ok(kek)
}

fn kek_len(alg: KeyAlg) -> Result<usize, JweError> {
    match alg {
        KeyAlg::EcdhEsA256Kw => Ok(32),
        KeyAlg::EcdhEsA128Kw => Ok(16),
        _ => Err(JweError::KeyMismatch("not a key-wrapping ECDH-ES alg")),
    }
}

/// JWA Concat KDF (RFC 7518 §4.6.2), i.e. NIST SP 800-56A single-step KDF
/// with SHA-256. OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo (each
/// with a 32-bit big-endian length prefix) || SuppPubInfo (keydatalen in
/// bits, 32-bit big-endian); SuppPrivInfo is empty.
pub(super) fn concat_kdf(
    z: &[u8],
    algorithm_id: &str,
    apu: &[u8],
    apv: &[u8],
    out: &mut [u8],
) -> Result<(), JweError> {
    let too_long = |_| JweError::Header("apu or apv too long");
    let mut info = Vec::with_capacity(16 + algorithm_id.len() + apu.len() + apv.len());
    for field in [algorithm_id.as_bytes(), apu, apv] {
        info.extend_from_slice(&u32::try_from(field.len()).map_err(too_long)?.to_be_bytes());
        info.extend_from_slice(field);
    }
    let key_bits = u32::try_from(out.len() * 8).map_err(too_long)?;
    info.extend_from_slice(&key_bits.to_be_bytes());
    let sha256 = get_sskdf_digest_algorithm(SskdfDigestAlgorithmId::Sha256)
        .ok_or(JweError::Crypto("SSKDF with SHA-256 unavailable"))?;
    sskdf_digest(sha256, z, &info, out).map_err(|_| JweError::Crypto("Concat KDF failed"))
}

fn key_encryption_key(
    kek: &[u8],
) -> Result<KeyEncryptionKey<aws_lc_rs::key_wrap::AesBlockCipher>, JweError> {
    let cipher = match kek.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(JweError::Crypto("unsupported key-wrapping key length")),
    };
    KeyEncryptionKey::new(cipher, kek).map_err(|_| JweError::Crypto("AES-KW key setup failed"))
}

/// AES key unwrap (RFC 3394); its integrity check rejects a wrong KEK.
pub(super) fn kw_unwrap(kek: &[u8], wrapped: &[u8], cek_len: usize) -> Result<Secret, JweError> {
    if wrapped.len() != cek_len + KW_OVERHEAD {
        return Err(JweError::BadLength {
            what: "encrypted_key",
            expected: cek_len + KW_OVERHEAD,
            got: wrapped.len(),
        });
    }
    let mut cek = Secret::zeroed(cek_len);
    key_encryption_key(kek)?
        .unwrap(wrapped, &mut cek.0)
        .map_err(|_| JweError::KeyUnwrap)?;
    Ok(cek)
}

/// Picks the CEK for `to` and protects it: returns the CEK and the JWE
/// Encrypted Key, and adds `alg` (and `epk`) to the header.
pub(super) fn wrap_new_cek(
    to: &Recipient,
    enc: ContentEnc,
    header: &mut Map<String, Value>,
) -> Result<(Secret, Vec<u8>), JweError> {
    match to {
        Recipient::Direct(shared) => {
            header.insert("alg".into(), KeyAlg::Dir.name().into());
            Ok((Secret(shared.as_bytes().to_vec()), Vec::new()))
        }
        Recipient::Rsa(public) => {
            header.insert("alg".into(), KeyAlg::RsaOaep256.name().into());
            let cek = Secret::random(enc.cek_len())?;
            let mut wrapped = vec![0; public.0.ciphertext_size()];
            let len = public
                .0
                .encrypt(&OAEP_SHA256_MGF1SHA256, &cek.0, &mut wrapped, None)
                .map_err(|_| JweError::Crypto("RSA-OAEP encryption failed"))?
                .len();
            wrapped.truncate(len);
            Ok((cek, wrapped))
        }
        Recipient::EcP256(public) => {
            let alg = KeyAlg::EcdhEsA256Kw;
            header.insert("alg".into(), alg.name().into());
            let kek = ecdh_es_sender_kek(public, alg, header)?;
            let cek = Secret::random(enc.cek_len())?;
            let mut wrapped = vec![0; cek.0.len() + KW_OVERHEAD];
            key_encryption_key(&kek.0)?
                .wrap(&cek.0, &mut wrapped)
                .map_err(|_| JweError::Crypto("AES key wrap failed"))?;
            Ok((cek, wrapped))
        }
    }
}

/// ECDH-ES sender side: a fresh ephemeral key, published as `epk`, agreed
/// with the recipient's key and fed through the Concat KDF.
fn ecdh_es_sender_kek(
    public: &EcPublicKey,
    alg: KeyAlg,
    header: &mut Map<String, Value>,
) -> Result<Secret, JweError> {
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new())
        .map_err(|_| JweError::Crypto("ephemeral key generation failed"))?;
    let point = ephemeral
        .compute_public_key()
        .map_err(|_| JweError::Crypto("ephemeral public key failed"))?;
    // Uncompressed SEC1 point: 0x04 || x || y.
    let xy = point
        .as_ref()
        .get(1..65)
        .ok_or(JweError::Crypto("unexpected point size"))?;
    header.insert(
        "epk".into(),
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": B64.encode(&xy[..32]),
            "y": B64.encode(&xy[32..]),
        }),
    );
    let mut kek = Secret::zeroed(kek_len(alg)?);
    agreement::agree_ephemeral(
        ephemeral,
        public.0.clone(),
        JweError::Crypto("ECDH failed"),
        |z| concat_kdf(z, alg.name(), &[], &[], &mut kek.0),
    )?;
    Ok(kek)
}
