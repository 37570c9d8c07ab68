//! A JWK set (RFC 7517) read into verification keys, and the choice of a key for a token.
//!
//! Only what can verify a signature is kept: RSA, EC P-256/P-384 and Ed25519 public keys
//! whose `use` (when present) is `sig`. `oct` keys are never read, so a JWKS can never hand
//! an HMAC secret to the HS* path (algorithm confusion); private members, `x5u`, `x5c` and
//! `jku` are ignored, never fetched. A key whose own `alg` names another algorithm than a
//! token's is never tried for it.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::jose::PublicKeyKind;

/// At most this many keys are tried for one token (keys without `kid`, or a token without
/// one), so a token cannot make the proxy check a signature against a whole large set.
pub const MAX_TRIES: usize = 8;

/// The RSA modulus must be at least this long (bits), as for PEM keys.
const MIN_RSA_BITS: usize = 2048;

/// One verification key of the set.
pub struct Jwk {
    pub kid: Option<String>,
    kind: PublicKeyKind,
    /// The key's own `alg`, when it names one: then no other algorithm may use it.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl Jwk {
    fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The usable keys of one JWKS document, in document order.
pub struct KeySet {
    keys: Vec<Jwk>,
    /// Keys of the document that were left out (unsupported, `oct`, `use: enc`, malformed).
    pub ignored: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .field("ignored", &self.ignored)
            .finish()
    }
}

impl KeySet {
    /// Reads a JWKS document. A document that is not a JWK set, or has no usable key, is an
    /// error (the last good keys then stay in force); single unusable keys are skipped.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        let mut set = KeySet {
            keys: Vec::with_capacity(keys.len()),
            ignored: 0,
        };
        for k in keys {
            match read_key(k) {
                Some(jwk) => set.keys.push(jwk),
                None => set.ignored += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "JWKS has no usable signature key ({} ignored)",
                set.ignored
            ));
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids in force (`/policy` shows them; never key material).
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// The keys to try for a token with `kid` and `alg`: the keys with that `kid`, else the
    /// keys without one; for a token without `kid`, every key. Only keys that fit `alg`,
    /// at most `MAX_TRIES`. `None` when no key fits at all: the set may be out of date (a
    /// rotation), which is worth a refetch.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Option<Vec<&DecodingKey>> {
        let by_kid: Vec<&Jwk> = match kid {
            Some(kid) => {
                let named: Vec<&Jwk> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    self.keys.iter().filter(|k| k.kid.is_none()).collect()
                } else {
                    // The kid is known: whether its key fits or not, a refetch would not help.
                    return Some(
                        named
                            .into_iter()
                            .filter(|k| k.fits(alg))
                            .take(MAX_TRIES)
                            .map(|k| &k.key)
                            .collect(),
                    );
                }
            }
            None => self.keys.iter().collect(),
        };
        let keys: Vec<&DecodingKey> = by_kid
            .into_iter()
            .filter(|k| k.fits(alg))
            .take(MAX_TRIES)
            .map(|k| &k.key)
            .collect();
        (!keys.is_empty()).then_some(keys)
    }
}

