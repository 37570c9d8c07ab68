//! JWS/JWT verification, JWE decryption and JWKS documents, through the code the proxy runs
//! (`auth::jwt`, `jose::jwe`, `jwks::set`) with a small policy compiled once.

use std::path::Path;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::NOW;
use crate::auth::jwt::{self, Jws, Verified};
use crate::error::Error;
use crate::jose::jwe::{self, ACCEPT_PAYLOAD, ACCEPT_TOKEN, DecryptWith, Serialization};
use crate::jose::keys::SharedKey;
use crate::jwks::set::{KeySet, MAX_TRIES};
use crate::policy::Policy;
use crate::policy::compile::{self, Context};

/// The HS* secret of the policy's apps; the structured inputs are signed with it.
pub const JWS_SECRET: &str = "fuzz-secret-0123456789abcdef-0123456789";

/// A policy with every signature family and the claim checks that differ by app: HS* apps
/// (one mapping a claim to a header, one with audience, issuer and jti required), an ES256
/// app with a PEM public key, and the demo JWE keys. Paths resolve against `policies/`.
fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = format!(
            r#"version: 1
scopes:
  read: Read
  write: Write
routes:
  - {{ id: r, methods: [GET], path: /r, auth: [jwt] }}
apps:
  - client_id: app-hs
    algorithms: [HS256, HS384, HS512]
    secret: {{ value: {JWS_SECRET} }}
    scopes: [read, write]
    claims_to_headers: {{ tenant: x-auth-tenant }}
  - client_id: app-strict
    algorithms: [HS256]
    secret: {{ value: {JWS_SECRET} }}
    issuer: https://issuer.example
    audience: https://api.example
    enforce_jti: true
    scopes: [read]
  - client_id: app-es
    algorithms: [ES256]
    public_key_file: keys/analytics-app.pub.pem
    scopes: [read]
jwe_keys:
  - kid: sg-demo-rsa
    private_key_file: keys/scopegate-demo-rsa.key.pem
  - kid: sg-demo-ec
    private_key_file: keys/scopegate-demo-ec.key.pem
"#
        );
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/fuzz.yaml");
        match compile::compile_bytes(&file, text.as_bytes(), &Context::standalone()) {
            Ok(c) => c.policy,
            Err(e) => panic!("the fuzz policy does not compile: {e:?}"),
        }
    })
}

fn shared_key() -> &'static SharedKey {
    static KEY: OnceLock<SharedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SharedKey::parse("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY").expect("32-byte key")
    })
}

/// What two verifications of one token must agree on.
fn outcome(r: &Result<Verified, Error>) -> Result<String, &'static str> {
    match r {
        Ok(v) => Ok(format!(
            "{} {:?} {:?} {:?} {:?} {:?} {:?}",
            v.app.client_id,
            v.exp,
            v.nbf,
            v.iat,
            v.jti,
            v.principal.subject,
            v.principal.claim_headers
        )),
        Err(e) => Err(e.code()),
    }
}

/// JWS/JWT verification (`auth::jwt::verify_jws`). The first byte picks the mode:
/// - even: the rest is a compact token as sent; verifying it whole and in two steps
///   (`Jws::parse`, then `verify`) must agree, and so must the JWE-wrapped reading where it
///   is not refused for `enforce_jwe`;
/// - odd: the rest is `header \0 claims`, signed here with the apps' secret (HS256, HS384 or
///   HS512 by the first byte) so that the claim checks are reached; a token that verifies
///   must stop verifying when its signature is altered.
pub fn jws(data: &[u8]) {
    let policy = policy();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = check_token(policy, token);
        return;
    }
    let mut parts = rest.splitn(2, |b| *b == 0);
    let (header, claims) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let alg = match mode / 2 % 3 {
        0 => aws_lc_rs::hmac::HMAC_SHA256,
        1 => aws_lc_rs::hmac::HMAC_SHA384,
        _ => aws_lc_rs::hmac::HMAC_SHA512,
    };
    let key = aws_lc_rs::hmac::Key::new(alg, JWS_SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    if check_token(policy, &token).is_ok() {
        // Any change to the signature (here its first character) must be refused.
        let (head, sig) = token.rsplit_once('.').unwrap_or_default();
        let first = sig.as_bytes()[0];
        let other = if first == b'A' { 'B' } else { 'A' };
        let forged = format!("{head}.{other}{}", &sig[1..]);
        assert_eq!(
            jwt::verify_jws(policy, &forged, false)
                .err()
                .map(|e| e.code()),
            Some("invalid_token"),
            "a forged signature was accepted"
        );
    }
}

