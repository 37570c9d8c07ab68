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

use std::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use aws_lc_rs::kdf::{SskdfDigestAlgorithmId, get_sskdf_digest_algorithm, sskdf_digest};
use aws_lc_rs::key_wrap::{AES_128, AES_256, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::rand::{self, SystemRandom};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use super::keys::{EcPublicKey, JweKey, PrivateKey, Recipient, SharedKey, wipe};

/// Largest decoded protected header accepted; real headers are a few hundred
/// bytes, and this bounds the JSON parsing done before any authentication.
const MAX_PROTECTED_HEADER: usize = 8 * 1024;
const TAG_LEN: usize = 16;
/// AES key wrap adds one 64-bit integrity block (RFC 3394).
const KW_OVERHEAD: usize = 8;

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

/// The validated header parameters this module acts on.
struct Header {
    alg: KeyAlg,
    enc: ContentEnc,
    kid: Option<String>,
    cty: Option<String>,
    epk: Option<Value>,
    apu: Option<String>,
    apv: Option<String>,
}

/// A parsed JWE whose header passed policy, not yet decrypted.
struct Message {
    header: Header,
    encrypted_key: Vec<u8>,
    iv: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    tag: [u8; TAG_LEN],
    /// Additional authenticated data: ASCII(protected) [ "." ASCII(aad) ].
    aad: Vec<u8>,
    serialization: Serialization,
}

/// The members of a flattened JSON JWE. Unknown members are ignored as RFC
/// 7516 §7.2.1 requires; duplicate known members are rejected by serde.
#[derive(Deserialize)]
struct FlattenedIn {
    protected: Option<String>,
    unprotected: Option<JsonObject>,
    header: Option<JsonObject>,
    encrypted_key: Option<String>,
    iv: Option<String>,
    ciphertext: Option<String>,
    tag: Option<String>,
    aad: Option<String>,
    recipients: Option<IgnoredAny>,
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

/// A JSON object whose member names must be unique. serde_json would keep
/// the last duplicate silently; for headers that ambiguity is refused.
struct JsonObject(Map<String, Value>);

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut members = Map::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    if members.contains_key(&name) {
                        return Err(de::Error::custom("duplicate member name"));
                    }
                    members.insert(name, value);
                }
                Ok(JsonObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The `epk` members used; others (e.g. `kid`) are ignored.
#[derive(Deserialize)]
struct EpkJwk {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

impl Message {
    fn parse(input: &[u8], accept: &Accept) -> Result<Message, JweError> {
        match input.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Message::parse_flattened(input, accept),
            _ => Message::parse_compact(input, accept),
        }
    }

    fn parse_compact(input: &[u8], accept: &Accept) -> Result<Message, JweError> {
        let mut parts = input.split(|&b| b == b'.');
        let (Some(protected), Some(encrypted_key), Some(iv), Some(ciphertext), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(JweError::Malformed(
                "compact serialization must have exactly 5 parts",
            ));
        };
        // The header is checked before the (possibly large) body is decoded.
        let header = Header::parse(decode_protected(protected)?, None, None, accept)?;
        Ok(Message {
            header,
            encrypted_key: decode(encrypted_key, "encrypted_key")?,
            iv: decode_array(iv, "iv")?,
            ciphertext: decode(ciphertext, "ciphertext")?,
            tag: decode_array(tag, "tag")?,
            aad: protected.to_vec(),
            serialization: Serialization::Compact,
        })
    }

    fn parse_flattened(input: &[u8], accept: &Accept) -> Result<Message, JweError> {
        let json: FlattenedIn = serde_json::from_slice(input).map_err(|err| {
            // serde_json's own message can quote input; keep position only.
            JweError::Json(format!(
                "{:?} error at line {} column {}",
                err.classify(),
                err.line(),
                err.column()
            ))
        })?;
        if json.recipients.is_some() {
            return Err(JweError::Malformed(
                "general JSON serialization (recipients) is not supported",
            ));
        }
        let protected = json
            .protected
            .ok_or(JweError::Malformed("missing protected header"))?;
        let header = Header::parse(
            decode_protected(protected.as_bytes())?,
            json.unprotected.map(|o| o.0),
            json.header.map(|o| o.0),
            accept,
        )?;
        let required = |member: Option<String>, name| member.ok_or(JweError::Malformed(name));
        let iv = required(json.iv, "missing iv")?;
        let ciphertext = required(json.ciphertext, "missing ciphertext")?;
        let tag = required(json.tag, "missing tag")?;
        let mut aad = protected.into_bytes();
        if let Some(extra) = json.aad {
            decode(extra.as_bytes(), "aad")?;
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        Ok(Message {
            header,
            encrypted_key: decode(
                json.encrypted_key.unwrap_or_default().as_bytes(),
                "encrypted_key",
            )?,
            iv: decode_array(iv.as_bytes(), "iv")?,
            ciphertext: decode(ciphertext.as_bytes(), "ciphertext")?,
            tag: decode_array(tag.as_bytes(), "tag")?,
            aad,
            serialization: Serialization::Flattened,
        })
    }

    fn decrypted(&self, plaintext: Vec<u8>, kid: Option<String>) -> Decrypted {
        Decrypted {
            plaintext,
            cty: self.header.cty.clone(),
            alg: self.header.alg,
            enc: self.header.enc,
            kid,
            serialization: self.serialization,
        }
    }
}

impl Header {
    /// Merges the protected header with the optional JSON-only unprotected
    /// ones and applies the policy to the union (RFC 7516 §7.2.1: the three
    /// must not share names).
    fn parse(
        protected: Map<String, Value>,
        unprotected: Option<Map<String, Value>>,
        per_recipient: Option<Map<String, Value>>,
        accept: &Accept,
    ) -> Result<Header, JweError> {
        if !protected.contains_key("enc") {
            return Err(JweError::Header("enc must be in the protected header"));
        }
        let mut all = protected;
        for extra in [unprotected, per_recipient].into_iter().flatten() {
            for (name, value) in extra {
                if all.contains_key(&name) {
                    return Err(JweError::Header(
                        "a parameter appears in more than one header",
                    ));
                }
                all.insert(name, value);
            }
        }
        // We implement no extensions, so any `crit` is by definition not
        // understood; compression before encryption invites length oracles.
        for unsupported in ["crit", "zip"] {
            if all.contains_key(unsupported) {
                return Err(JweError::Unsupported(unsupported));
            }
        }
        let alg = string_param(&all, "alg")?.ok_or(JweError::Header("missing alg"))?;
        let alg = KeyAlg::from_name(alg)
            .filter(|alg| accept.algs.contains(alg))
            .ok_or_else(|| not_accepted("alg", alg))?;
        let enc = string_param(&all, "enc")?.ok_or(JweError::Header("missing enc"))?;
        let enc = ContentEnc::from_name(enc)
            .filter(|enc| accept.encs.contains(enc))
            .ok_or_else(|| not_accepted("enc", enc))?;
        let owned = |name| string_param(&all, name).map(|value| value.map(str::to_owned));
        Ok(Header {
            alg,
            enc,
            kid: owned("kid")?,
            cty: owned("cty")?,
            apu: owned("apu")?,
            apv: owned("apv")?,
            epk: all.get("epk").cloned(),
        })
    }
}

fn string_param<'a>(
    header: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JweError> {
    match header.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(JweError::Header(
            "alg, enc, kid, cty, apu and apv must be strings",
        )),
    }
}

/// Quotes at most 32 characters of an attacker-chosen value for the logs.
fn not_accepted(param: &'static str, value: &str) -> JweError {
    JweError::NotAccepted {
        param,
        value: value.chars().take(32).collect(),
    }
}

fn decode_protected(b64: &[u8]) -> Result<Map<String, Value>, JweError> {
    // Cheap bound on the encoded form first, so oversized input is never decoded.
    if b64.len() > base64::encoded_len(MAX_PROTECTED_HEADER, false).unwrap_or(usize::MAX) {
        return Err(JweError::HeaderTooLarge(b64.len() / 4 * 3));
    }
    let json = decode(b64, "protected header")?;
    if json.len() > MAX_PROTECTED_HEADER {
        return Err(JweError::HeaderTooLarge(json.len()));
    }
    serde_json::from_slice::<JsonObject>(&json)
        .map(|object| object.0)
        .map_err(|_| JweError::Header("protected header is not a JSON object with unique names"))
}

/// Strict base64url: no padding, no whitespace, canonical trailing bits.
fn decode(b64: &[u8], what: &'static str) -> Result<Vec<u8>, JweError> {
    B64.decode(b64).map_err(|_| JweError::Base64(what))
}

fn decode_array<const N: usize>(b64: &[u8], what: &'static str) -> Result<[u8; N], JweError> {
    let bytes = decode(b64, what)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| JweError::BadLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

/// Key bytes (CEK or KEK) that are wiped when dropped.
struct Secret(Vec<u8>);

impl Secret {
    fn zeroed(len: usize) -> Secret {
        Secret(vec![0; len])
    }

    fn random(len: usize) -> Result<Secret, JweError> {
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

fn decrypt_with_keys(message: &Message, keys: &[JweKey]) -> Result<Decrypted, JweError> {
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
fn decrypt_direct(message: &Message, key: &[u8]) -> Result<Decrypted, JweError> {
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
fn concat_kdf(
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
fn kw_unwrap(kek: &[u8], wrapped: &[u8], cek_len: usize) -> Result<Secret, JweError> {
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

/// AES-GCM open of the content. The CEK length is checked against `enc`
/// here, whatever produced it.
fn open(message: &Message, cek: &[u8]) -> Result<Vec<u8>, JweError> {
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

fn seal(
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

/// Picks the CEK for `to` and protects it: returns the CEK and the JWE
/// Encrypted Key, and adds `alg` (and `epk`) to the header.
fn wrap_new_cek(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::keys::fixtures::{self, *};
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa;
    use std::slice::from_ref;

    const SECRET: &[u8] = b"attack at dawn; this plaintext must never reach an error";
    const RFC7520_5_2: &str = include_str!("../testdata/rfc7520_5_2_rsa_oaep_a256gcm.json");
    const RFC7520_5_4: &str = include_str!("../testdata/rfc7520_5_4_ecdh_es_a128kw_a128gcm.json");
    const RFC7520_5_6: &str = include_str!("../testdata/rfc7520_5_6_dir_a128gcm.json");
    const INTEROP_SCRIPT: &str = include_str!("../testdata/interop_joserfc.py");

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        B64.encode(bytes)
    }

    fn unb64(text: &Value) -> Vec<u8> {
        B64.decode(text.as_str().expect("a string"))
            .expect("base64url")
    }

    fn parts(token: &[u8]) -> Vec<String> {
        std::str::from_utf8(token)
            .unwrap()
            .split('.')
            .map(str::to_owned)
            .collect()
    }

    fn join(parts: &[String]) -> Vec<u8> {
        parts.join(".").into_bytes()
    }

    fn shared() -> SharedKey {
        SharedKey::parse(SHARED).unwrap()
    }

    /// `SECRET` sealed to the shared key, compact.
    fn sealed_to_shared() -> Vec<u8> {
        encrypt(
            SECRET,
            None,
            &Recipient::Direct(shared()),
            Serialization::Compact,
        )
        .unwrap()
    }

    fn open_shared(input: &[u8]) -> Result<Decrypted, JweError> {
        decrypt(input, DecryptWith::Shared(&shared()), &ACCEPT_PAYLOAD)
    }

    fn dir_header() -> Value {
        json!({ "alg": "dir", "enc": "A256GCM" })
    }

    /// AES-GCM with a fixed IV, for hand-built messages.
    fn gcm_seal(cek: &[u8], aad: &[u8], plaintext: &[u8]) -> ([u8; 12], Vec<u8>, Vec<u8>) {
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
    fn seal_compact(header: &Value, encrypted_key: &[u8], cek: &[u8], plaintext: &[u8]) -> Vec<u8> {
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
    fn seal_flattened(
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
    fn flip(token: &[u8], part: usize) -> Vec<u8> {
        let mut parts = parts(token);
        let mut bytes = B64.decode(&parts[part]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        parts[part] = b64(bytes);
        join(&parts)
    }

    fn vector(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn both_forms(vector: &Value) -> [(Vec<u8>, Serialization); 2] {
        [
            (
                vector["compact"].as_str().unwrap().as_bytes().to_vec(),
                Serialization::Compact,
            ),
            (
                serde_json::to_vec(&vector["flattened"]).unwrap(),
                Serialization::Flattened,
            ),
        ]
    }

    /// RFC 7520 publishes its RSA key as a JWK; aws-lc-rs builds it from the
    /// components and the result goes through the normal PEM path.
    fn rsa_key_from_jwk(jwk: &Value) -> JweKey {
        let c = |name: &str| unb64(&jwk[name]);
        let components = rsa::KeyPairComponents {
            public_key: rsa::PublicKeyComponents {
                n: c("n"),
                e: c("e"),
            },
            d: c("d"),
            p: c("p"),
            q: c("q"),
            dP: c("dp"),
            dQ: c("dq"),
            qInv: c("qi"),
        };
        let pkcs8 = rsa::KeyPair::from_components(&components)
            .unwrap()
            .as_der()
            .unwrap();
        fixtures::key(
            jwk["kid"].as_str().unwrap(),
            &fixtures::pem("PRIVATE KEY", pkcs8.as_ref()),
        )
    }

    #[test]
    fn rfc7520_5_2_rsa_oaep_with_a256gcm() {
        let vector = vector(RFC7520_5_2);
        let key = rsa_key_from_jwk(&vector["key"]);
        for (input, serialization) in both_forms(&vector) {
            let out = decrypt(&input, DecryptWith::Keys(from_ref(&key)), &ACCEPT_PAYLOAD).unwrap();
            assert_eq!(
                out.plaintext,
                vector["plaintext"].as_str().unwrap().as_bytes()
            );
            assert_eq!(out.alg, KeyAlg::RsaOaep);
            assert_eq!(out.enc, ContentEnc::A256Gcm);
            assert_eq!(out.kid.as_deref(), Some("samwise.gamgee@hobbiton.example"));
            assert_eq!(out.cty, None);
            assert_eq!(out.serialization, serialization);
            // RSA-OAEP with SHA-1 is for payloads only.
            let token = decrypt(&input, DecryptWith::Keys(from_ref(&key)), &ACCEPT_TOKEN);
            assert!(matches!(
                token,
                Err(JweError::NotAccepted { param: "alg", .. })
            ));
        }
    }

    /// The §5.4 vector uses P-384, which the policy does not accept, so the
    /// pipeline is exercised step by step with a test-side P-384 agreement:
    /// parsing, header policy, the Concat KDF, AES key unwrap and AES-GCM.
    #[test]
    fn rfc7520_5_4_ecdh_es_a128kw_with_a128gcm() {
        let vector = vector(RFC7520_5_4);
        let private = agreement::PrivateKey::from_private_key(
            &agreement::ECDH_P384,
            &unb64(&vector["key"]["d"]),
        )
        .unwrap();
        let plaintext = vector["plaintext"].as_str().unwrap().as_bytes();
        for (input, serialization) in both_forms(&vector) {
            let message = Message::parse(&input, &ACCEPT_PAYLOAD).unwrap();
            assert_eq!(message.header.alg, KeyAlg::EcdhEsA128Kw);
            assert_eq!(message.header.enc, ContentEnc::A128Gcm);
            assert_eq!(message.serialization, serialization);
            let epk = message.header.epk.as_ref().unwrap();
            let mut point = vec![4u8];
            point.extend(unb64(&epk["x"]));
            point.extend(unb64(&epk["y"]));
            let mut kek = [0u8; 16];
            agreement::agree(
                &private,
                UnparsedPublicKey::new(&agreement::ECDH_P384, &point),
                (),
                |z| concat_kdf(z, "ECDH-ES+A128KW", &[], &[], &mut kek).map_err(|_| ()),
            )
            .unwrap();
            let cek = kw_unwrap(&kek, &message.encrypted_key, 16).unwrap();
            assert_eq!(cek.0, unb64(&vector["cek"]));
            assert_eq!(open(&message, &cek.0).unwrap(), plaintext);

            // Through the public API the P-384 epk is refused outright.
            let key = fixtures::key("peregrin.took@tuckborough.example", EC_A_SEC1);
            let refused = decrypt(&input, DecryptWith::Keys(from_ref(&key)), &ACCEPT_PAYLOAD);
            assert!(matches!(refused, Err(JweError::BadEpk(_))), "{refused:?}");
        }
    }

    /// The §5.6 key is 128-bit while a [`SharedKey`] is always 256-bit, so
    /// the `dir` path is driven with the raw key bytes.
    #[test]
    fn rfc7520_5_6_dir_with_a128gcm() {
        let vector = vector(RFC7520_5_6);
        let key = unb64(&vector["key"]["k"]);
        for (input, serialization) in both_forms(&vector) {
            let message = Message::parse(&input, &ACCEPT_PAYLOAD).unwrap();
            let out = decrypt_direct(&message, &key).unwrap();
            assert_eq!(
                out.plaintext,
                vector["plaintext"].as_str().unwrap().as_bytes()
            );
            assert_eq!((out.alg, out.enc), (KeyAlg::Dir, ContentEnc::A128Gcm));
            assert_eq!(
                out.kid.as_deref(),
                Some("77c7e2b8-6e13-45cf-8672-617b5b45243a")
            );
            assert_eq!(out.serialization, serialization);
            assert!(matches!(open_shared(&input), Err(JweError::KeyMismatch(_))));
        }
    }

    /// RFC 7518 Appendix C: P-256 ECDH and the Concat KDF, known answer.
    #[test]
    fn rfc7518_appendix_c_ecdh_and_concat_kdf() {
        let bob_d = B64
            .decode("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw")
            .unwrap();
        let bob = agreement::PrivateKey::from_private_key(&ECDH_P256, &bob_d).unwrap();
        let mut alice = vec![4u8];
        alice.extend(
            B64.decode("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0")
                .unwrap(),
        );
        alice.extend(
            B64.decode("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps")
                .unwrap(),
        );
        let mut derived = [0u8; 16];
        agreement::agree(&bob, UnparsedPublicKey::new(&ECDH_P256, &alice), (), |z| {
            concat_kdf(z, "A128GCM", b"Alice", b"Bob", &mut derived).map_err(|_| ())
        })
        .unwrap();
        assert_eq!(b64(derived), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn round_trips_every_mode_and_serialization() {
        let (rsa, ec, shared) = (rsa_a(), ec_a(), shared());
        let plaintexts = [Vec::new(), SECRET.to_vec(), vec![0x5a; 70_000]];
        for serialization in [Serialization::Compact, Serialization::Flattened] {
            for (key, alg) in [(&rsa, KeyAlg::RsaOaep256), (&ec, KeyAlg::EcdhEsA256Kw)] {
                for plaintext in &plaintexts {
                    let jwe =
                        encrypt_to_jwe_key(plaintext, Some("json"), key, serialization).unwrap();
                    let out =
                        decrypt(&jwe, DecryptWith::Keys(from_ref(key)), &ACCEPT_TOKEN).unwrap();
                    assert_eq!(&out.plaintext, plaintext);
                    assert_eq!(out.cty.as_deref(), Some("json"));
                    assert_eq!((out.alg, out.enc), (alg, ContentEnc::A256Gcm));
                    assert_eq!(out.kid.as_deref(), Some(key.kid.as_str()));
                    assert_eq!(out.serialization, serialization);
                }
            }
            for plaintext in &plaintexts {
                let jwe = encrypt(
                    plaintext,
                    None,
                    &Recipient::Direct(shared.clone()),
                    serialization,
                )
                .unwrap();
                let out = decrypt(&jwe, DecryptWith::Shared(&shared), &ACCEPT_PAYLOAD).unwrap();
                assert_eq!(&out.plaintext, plaintext);
                assert_eq!((out.alg, out.enc), (KeyAlg::Dir, ContentEnc::A256Gcm));
                assert_eq!(
                    (out.kid, out.cty, out.serialization),
                    (None, None, serialization)
                );
            }
        }
    }

    #[test]
    fn encrypt_output_has_the_documented_shape() {
        let ec = encrypt_to_jwe_key(SECRET, None, &ec_a(), Serialization::Compact).unwrap();
        let ec = parts(&ec);
        assert_eq!(ec.len(), 5);
        let header: Value = serde_json::from_slice(&B64.decode(&ec[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ECDH-ES+A256KW");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["kid"], "ec-a");
        assert_eq!(header["epk"]["kty"], "EC");
        assert_eq!(header["epk"]["crv"], "P-256");
        assert!(header["epk"].get("d").is_none());
        assert!(header.get("cty").is_none());
        let lengths: Vec<usize> = ec[1..]
            .iter()
            .map(|part| B64.decode(part).unwrap().len())
            .collect();
        assert_eq!(lengths, [40, 12, SECRET.len(), 16]);

        let rsa = encrypt(SECRET, None, &public(RSA_A_SPKI), Serialization::Compact).unwrap();
        let rsa = parts(&rsa);
        let header: Value = serde_json::from_slice(&B64.decode(&rsa[0]).unwrap()).unwrap();
        assert_eq!(header, json!({ "alg": "RSA-OAEP-256", "enc": "A256GCM" }));
        assert_eq!(B64.decode(&rsa[1]).unwrap().len(), 256);

        let dir = encrypt(
            SECRET,
            Some("a/b"),
            &Recipient::Direct(shared()),
            Serialization::Flattened,
        )
        .unwrap();
        let dir: Value = serde_json::from_slice(&dir).unwrap();
        let mut members: Vec<&str> = dir
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["ciphertext", "iv", "protected", "tag"]);
        let header: Value = serde_json::from_slice(&unb64(&dir["protected"])).unwrap();
        assert_eq!(
            header,
            json!({ "alg": "dir", "enc": "A256GCM", "cty": "a/b" })
        );
    }

    #[test]
    fn every_encryption_uses_a_fresh_cek_and_iv() {
        for recipient in [
            public(RSA_A_SPKI),
            public(EC_A_SPKI),
            Recipient::Direct(shared()),
        ] {
            let first = parts(&encrypt(SECRET, None, &recipient, Serialization::Compact).unwrap());
            let second = parts(&encrypt(SECRET, None, &recipient, Serialization::Compact).unwrap());
            assert_ne!(first[2], second[2], "IV reused for {recipient:?}");
            assert_ne!(first[3], second[3], "ciphertext repeated for {recipient:?}");
            match recipient {
                Recipient::Direct(_) => assert_eq!(first[1], ""),
                _ => assert_ne!(first[1], second[1], "CEK reused for {recipient:?}"),
            }
            if matches!(recipient, Recipient::EcP256(_)) {
                assert_ne!(first[0], second[0], "ephemeral key reused");
            }
        }
    }

    #[test]
    fn public_pems_encrypt_to_the_matching_private_keys() {
        let keys = [rsa_b(), ec_b(), rsa_a(), ec_a()];
        for (pem, kid) in [
            (RSA_A_SPKI, "rsa-a"),
            (RSA_A_PKCS1_PUBLIC, "rsa-a"),
            (EC_A_SPKI, "ec-a"),
        ] {
            // No kid in the header: every key of the right type is tried.
            let jwe = encrypt(SECRET, None, &public(pem), Serialization::Flattened).unwrap();
            let out = decrypt(&jwe, DecryptWith::Keys(&keys), &ACCEPT_TOKEN).unwrap();
            assert_eq!(out.plaintext, SECRET);
            assert_eq!(out.kid.as_deref(), Some(kid));
            assert!(decrypt(&jwe, DecryptWith::Keys(&keys[..2]), &ACCEPT_TOKEN).is_err());
        }
    }

    #[test]
    fn a_flipped_bit_in_any_compact_part_is_rejected() {
        let (rsa, ec) = (rsa_a(), ec_a());
        for key in [&rsa, &ec] {
            let token = encrypt_to_jwe_key(SECRET, None, key, Serialization::Compact).unwrap();
            let with = DecryptWith::Keys(from_ref(key));
            assert!(decrypt(&token, with, &ACCEPT_TOKEN).is_ok());
            for part in 0..5 {
                let err = decrypt(&flip(&token, part), with, &ACCEPT_TOKEN).unwrap_err();
                let text = err.to_string();
                assert!(!text.contains("attack at dawn"), "{text}");
                match part {
                    // A damaged RSA-wrapped key must look exactly like a
                    // damaged tag: no padding oracle.
                    1 if key.kid == "rsa-a" => assert!(matches!(err, JweError::Decrypt), "{err}"),
                    1 => assert!(matches!(err, JweError::KeyUnwrap), "{err}"),
                    2.. => assert!(matches!(err, JweError::Decrypt), "{err}"),
                    _ => {}
                }
            }
        }
        let token = sealed_to_shared();
        for part in [0, 2, 3, 4] {
            assert!(open_shared(&flip(&token, part)).is_err(), "part {part}");
        }
    }

    #[test]
    fn a_bad_rsa_encrypted_key_is_indistinguishable_from_a_bad_tag() {
        let key = rsa_a();
        let token = encrypt_to_jwe_key(SECRET, None, &key, Serialization::Compact).unwrap();
        let mut wrong_length = parts(&token);
        wrong_length[1] = b64([1u8; 100]);
        let mut not_oaep = parts(&token);
        not_oaep[1] = b64([0u8; 256]);
        for input in [join(&wrong_length), join(&not_oaep), flip(&token, 4)] {
            let err =
                decrypt(&input, DecryptWith::Keys(from_ref(&key)), &ACCEPT_TOKEN).unwrap_err();
            assert!(matches!(err, JweError::Decrypt), "{err}");
        }
    }

    #[test]
    fn truncated_input_is_rejected() {
        let key = rsa_a();
        for serialization in [Serialization::Compact, Serialization::Flattened] {
            let token = encrypt_to_jwe_key(SECRET, None, &key, serialization).unwrap();
            for len in 0..token.len() {
                let result = decrypt(
                    &token[..len],
                    DecryptWith::Keys(from_ref(&key)),
                    &ACCEPT_TOKEN,
                );
                assert!(
                    result.is_err(),
                    "{serialization:?} prefix of {len} bytes accepted"
                );
            }
        }
    }

    #[test]
    fn wrong_key_and_unknown_kid_are_rejected() {
        let rsa_token = encrypt_to_jwe_key(SECRET, None, &rsa_a(), Serialization::Compact).unwrap();
        let ec_token = encrypt_to_jwe_key(SECRET, None, &ec_a(), Serialization::Compact).unwrap();
        // The right kid on the wrong key material.
        let impostors = [
            fixtures::key("rsa-a", RSA_B_PKCS8),
            fixtures::key("ec-a", EC_B_SEC1),
        ];
        let with = DecryptWith::Keys(&impostors);
        assert!(matches!(
            decrypt(&rsa_token, with, &ACCEPT_TOKEN),
            Err(JweError::Decrypt)
        ));
        assert!(matches!(
            decrypt(&ec_token, with, &ACCEPT_TOKEN),
            Err(JweError::KeyUnwrap)
        ));
        let others = [rsa_b(), ec_b()];
        for token in [&rsa_token, &ec_token] {
            let result = decrypt(token, DecryptWith::Keys(&others), &ACCEPT_TOKEN);
            assert!(matches!(result, Err(JweError::UnknownKid(_))));
        }
        let dir = sealed_to_shared();
        let other = SharedKey::parse(&b64([0xee; 32])).unwrap();
        let result = decrypt(&dir, DecryptWith::Shared(&other), &ACCEPT_PAYLOAD);
        assert!(matches!(result, Err(JweError::Decrypt)));
    }

    #[test]
    fn algorithms_outside_accept_are_refused() {
        // dir is a payload mode, never a token mode.
        let dir = sealed_to_shared();
        let result = decrypt(&dir, DecryptWith::Shared(&shared()), &ACCEPT_TOKEN);
        assert!(matches!(
            result,
            Err(JweError::NotAccepted { param: "alg", .. })
        ));
        // A128GCM is accepted for payloads only.
        let header = json!({ "alg": "RSA-OAEP-256", "enc": "A128GCM" });
        let a128 = seal_compact(&header, &[1; 256], &[1; 16], SECRET);
        let result = decrypt(&a128, DecryptWith::Keys(&[rsa_a()]), &ACCEPT_TOKEN);
        assert!(matches!(
            result,
            Err(JweError::NotAccepted { param: "enc", .. })
        ));
        let cases = [
            ("RSA1_5", "A256GCM", "alg"),
            ("ECDH-ES", "A256GCM", "alg"),
            ("A256KW", "A256GCM", "alg"),
            ("none", "A256GCM", "alg"),
            ("dir", "A128CBC-HS256", "enc"),
            ("dir", "a256gcm", "enc"),
        ];
        for (alg, enc, param) in cases {
            let token = seal_compact(&json!({ "alg": alg, "enc": enc }), &[], &[1; 32], SECRET);
            let result = open_shared(&token);
            assert!(
                matches!(&result, Err(JweError::NotAccepted { param: p, .. }) if *p == param),
                "{alg}/{enc}: {result:?}"
            );
        }
    }

    #[test]
    fn ecdh_es_a128kw_with_apu_and_apv_is_payload_only() {
        let key = ec_a();
        let Recipient::EcP256(public) = &key.public else {
            panic!("EC key")
        };
        let ephemeral = agreement::PrivateKey::generate(&ECDH_P256).unwrap();
        let point = ephemeral.compute_public_key().unwrap();
        let token_for = |apu: &[u8]| {
            let mut kek = [0u8; 16];
            agreement::agree(&ephemeral, public.0.clone(), (), |z| {
                concat_kdf(z, "ECDH-ES+A128KW", b"Alice", b"Bob", &mut kek).map_err(|_| ())
            })
            .unwrap();
            let cek = [3u8; 16];
            let mut wrapped = [0u8; 24];
            KeyEncryptionKey::new(&AES_128, &kek)
                .unwrap()
                .wrap(&cek, &mut wrapped)
                .unwrap();
            let header = json!({
                "alg": "ECDH-ES+A128KW",
                "enc": "A128GCM",
                "kid": "ec-a",
                "apu": b64(apu),
                "apv": b64("Bob"),
                "epk": {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64(&point.as_ref()[1..33]),
                    "y": b64(&point.as_ref()[33..]),
                },
            });
            seal_compact(&header, &wrapped, &cek, SECRET)
        };
        let with = DecryptWith::Keys(from_ref(&key));
        let out = decrypt(&token_for(b"Alice"), with, &ACCEPT_PAYLOAD).unwrap();
        assert_eq!(out.plaintext, SECRET);
        assert_eq!(
            (out.alg, out.enc),
            (KeyAlg::EcdhEsA128Kw, ContentEnc::A128Gcm)
        );
        let result = decrypt(&token_for(b"Alice"), with, &ACCEPT_TOKEN);
        assert!(matches!(result, Err(JweError::NotAccepted { .. })));
        // apu is bound into the key-wrapping key.
        let result = decrypt(&token_for(b"Mallory"), with, &ACCEPT_PAYLOAD);
        assert!(matches!(result, Err(JweError::KeyUnwrap)));
    }

    #[test]
    fn zip_and_crit_are_refused() {
        let key = *shared().as_bytes();
        for extra in [
            json!({ "zip": "DEF" }),
            json!({ "crit": ["exp"], "exp": 1 }),
            json!({ "crit": [] }),
        ] {
            let mut header = dir_header();
            for (name, value) in extra.as_object().unwrap() {
                header[name] = value.clone();
            }
            let result = open_shared(&seal_compact(&header, &[], &key, SECRET));
            assert!(matches!(result, Err(JweError::Unsupported(_))), "{extra}");
        }
    }

    #[test]
    fn protected_header_size_is_limited_to_8_kib() {
        let key = *shared().as_bytes();
        let mut header = dir_header();
        header["pad"] = json!("x".repeat(8100));
        assert!(open_shared(&seal_compact(&header, &[], &key, SECRET)).is_ok());
        header["pad"] = json!("x".repeat(8200));
        let result = open_shared(&seal_compact(&header, &[], &key, SECRET));
        assert!(matches!(result, Err(JweError::HeaderTooLarge(_))));
        header["pad"] = json!("x".repeat(100_000));
        let result = open_shared(&seal_compact(&header, &[], &key, SECRET));
        assert!(matches!(result, Err(JweError::HeaderTooLarge(_))));
    }

    #[test]
    fn header_must_be_an_object_with_unique_names_and_string_params() {
        let headers: [&[u8]; 8] = [
            b"[]",
            b"\"dir\"",
            b"{",
            b"",
            br#"{"alg":"dir","enc":"A256GCM","alg":"dir"}"#,
            br#"{"alg":1,"enc":"A256GCM"}"#,
            br#"{"enc":"A256GCM"}"#,
            br#"{"alg":"dir","enc":"A256GCM","kid":7}"#,
        ];
        for protected in headers {
            let token = format!(
                "{}..{}.{}.{}",
                b64(protected),
                b64([0; 12]),
                b64("x"),
                b64([0; 16])
            );
            let result = open_shared(token.as_bytes());
            assert!(
                matches!(result, Err(JweError::Header(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(protected)
            );
        }
    }

    #[test]
    fn key_type_must_match_alg() {
        let (rsa, ec) = (rsa_a(), ec_a());
        let ec_token = encrypt_to_jwe_key(SECRET, None, &ec, Serialization::Compact).unwrap();
        // An RSA key under the kid the ECDH token names.
        let rsa_named_ec = [fixtures::key("ec-a", RSA_A_PKCS8)];
        let result = decrypt(&ec_token, DecryptWith::Keys(&rsa_named_ec), &ACCEPT_TOKEN);
        assert!(matches!(result, Err(JweError::KeyMismatch(_))));
        // No kid and no key of the right type.
        let anonymous = encrypt(SECRET, None, &public(EC_A_SPKI), Serialization::Compact).unwrap();
        let result = decrypt(&anonymous, DecryptWith::Keys(from_ref(&rsa)), &ACCEPT_TOKEN);
        assert!(matches!(result, Err(JweError::NoKey(_))));
        let result = decrypt(&anonymous, DecryptWith::Keys(&[]), &ACCEPT_TOKEN);
        assert!(matches!(result, Err(JweError::NoKey(_))));
        // A shared key only does dir; key pairs never do.
        let result = decrypt(&anonymous, DecryptWith::Shared(&shared()), &ACCEPT_TOKEN);
        assert!(matches!(result, Err(JweError::KeyMismatch(_))));
        let dir = sealed_to_shared();
        let result = decrypt(&dir, DecryptWith::Keys(&[rsa, ec]), &ACCEPT_PAYLOAD);
        assert!(matches!(result, Err(JweError::KeyMismatch(_))));
    }

    #[test]
    fn encrypted_key_presence_must_match_alg() {
        let key = *shared().as_bytes();
        let dir = seal_compact(&dir_header(), &[1, 2, 3, 4], &key, SECRET);
        assert!(matches!(open_shared(&dir), Err(JweError::Malformed(_))));
        let rsa = rsa_a();
        let mut token =
            parts(&encrypt_to_jwe_key(SECRET, None, &rsa, Serialization::Compact).unwrap());
        token[1].clear();
        let result = decrypt(
            &join(&token),
            DecryptWith::Keys(from_ref(&rsa)),
            &ACCEPT_TOKEN,
        );
        assert!(matches!(result, Err(JweError::Malformed(_))));
    }

    #[test]
    fn bad_epk_is_refused() {
        let key = ec_a();
        let token = encrypt_to_jwe_key(SECRET, None, &key, Serialization::Compact).unwrap();
        let with_header = |edit: &dyn Fn(&mut Value)| {
            let mut parts = parts(&token);
            let mut header: Value =
                serde_json::from_slice(&B64.decode(&parts[0]).unwrap()).unwrap();
            edit(&mut header);
            parts[0] = b64(serde_json::to_vec(&header).unwrap());
            decrypt(
                &join(&parts),
                DecryptWith::Keys(from_ref(&key)),
                &ACCEPT_TOKEN,
            )
        };
        let off_curve = with_header(&|header| {
            let mut y = unb64(&header["epk"]["y"]);
            y[31] ^= 1;
            header["epk"]["y"] = json!(b64(y));
        });
        assert!(
            matches!(off_curve, Err(JweError::BadEpk(_))),
            "{off_curve:?}"
        );
        let zero = with_header(&|header| {
            header["epk"]["x"] = json!(b64([0; 32]));
            header["epk"]["y"] = json!(b64([0; 32]));
        });
        assert!(matches!(zero, Err(JweError::BadEpk(_))), "{zero:?}");
        let edits: [&dyn Fn(&mut Value); 5] = [
            &|header| header["epk"]["crv"] = json!("P-384"),
            &|header| header["epk"]["kty"] = json!("OKP"),
            &|header| header["epk"]["x"] = json!(1),
            &|header| header["epk"] = json!("not an object"),
            &|header| {
                header.as_object_mut().unwrap().remove("epk");
            },
        ];
        for edit in edits {
            let result = with_header(edit);
            assert!(matches!(result, Err(JweError::BadEpk(_))), "{result:?}");
        }
        let short = with_header(&|header| header["epk"]["x"] = json!(b64([1; 31])));
        assert!(
            matches!(short, Err(JweError::BadLength { what: "epk x", .. })),
            "{short:?}"
        );
    }

    #[test]
    fn compact_must_be_five_strict_base64url_parts() {
        let key = rsa_a();
        let token = encrypt_to_jwe_key(SECRET, None, &key, Serialization::Compact).unwrap();
        let p = parts(&token);
        let check = |input: &[u8]| decrypt(input, DecryptWith::Keys(from_ref(&key)), &ACCEPT_TOKEN);
        assert!(matches!(check(&join(&p[..4])), Err(JweError::Malformed(_))));
        assert!(matches!(
            check(&[&token[..], b".AAAA"].concat()),
            Err(JweError::Malformed(_))
        ));
        assert!(matches!(
            check(b"...."),
            Err(JweError::Base64(_) | JweError::Header(_))
        ));

        // Tag: 16 bytes in 22 characters leave 4 bits that must be zero.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut non_canonical = p.clone();
        let last = non_canonical[4].pop().unwrap();
        let index = ALPHABET.iter().position(|&c| c == last as u8).unwrap();
        non_canonical[4].push(ALPHABET[index | 1] as char);
        let mut standard_alphabet = p.clone();
        standard_alphabet[2] = "AAAAAAAAAAAAAAA+".to_owned();
        let mut padded = p.clone();
        padded[4].push_str("==");
        let mut spaced = p.clone();
        spaced[3].insert(1, ' ');
        let bad_base64 = [
            join(&non_canonical),
            join(&standard_alphabet),
            join(&padded),
            join(&spaced),
            [&token[..], b"\n"].concat(),
            [b" ", &token[..]].concat(),
            [&token[..], "é".as_bytes()].concat(),
        ];
        for input in bad_base64 {
            let result = check(&input);
            assert!(matches!(result, Err(JweError::Base64(_))), "{result:?}");
        }

        let mut long_iv = p.clone();
        long_iv[2] = b64([0; 16]);
        let result = check(&join(&long_iv));
        assert!(matches!(
            result,
            Err(JweError::BadLength { what: "iv", .. })
        ));
        let mut short_tag = p;
        short_tag[4] = b64([0; 15]);
        let result = check(&join(&short_tag));
        assert!(matches!(
            result,
            Err(JweError::BadLength { what: "tag", .. })
        ));
    }

    #[test]
    fn flattened_headers_are_merged_and_aad_is_authenticated() {
        let input = seal_flattened(
            &dir_header(),
            Some(json!({ "kid": "shared-1" })),
            Some(json!({ "x-note": "ignored" })),
            Some("extra"),
        );
        let out = open_shared(&input).unwrap();
        assert_eq!(out.plaintext, SECRET);
        assert_eq!(out.kid.as_deref(), Some("shared-1"));
        assert_eq!(out.serialization, Serialization::Flattened);
        // Leading whitespace is fine, unknown members are ignored (RFC 7516 §7.2.1).
        let mut json: Value = serde_json::from_slice(&input).unwrap();
        json["x-vendor"] = json!({ "anything": true });
        let padded = [b" \n\t".as_slice(), &serde_json::to_vec(&json).unwrap()].concat();
        assert!(open_shared(&padded).is_ok());

        let edited = |edit: &dyn Fn(&mut Value)| {
            let mut json: Value = serde_json::from_slice(&input).unwrap();
            edit(&mut json);
            open_shared(&serde_json::to_vec(&json).unwrap())
        };
        let other_aad = edited(&|json| json["aad"] = json!(b64("other")));
        assert!(matches!(other_aad, Err(JweError::Decrypt)));
        let no_aad = edited(&|json| {
            json.as_object_mut().unwrap().remove("aad");
        });
        assert!(matches!(no_aad, Err(JweError::Decrypt)));
        let bad_aad = edited(&|json| json["aad"] = json!("not base64url!"));
        assert!(matches!(bad_aad, Err(JweError::Base64("aad"))));
        let general = edited(&|json| json["recipients"] = json!([]));
        assert!(matches!(general, Err(JweError::Malformed(_))));
        for member in ["protected", "iv", "ciphertext", "tag"] {
            let missing = edited(&|json| {
                json.as_object_mut().unwrap().remove(member);
            });
            assert!(matches!(missing, Err(JweError::Malformed(_))), "{member}");
        }
        let not_object = edited(&|json| json["header"] = json!(["alg"]));
        assert!(matches!(not_object, Err(JweError::Json(_))));

        // alg may sit in the per-recipient header; enc must be protected.
        let split = seal_flattened(
            &json!({ "enc": "A256GCM" }),
            None,
            Some(json!({ "alg": "dir" })),
            None,
        );
        assert!(open_shared(&split).is_ok());
        let refused = [
            seal_flattened(
                &json!({ "alg": "dir" }),
                Some(json!({ "enc": "A256GCM" })),
                None,
                None,
            ),
            seal_flattened(&dir_header(), Some(json!({ "alg": "dir" })), None, None),
            seal_flattened(
                &dir_header(),
                Some(json!({ "kid": "a" })),
                Some(json!({ "kid": "b" })),
                None,
            ),
        ];
        for input in refused {
            assert!(matches!(open_shared(&input), Err(JweError::Header(_))));
        }
        let crit = seal_flattened(&dir_header(), None, Some(json!({ "crit": ["b64"] })), None);
        assert!(matches!(
            open_shared(&crit),
            Err(JweError::Unsupported("crit"))
        ));
        let zip = seal_flattened(&dir_header(), Some(json!({ "zip": "DEF" })), None, None);
        assert!(matches!(
            open_shared(&zip),
            Err(JweError::Unsupported("zip"))
        ));
    }

    #[test]
    fn flattened_json_duplicates_and_garbage_are_refused() {
        let input = String::from_utf8(seal_flattened(&dir_header(), None, None, None)).unwrap();
        let duplicate = input.replacen("{", r#"{"iv":"AAAAAAAAAAAAAAAA","#, 1);
        assert!(matches!(
            open_shared(duplicate.as_bytes()),
            Err(JweError::Json(_))
        ));
        let duplicate_header = input.replacen("{", r#"{"unprotected":{"kid":"a","kid":"b"},"#, 1);
        assert!(matches!(
            open_shared(duplicate_header.as_bytes()),
            Err(JweError::Json(_))
        ));
        for garbage in ["{", "{}", "{\"protected\":1}", "[]", ""] {
            assert!(open_shared(garbage.as_bytes()).is_err(), "{garbage}");
        }
    }

    #[test]
    fn debug_of_decrypted_hides_the_plaintext() {
        let jwe = sealed_to_shared();
        let text = format!("{:?}", open_shared(&jwe).unwrap());
        assert!(
            !text.contains("attack") && text.contains("plaintext_len"),
            "{text}"
        );
    }

    /// Runs the joserfc helper script on a batch of requests.
    fn joserfc(requests: &Value) -> Vec<String> {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let spawned = Command::new("python3")
            .args(["-c", INTEROP_SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child =
            spawned.expect("this test needs python3 with joserfc (pip install joserfc)");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(&serde_json::to_vec(requests).unwrap())
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "joserfc helper failed (this test needs python3 with joserfc: pip install joserfc):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Interop with an independent implementation (joserfc), both ways,
    /// for every mode and both serializations.
    #[test]
    fn interoperates_with_joserfc() {
        let keys = [rsa_a(), ec_a()];
        let private = |kty: &str| match kty {
            "RSA" => json!({ "kty": "RSA", "pem": RSA_A_PKCS8 }),
            "EC" => json!({ "kty": "EC", "pem": EC_A_PKCS8 }),
            _ => json!({ "shared": SHARED }),
        };
        let serializations = [Serialization::Compact, Serialization::Flattened];

        // Ours -> joserfc.
        let mut requests = Vec::new();
        for (recipient, kty) in [
            (public(RSA_A_SPKI), "RSA"),
            (public(EC_A_SPKI), "EC"),
            (Recipient::Direct(shared()), "oct"),
        ] {
            for serialization in serializations {
                let jwe = encrypt(SECRET, Some("text/plain"), &recipient, serialization).unwrap();
                let mut request = private(kty);
                request["op"] = json!("decrypt");
                request["jwe"] = json!(String::from_utf8(jwe).unwrap());
                requests.push(request);
            }
        }
        let plaintexts = joserfc(&Value::Array(requests));
        assert_eq!(plaintexts.len(), 6);
        for plaintext in plaintexts {
            assert_eq!(plaintext, hex::encode(SECRET));
        }

        // joserfc -> ours; flattened messages carry aad, an unprotected
        // kid and a per-recipient alg (and epk).
        let modes = [
            ("RSA-OAEP-256", "A256GCM", "RSA"),
            ("RSA-OAEP-256", "A128GCM", "RSA"),
            ("RSA-OAEP", "A256GCM", "RSA"),
            ("ECDH-ES+A256KW", "A256GCM", "EC"),
            ("ECDH-ES+A128KW", "A128GCM", "EC"),
            ("dir", "A256GCM", "oct"),
        ];
        let mut requests = Vec::new();
        for (alg, enc, kty) in modes {
            for serialization in ["compact", "flattened"] {
                let mut request = match kty {
                    "RSA" => json!({ "kty": "RSA", "pem": RSA_A_SPKI }),
                    "EC" => json!({ "kty": "EC", "pem": EC_A_SPKI }),
                    _ => json!({ "shared": SHARED }),
                };
                request["op"] = json!("encrypt");
                request["alg"] = json!(alg);
                request["enc"] = json!(enc);
                request["ser"] = json!(serialization);
                request["plaintext"] = json!(hex::encode(SECRET));
                if serialization == "flattened" {
                    let kid = if kty == "EC" { "ec-a" } else { "rsa-a" };
                    request["unprotected"] = json!({ "kid": kid });
                    request["aad"] = json!("extra");
                }
                requests.push(request);
            }
        }
        let messages = joserfc(&Value::Array(requests));
        let mut index = 0;
        for (alg, enc, kty) in modes {
            for serialization in serializations {
                let input = messages[index].as_bytes();
                index += 1;
                let shared = shared();
                let with = if kty == "oct" {
                    DecryptWith::Shared(&shared)
                } else {
                    DecryptWith::Keys(&keys)
                };
                let result = decrypt(input, with, &ACCEPT_PAYLOAD);
                let out =
                    result.unwrap_or_else(|err| panic!("{alg}/{enc} {serialization:?}: {err}"));
                assert_eq!(out.plaintext, SECRET, "{alg}/{enc}");
                assert_eq!(
                    (out.alg.name(), out.enc.name(), out.serialization),
                    (alg, enc, serialization)
                );
            }
        }
    }
}