/// One JWK, or `None` when it cannot (or must not) verify a signature.
fn read_key(k: &Value) -> Option<Jwk> {
    let str_of = |name: &str| k.get(name).and_then(Value::as_str);
    if k.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    if let Some(ops) = k.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return None;
        }
    }
    let kid = match k.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return None,
    };
    let alg = match k.get("alg") {
        None => None,
        Some(a) => Some(Algorithm::from_str(a.as_str()?).ok()?),
    };
    let b64 = |name: &str| URL_SAFE_NO_PAD.decode(str_of(name)?).ok();
    let (kind, key) = match str_of("kty")? {
        "RSA" => {
            let n = b64("n")?;
            let e = b64("e")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < MIN_RSA_BITS || e.is_empty() {
                return None;
            }
            (
                PublicKeyKind::Rsa,
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        "EC" => {
            let (kind, len) = match str_of("crv")? {
                "P-256" => (PublicKeyKind::EcP256, 32),
                "P-384" => (PublicKeyKind::EcP384, 48),
                _ => return None,
            };
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            if str_of("crv")? != "Ed25519" {
                return None;
            }
            let x = b64("x")?;
            if x.len() != 32 {
                return None;
            }
            (PublicKeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        // `oct` (a shared secret) and anything else: never a verification key here.
        _ => return None,
    };
    // A key whose declared alg does not fit its own type is broken: leave it out.
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    Some(Jwk {
        kid,
        kind,
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn rsa(extra: Value) -> Value {
        let mut k = json!({ "kty": "RSA", "n": N, "e": "AQAB" });
        k.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        k
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, String> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn a_key_is_chosen_by_kid_and_must_fit_the_alg() {
        let s = set(vec![
            rsa(json!({ "kid": "a", "alg": "RS256" })),
            rsa(json!({ "kid": "b" })),
        ])
        .unwrap();
        assert_eq!(s.kids(), ["a", "b"]);
        assert_eq!(s.candidates(Some("a"), Algorithm::RS256).unwrap().len(), 1);
        // The key's own alg says RS256: PS256 may not use it, and the kid is not unknown.
        assert_eq!(s.candidates(Some("a"), Algorithm::PS256).unwrap().len(), 0);
        assert_eq!(s.candidates(Some("b"), Algorithm::PS256).unwrap().len(), 1);
        // An RSA key never verifies an EC or HMAC algorithm.
        assert_eq!(s.candidates(Some("b"), Algorithm::ES256).unwrap().len(), 0);
        assert_eq!(s.candidates(Some("b"), Algorithm::HS256).unwrap().len(), 0);
        // Unknown kid, no kid-less key: worth a refetch.
        assert!(s.candidates(Some("c"), Algorithm::RS256).is_none());
        // No kid: every fitting key, in order.
        assert_eq!(s.candidates(None, Algorithm::RS256).unwrap().len(), 2);
        assert_eq!(s.candidates(None, Algorithm::PS256).unwrap().len(), 1);
    }

    #[test]
    fn keys_without_kid_are_tried_for_an_unknown_kid() {
        let s = set(vec![rsa(json!({}))]).unwrap();
        assert_eq!(s.candidates(Some("x"), Algorithm::RS256).unwrap().len(), 1);
        assert!(s.candidates(Some("x"), Algorithm::ES256).is_none());
    }

    #[test]
    fn oct_encryption_and_malformed_keys_are_left_out() {
        let s = set(vec![
            json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ1Ng" }),
            rsa(json!({ "kid": "enc", "use": "enc" })),
            rsa(json!({ "kid": "wrap", "key_ops": ["wrapKey"] })),
            rsa(json!({ "kid": "hs", "alg": "HS256" })),
            rsa(json!({ "kid": "es", "alg": "ES256" })),
            rsa(json!({ "kid": "num", "e": 65537 })),
            json!({ "kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB" }),
            json!({ "kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA" }),
            json!({ "kty": "EC", "kid": "short", "crv": "P-256", "x": "AAAA", "y": "AAAA" }),
            json!({ "kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }),
            rsa(json!({ "kid": 7 })),
            rsa(json!({ "kid": "ok", "use": "sig", "key_ops": ["verify"], "d": "private", "x5u": "http://x" })),
        ])
        .unwrap();
        assert_eq!(s.kids(), ["ok"]);
        assert_eq!(s.ignored, 11);
        assert!(s.candidates(Some("hmac"), Algorithm::HS256).is_none());
    }

    #[test]
    fn ec_and_okp_keys_fit_only_their_algorithm() {
        let x32 = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let x48 = URL_SAFE_NO_PAD.encode([1u8; 48]);
        let s = set(vec![
            json!({ "kty": "EC", "kid": "p256", "crv": "P-256", "x": x32, "y": x32 }),
            json!({ "kty": "EC", "kid": "p384", "crv": "P-384", "x": x48, "y": x48 }),
            json!({ "kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": x32 }),
        ])
        .unwrap();
        for (kid, alg) in [
            ("p256", Algorithm::ES256),
            ("p384", Algorithm::ES384),
            ("ed", Algorithm::EdDSA),
        ] {
            for other in [
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::EdDSA,
                Algorithm::RS256,
            ] {
                let n = s.candidates(Some(kid), other).unwrap().len();
                assert_eq!(n, usize::from(other == alg), "{kid} {other:?}");
            }
        }
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(br#"{"keys": {}}"#).is_err());
        assert!(set(vec![]).is_err());
        assert!(set(vec![json!({ "kty": "oct", "k": "AAAA" })]).is_err());
    }
}
