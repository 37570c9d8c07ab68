//! Key material for JWE: the proxy's own decryption keys (policy `jwe_keys`),
//! the keys a response is encrypted to (a client's public key or a shared
//! secret), and the public JWKS document clients fetch to encrypt to us.
//!
//! Parsing and validation are delegated to aws-lc-rs; this module only moves
//! bytes between PEM, DER and JWK forms and enforces the key policy: RSA of at
//! least 2048 bits or EC P-256, and 256-bit shared keys. Nothing here prints
//! key bytes: the `Debug` impls are redacted and [`KeyError`] messages name
//! the problem, never the material.

use std::fmt;

use aws_lc_rs::agreement::{
    self, ECDH_P256, ECDH_P384, ECDH_P521, ParsedPublicKey, UnparsedPublicKey,
};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rsa::{
    self, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey, PublicKeyComponents,
};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use rustls_pemfile::Item;
use serde_json::{Value, json};

/// The `alg` we advertise (and use when encrypting) for RSA keys.
const RSA_ALG: &str = "RSA-OAEP-256";
/// The `alg` we advertise (and use when encrypting) for P-256 keys.
const EC_ALG: &str = "ECDH-ES+A256KW";
/// Smallest RSA modulus the policy accepts; aws-lc-rs enforces the same floor.
const MIN_RSA_BITS: usize = 2048;
/// How `KeyRejected` spells "modulus below 2048 bits"; mapped to a clearer error.
const TOO_SMALL: &str = "TooSmall";

