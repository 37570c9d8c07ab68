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

use super::keys::{JweKey, PrivateKey, Recipient, SharedKey, wipe};

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
    let (cek, encrypted_key) = match to {
        Recipient::Direct(shared) => {
            header.insert("alg".into(), KeyAlg::Dir.name().into());
            (Secret(shared.as_bytes().to_vec()), Vec::new())
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
            (cek, wrapped)
        }
        Recipient::EcP256(public) => {
            let alg = KeyAlg::EcdhEsA256Kw;
            header.insert("alg".into(), alg.name().into());
            let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new())
                .map_err(|_| JweError::Crypto("ephemeral key generation failed"))?;
            let point = ephemeral
                .compute_public_key()
                .map_err(|_| JweError::Crypto("ephemeral public key failed"))?;
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
            let cek = Secret::random(enc.cek_len())?;
            let mut wrapped = vec![0; cek.0.len() + KW_OVERHEAD];
            key_encryption_key(&kek.0)?
                .wrap(&cek.0, &mut wrapped)
                .map_err(|_| JweError::Crypto("AES key wrap failed"))?;
            (cek, wrapped)
        }
    };
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