/// Verifies one token every way the proxy can and checks the readings agree.
fn check_token(policy: &Policy, token: &str) -> Result<String, &'static str> {
    let whole = outcome(&jwt::verify_jws(policy, token, false));
    let stepped = outcome(&Jws::parse(token).and_then(|j| jwt::verify(policy, &j, false)));
    assert_eq!(whole, stepped, "verify_jws and parse + verify disagree");
    let wrapped = jwt::verify_jws(policy, token, true);
    if let Ok(v) = &wrapped {
        let _ = jwt::check_time(v, NOW as f64);
        let _ = jwt::check_time(v, f64::MAX);
        let _ = jwt::check_time(v, -1.0);
    }
    if whole.is_ok() {
        // What verifies is JSON as any other reader sees it (RFC 7519 §7.2: UTF-8 JSON).
        for part in token.split('.').take(2) {
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .expect("verified, so base64url");
            assert!(
                super::is_json(&bytes),
                "a token part that is not JSON verified: {bytes:?}"
            );
        }
        assert_eq!(
            outcome(&wrapped),
            whole,
            "a token valid bare is refused JWE-wrapped"
        );
    }
    whole
}

/// JWE decryption (`jose::jwe::decrypt`, compact and flattened). The first byte picks the
/// mode:
/// - 0: the rest is a JWE as sent, decrypted as a token, as a request payload (with the
///   proxy's keys and with a shared `dir` key) and as a JWE-wrapped JWT; the payload list
///   accepts more than the token list, so whatever decrypts as a token decrypts the same as a
///   payload;
/// - 1: the rest is a plaintext, encrypted to each of the proxy's keys in both
///   serializations: each must decrypt to it;
/// - 2: a fixed message, altered by the rest (pairs of position, xor): an altered message
///   that still decrypts must give the original plaintext (AEAD: no other can authenticate).
pub fn jwe(data: &[u8]) {
    let policy = policy();
    let keys = &policy.jwe_keys;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let token = jwe::decrypt(rest, DecryptWith::Keys(keys), &ACCEPT_TOKEN);
            let payload = jwe::decrypt(rest, DecryptWith::Keys(keys), &ACCEPT_PAYLOAD);
            if let Ok(t) = &token {
                let p = payload.as_ref().expect("a token JWE refused as a payload");
                assert_eq!(t.plaintext, p.plaintext);
                assert_eq!(t.kid, p.kid);
            }
            let _ = jwe::decrypt(rest, DecryptWith::Shared(shared_key()), &ACCEPT_PAYLOAD);
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = jwt::verify_jwe(policy, text);
            }
        }
        1 => {
            for key in keys {
                for ser in [Serialization::Compact, Serialization::Flattened] {
                    let sealed = jwe::encrypt_to_jwe_key(rest, Some("JWT"), key, ser)
                        .expect("encrypting to our own key");
                    let opened = jwe::decrypt(&sealed, DecryptWith::Keys(keys), &ACCEPT_TOKEN)
                        .expect("our own JWE does not decrypt");
                    assert_eq!(opened.plaintext, rest);
                    assert_eq!(opened.kid.as_deref(), Some(key.kid.as_str()));
                    assert_eq!(opened.serialization, ser);
                }
            }
        }
        _ => {
            static SEALED: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
            let sealed = SEALED.get_or_init(|| {
                [Serialization::Compact, Serialization::Flattened].map(|ser| {
                    jwe::encrypt_to_jwe_key(TAMPERED_PLAINTEXT, None, &keys[1], ser)
                        .expect("encrypting to our own key")
                })
            });
            let (which, edits) = rest.split_first().unwrap_or((&0, &[]));
            let mut altered = sealed[usize::from(which % 2)].clone();
            for edit in edits.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % altered.len();
                altered[at] ^= edit[2];
            }
            if let Ok(opened) = jwe::decrypt(&altered, DecryptWith::Keys(keys), &ACCEPT_PAYLOAD) {
                assert_eq!(opened.plaintext, TAMPERED_PLAINTEXT, "forged plaintext");
            }
        }
    }
}

const TAMPERED_PLAINTEXT: &[u8] = b"{\"amount\":100,\"to\":\"acct-1\"}";

/// JWKS documents (`jwks::set::KeySet::parse`): every key of an accepted document is
/// counted as kept or ignored, no HMAC algorithm is ever offered a key from it, and no
/// token is offered more than `MAX_TRIES` keys.
pub fn jwks(data: &[u8]) {
    let Ok(set) = KeySet::parse(data) else {
        return;
    };
    let doc: Value = serde_json::from_slice(data).expect("an accepted JWKS is JSON");
    let listed = doc["keys"].as_array().map_or(0, Vec::len);
    assert_eq!(set.len() + set.ignored, listed, "keys lost in the count");
    assert!(!set.is_empty());
    let kids = set.kids();
    let mut tried: Vec<Option<&str>> = vec![None, Some("no-such-kid")];
    tried.extend(kids.iter().take(4).map(|k| Some(*k)));
    for kid in tried {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
            Algorithm::HS256,
        ] {
            let Some(keys) = set.candidates(kid, alg) else {
                continue;
            };
            assert!(keys.len() <= MAX_TRIES, "more than MAX_TRIES keys offered");
            if alg == Algorithm::HS256 {
                assert!(keys.is_empty(), "a JWKS key offered to HS256");
            }
        }
    }
}
