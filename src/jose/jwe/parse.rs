//! Parsing a JWE into a [`Message`]: the compact and flattened JSON
//! serializations, the JOSE header and the policy applied to it (the
//! caller's [`Accept`] list, `zip`, `crit`, header size, unique member
//! names), and strict base64url. Touches no key: everything here happens
//! before any key is used.

use std::fmt;

use aws_lc_rs::aead::NONCE_LEN;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{Accept, ContentEnc, Decrypted, JweError, KeyAlg, MAX_PROTECTED_HEADER, Serialization};

const TAG_LEN: usize = 16;

/// The validated header parameters this module acts on.
pub(super) struct Header {
    pub(super) alg: KeyAlg,
    pub(super) enc: ContentEnc,
    pub(super) kid: Option<String>,
    pub(super) cty: Option<String>,
    pub(super) epk: Option<Value>,
    pub(super) apu: Option<String>,
    pub(super) apv: Option<String>,
}

/// A parsed JWE whose header passed policy, not yet decrypted.
pub(super) struct Message {
    pub(super) header: Header,
    pub(super) encrypted_key: Vec<u8>,
    pub(super) iv: [u8; NONCE_LEN],
    pub(super) ciphertext: Vec<u8>,
    pub(super) tag: [u8; TAG_LEN],
    /// Additional authenticated data: ASCII(protected) [ "." ASCII(aad) ].
    pub(super) aad: Vec<u8>,
    pub(super) serialization: Serialization,
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

impl Message {
    pub(super) fn parse(input: &[u8], accept: &Accept) -> Result<Message, JweError> {
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

    pub(super) fn decrypted(&self, plaintext: Vec<u8>, kid: Option<String>) -> Decrypted {
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
pub(super) fn decode(b64: &[u8], what: &'static str) -> Result<Vec<u8>, JweError> {
    B64.decode(b64).map_err(|_| JweError::Base64(what))
}

pub(super) fn decode_array<const N: usize>(
    b64: &[u8],
    what: &'static str,
) -> Result<[u8; N], JweError> {
    let bytes = decode(b64, what)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| JweError::BadLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}