/// Why a key could not be loaded. Messages are written for the operator who
/// edits the policy file, and never contain key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key id (kid) must not be empty")]
    EmptyKid,
    #[error("malformed PEM: {0}")]
    Pem(&'static str),
    #[error("no {0} found in the PEM text (encrypted private keys are not supported)")]
    Missing(&'static str),
    #[error("the PEM text holds more than one {0}; give exactly one")]
    Ambiguous(&'static str),
    #[error("RSA keys must be at least {MIN_RSA_BITS} bits")]
    RsaTooSmall,
    #[error("unsupported elliptic curve: only P-256 is accepted")]
    UnsupportedCurve,
    #[error("{what} rejected ({reason}): expected RSA (>= 2048 bits) or EC P-256")]
    Rejected {
        what: &'static str,
        reason: &'static str,
    },
    #[error("shared key is neither base64url nor standard base64 text")]
    SharedKeyEncoding,
    #[error("shared key must decode to exactly 32 bytes, got {0}")]
    SharedKeyLength(usize),
}

/// The private half of a [`JweKey`], in the form the decryption code needs.
pub(crate) enum PrivateKey {
    Rsa(OaepPrivateDecryptingKey),
    Ec(agreement::PrivateKey),
}

/// One of the proxy's own private keys (policy `jwe_keys`: RSA >= 2048 bits,
/// or EC P-256), by kid.
///
/// The public half is kept alongside so the JWKS document and
/// [`crate::jose::jwe::encrypt_to_jwe_key`] need no further parsing.
pub struct JweKey {
    pub kid: String,
    pub(crate) private: PrivateKey,
    pub(crate) public: Recipient,
    /// Public JWK members (without `kid`), computed once at load time.
    jwk: Value,
}

impl JweKey {
    /// Loads a PEM private key: PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY"
    /// or SEC1 "EC PRIVATE KEY". Other PEM sections (e.g. a certificate next to
    /// the key) are ignored, but exactly one private key must be present so a
    /// bundle can never silently load the wrong one.
    pub fn from_pem(kid: &str, pem: &[u8]) -> Result<JweKey, KeyError> {
        if kid.is_empty() {
            return Err(KeyError::EmptyKid);
        }
        let mut found = None;
        for item in pem_items(pem)? {
            if matches!(
                item,
                Item::Pkcs8Key(_) | Item::Pkcs1Key(_) | Item::Sec1Key(_)
            ) {
                if found.is_some() {
                    return Err(KeyError::Ambiguous("private key"));
                }
                found = Some(item);
            }
        }
        let (private, public, jwk) = match found {
            Some(Item::Pkcs8Key(der)) => from_pkcs8(der.secret_pkcs8_der())?,
            Some(Item::Pkcs1Key(der)) => from_rsa_key_pair(
                rsa::KeyPair::from_der(der.secret_pkcs1_der())
                    .map_err(rsa_rejected("RSA private key"))?,
            )?,
            Some(Item::Sec1Key(der)) => from_ec_der(der.secret_sec1_der())?,
            _ => return Err(KeyError::Missing("private key")),
        };
        Ok(JweKey {
            kid: kid.to_owned(),
            private,
            public,
            jwk,
        })
    }

    /// The RFC 7517 public JWK clients use to encrypt to this key: `kty`,
    /// `kid`, `use: "enc"`, the `alg` we expect, and `n`/`e` or `crv`/`x`/`y`.
    /// Private members are never included.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.jwk.clone();
        if let Value::Object(members) = &mut jwk {
            members.insert("kid".to_owned(), Value::String(self.kid.clone()));
        }
        jwk
    }
}

impl fmt::Debug for JweKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.private {
            PrivateKey::Rsa(_) => "RSA",
            PrivateKey::Ec(_) => "EC P-256",
        };
        f.debug_struct("JweKey")
            .field("kid", &self.kid)
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// The proxy's JWKS document (`{"keys":[...]}`) listing the public halves of
/// its JWE keys, for clients that encrypt requests or tokens to it.
pub fn jwks_document(keys: &[JweKey]) -> String {
    let keys: Vec<Value> = keys.iter().map(JweKey::public_jwk).collect();
    json!({ "keys": keys }).to_string()
}

/// An RSA public key usable for RSA-OAEP-256 key encryption.
pub struct RsaPublicKey(pub(crate) OaepPublicEncryptingKey);

/// An EC P-256 public key (validated on the curve) usable for ECDH-ES.
pub struct EcPublicKey(pub(crate) ParsedPublicKey);

/// Where a response is encrypted to (the client): the app's public key, or a
/// 256-bit key shared with it.
pub enum Recipient {
    Rsa(RsaPublicKey),
    EcP256(EcPublicKey),
    Direct(SharedKey),
}

impl Recipient {
    /// Loads a client public key: SubjectPublicKeyInfo "PUBLIC KEY" (RSA >=
    /// 2048 bits or EC P-256) or PKCS#1 "RSA PUBLIC KEY".
    pub fn from_public_pem(pem: &[u8]) -> Result<Recipient, KeyError> {
        let mut spki = None;
        for item in pem_items(pem)? {
            if let Item::SubjectPublicKeyInfo(der) = item {
                if spki.is_some() {
                    return Err(KeyError::Ambiguous("public key"));
                }
                spki = Some(der);
            }
        }
        if let Some(der) = spki {
            return public_from_spki(der.as_ref());
        }
        // rustls-pemfile skips "RSA PUBLIC KEY" sections, so they are read here.
        match pkcs1_public_section(pem)? {
            Some(der) => public_from_pkcs1(&der),
            None => Err(KeyError::Missing(
                "public key (PUBLIC KEY or RSA PUBLIC KEY)",
            )),
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Recipient::Rsa(_) => "Recipient::Rsa(..)",
            Recipient::EcP256(_) => "Recipient::EcP256(..)",
            Recipient::Direct(_) => "Recipient::Direct(..)",
        })
    }
}

/// A 256-bit key shared with a client for `dir` + A256GCM encryption.
///
/// The bytes are overwritten on drop (best effort without extra crates).
#[derive(Clone)]
pub struct SharedKey([u8; 32]);

impl SharedKey {
    /// Policy form: 32 bytes written as base64url without padding, or as
    /// standard base64 with or without padding. Surrounding whitespace (e.g.
    /// a trailing newline from a secrets file) is ignored; any other length
    /// is an error so a truncated secret is never used.
    pub fn parse(text: &str) -> Result<SharedKey, KeyError> {
        let text = text.trim().as_bytes();
        let mut bytes = [URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or(KeyError::SharedKeyEncoding)?;
        let key = <[u8; 32]>::try_from(bytes.as_slice())
            .map(SharedKey)
            .map_err(|_| KeyError::SharedKeyLength(bytes.len()));
        wipe(&mut bytes);
        key
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for SharedKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

/// Overwrites secret bytes; `black_box` keeps the store from being optimised
/// away as dead.
pub(crate) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// All recognised PEM sections in `pem`.
fn pem_items(pem: &[u8]) -> Result<Vec<Item>, KeyError> {
    let mut items = Vec::new();
    let mut rest = pem;
    while let Some((item, tail)) = rustls_pemfile::read_one_from_slice(rest).map_err(pem_error)? {
        items.push(item);
        rest = tail;
    }
    Ok(items)
}

fn pem_error(err: rustls_pemfile::Error) -> KeyError {
    // The variants carry PEM lines; only the kind of problem is reported.
    KeyError::Pem(match err {
        rustls_pemfile::Error::MissingSectionEnd { .. } => "a section has no END line",
        rustls_pemfile::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        rustls_pemfile::Error::Base64Decode(_) => "a section body is not valid base64",
    })
}

/// Decodes the body of the first "RSA PUBLIC KEY" section, if there is one.
fn pkcs1_public_section(pem: &[u8]) -> Result<Option<Vec<u8>>, KeyError> {
    const BEGIN: &str = "-----BEGIN RSA PUBLIC KEY-----";
    const END: &str = "-----END RSA PUBLIC KEY-----";
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::Pem("not UTF-8 text"))?;
    let Some(start) = text.find(BEGIN) else {
        return Ok(None);
    };
    let body = &text[start + BEGIN.len()..];
    let end = body
        .find(END)
        .ok_or(KeyError::Pem("a section has no END line"))?;
    let b64: Vec<u8> = body[..end]
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map(Some)
        .map_err(|_| KeyError::Pem("a section body is not valid base64"))
}

type Loaded = (PrivateKey, Recipient, Value);

/// PKCS#8 does not say up front which key type it holds: try RSA, then EC.
fn from_pkcs8(der: &[u8]) -> Result<Loaded, KeyError> {
    match rsa::KeyPair::from_pkcs8(der) {
        Ok(pair) => from_rsa_key_pair(pair),
        Err(err) if err.description_() == TOO_SMALL => Err(KeyError::RsaTooSmall),
        Err(_) => from_ec_der(der),
    }
}

/// Builds the decrypting key from a parsed RSA key pair. The pair type is
/// used for parsing because it reads both PKCS#1 and PKCS#8 and exposes
/// `n`/`e` for the JWK; it is then re-encoded as PKCS#8 for the OAEP key.
fn from_rsa_key_pair(pair: rsa::KeyPair) -> Result<Loaded, KeyError> {
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA",
        "use": "enc",
        "alg": RSA_ALG,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    });
    let pkcs8 = pair.as_der().map_err(|_| KeyError::Rejected {
        what: "RSA private key",
        reason: "cannot be re-encoded as PKCS#8",
    })?;
    let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref())
        .map_err(rsa_rejected("RSA private key"))?;
    let public = rsa_recipient(decrypting.public_key())?;
    let private = OaepPrivateDecryptingKey::new(decrypting).map_err(|_| KeyError::Rejected {
        what: "RSA private key",
        reason: "not usable for RSA-OAEP",
    })?;
    Ok((PrivateKey::Rsa(private), public, jwk))
}

/// Reads a P-256 private key from PKCS#8 or SEC1 DER.
fn from_ec_der(der: &[u8]) -> Result<Loaded, KeyError> {
    let private = agreement::PrivateKey::from_private_key_der(&ECDH_P256, der).map_err(|err| {
        if [&ECDH_P384, &ECDH_P521]
            .into_iter()
            .any(|curve| agreement::PrivateKey::from_private_key_der(curve, der).is_ok())
        {
            KeyError::UnsupportedCurve
        } else {
            KeyError::Rejected {
                what: "private key",
                reason: err.description_(),
            }
        }
    })?;
    let point = private
        .compute_public_key()
        .map_err(|_| KeyError::Rejected {
            what: "EC private key",
            reason: "public point cannot be computed",
        })?;
    // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = point.as_ref();
    let (x, y) = point
        .get(1..)
        .filter(|xy| point.first() == Some(&4) && xy.len() == 64)
        .map(|xy| xy.split_at(32))
        .ok_or(KeyError::Rejected {
            what: "EC private key",
            reason: "unexpected public point encoding",
        })?;
    let jwk = json!({
        "kty": "EC",
        "use": "enc",
        "alg": EC_ALG,
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(x),
        "y": URL_SAFE_NO_PAD.encode(y),
    });
    let public = ec_recipient(point)?;
    Ok((PrivateKey::Ec(private), public, jwk))
}

fn public_from_spki(der: &[u8]) -> Result<Recipient, KeyError> {
    match PublicEncryptingKey::from_der(der) {
        Ok(key) => rsa_recipient(key),
        Err(err) if err.description_() == TOO_SMALL => Err(KeyError::RsaTooSmall),
        Err(_) => ec_recipient(der),
    }
}

fn public_from_pkcs1(der: &[u8]) -> Result<Recipient, KeyError> {
    let public = rsa::PublicKey::from_der(der).map_err(rsa_rejected("RSA public key"))?;
    let components = PublicKeyComponents {
        n: public.modulus().big_endian_without_leading_zero(),
        e: public.exponent().big_endian_without_leading_zero(),
    };
    if components.n.len() * 8 < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall);
    }
    let key: PublicEncryptingKey = components.try_into().map_err(|_| KeyError::Rejected {
        what: "RSA public key",
        reason: "unsupported size or exponent",
    })?;
    rsa_recipient(key)
}

fn rsa_recipient(key: PublicEncryptingKey) -> Result<Recipient, KeyError> {
    if key.key_size_bits() < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall);
    }
    OaepPublicEncryptingKey::new(key)
        .map(|key| Recipient::Rsa(RsaPublicKey(key)))
        .map_err(|_| KeyError::Rejected {
            what: "RSA public key",
            reason: "not usable for RSA-OAEP",
        })
}

/// Accepts an SPKI DER or an uncompressed point; aws-lc-rs checks the curve
/// and that the point lies on it.
fn ec_recipient(bytes: &[u8]) -> Result<Recipient, KeyError> {
    ParsedPublicKey::try_from(UnparsedPublicKey::new(&ECDH_P256, bytes))
        .map(|key| Recipient::EcP256(EcPublicKey(key)))
        .map_err(|err| {
            let other_curve = [&ECDH_P384, &ECDH_P521].into_iter().any(|curve| {
                ParsedPublicKey::try_from(UnparsedPublicKey::new(curve, bytes)).is_ok()
            });
            if other_curve {
                KeyError::UnsupportedCurve
            } else {
                KeyError::Rejected {
                    what: "public key",
                    reason: err.description_(),
                }
            }
        })
}

fn rsa_rejected(what: &'static str) -> impl Fn(KeyRejected) -> KeyError {
    move |err| match err.description_() {
        TOO_SMALL => KeyError::RsaTooSmall,
        reason => KeyError::Rejected { what, reason },
    }
}

/// Test-only keys shared by the tests of this module and of `jwe`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{JweKey, Recipient};

    pub const RSA_A_PKCS8: &str = include_str!("../testdata/test_only_rsa2048_a.pkcs8.pem");
    pub const RSA_A_PKCS1: &str = include_str!("../testdata/test_only_rsa2048_a.pkcs1.pem");
    pub const RSA_A_SPKI: &str = include_str!("../testdata/test_only_rsa2048_a.spki.pem");
    pub const RSA_A_PKCS1_PUBLIC: &str =
        include_str!("../testdata/test_only_rsa2048_a.pkcs1pub.pem");
    pub const RSA_B_PKCS8: &str = include_str!("../testdata/test_only_rsa2048_b.pkcs8.pem");
    pub const RSA_1024_PKCS8: &str = include_str!("../testdata/test_only_rsa1024.pkcs8.pem");
    pub const EC_A_SEC1: &str = include_str!("../testdata/test_only_p256_a.sec1.pem");
    pub const EC_A_PKCS8: &str = include_str!("../testdata/test_only_p256_a.pkcs8.pem");
    pub const EC_A_SPKI: &str = include_str!("../testdata/test_only_p256_a.spki.pem");
    pub const EC_B_SEC1: &str = include_str!("../testdata/test_only_p256_b.sec1.pem");
    pub const P384_SEC1: &str = include_str!("../testdata/test_only_p384.sec1.pem");
    pub const P384_SPKI: &str = include_str!("../testdata/test_only_p384.spki.pem");
    /// 32 bytes 0x00..=0x1f, base64url.
    pub const SHARED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    pub fn key(kid: &str, pem: &str) -> JweKey {
        JweKey::from_pem(kid, pem.as_bytes()).expect("fixture key loads")
    }

    pub fn rsa_a() -> JweKey {
        key("rsa-a", RSA_A_PKCS8)
    }

    pub fn rsa_b() -> JweKey {
        key("rsa-b", RSA_B_PKCS8)
    }

    pub fn ec_a() -> JweKey {
        key("ec-a", EC_A_SEC1)
    }

    pub fn ec_b() -> JweKey {
        key("ec-b", EC_B_SEC1)
    }

    pub fn public(pem: &str) -> Recipient {
        Recipient::from_public_pem(pem.as_bytes()).expect("fixture public key loads")
    }

    /// Wraps DER in PEM armour, for keys built from JWK components.
    pub fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}

#[cfg(test)]
mod tests;
