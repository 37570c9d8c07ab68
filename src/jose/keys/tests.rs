//! Unit tests of key loading: PEM forms, JWKs, the key policy, shared keys, and that
//! no key material reaches `Debug` output or error messages.

use super::fixtures::*;
use super::*;

fn jwk_of(kid: &str, pem: &str) -> Value {
    key(kid, pem).public_jwk()
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

#[test]
fn rsa_pkcs8_and_pkcs1_load_to_the_same_public_jwk() {
    let jwk = jwk_of("rsa-a", RSA_A_PKCS8);
    assert_eq!(jwk, jwk_of("rsa-a", RSA_A_PKCS1));
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["kid"], "rsa-a");
    assert_eq!(jwk["use"], "enc");
    assert_eq!(jwk["alg"], "RSA-OAEP-256");
    assert_eq!(jwk["e"], "AQAB");
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256, "2048-bit modulus without a leading zero");
    for member in PRIVATE_MEMBERS {
        assert!(jwk.get(member).is_none(), "{member} must not be published");
    }
}

#[test]
fn ec_sec1_and_pkcs8_load_to_the_same_public_jwk() {
    let jwk = jwk_of("ec-a", EC_A_SEC1);
    assert_eq!(jwk, jwk_of("ec-a", EC_A_PKCS8));
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["use"], "enc");
    assert_eq!(jwk["alg"], "ECDH-ES+A256KW");
    for coordinate in ["x", "y"] {
        let bytes = URL_SAFE_NO_PAD
            .decode(jwk[coordinate].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
    }
    for member in PRIVATE_MEMBERS {
        assert!(jwk.get(member).is_none(), "{member} must not be published");
    }
}

#[test]
fn jwks_document_lists_every_key() {
    let doc: Value = serde_json::from_str(&jwks_document(&[rsa_a(), ec_a()])).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], "rsa-a");
    assert_eq!(keys[1]["kid"], "ec-a");
    assert_eq!(jwks_document(&[]), r#"{"keys":[]}"#);
}

#[test]
fn policy_rejects_small_rsa_and_other_curves() {
    let load = |pem: &str| JweKey::from_pem("k", pem.as_bytes()).map(|_| ());
    assert!(matches!(load(RSA_1024_PKCS8), Err(KeyError::RsaTooSmall)));
    assert!(matches!(load(P384_SEC1), Err(KeyError::UnsupportedCurve)));
    let public = |pem: &str| Recipient::from_public_pem(pem.as_bytes()).map(|_| ());
    assert!(matches!(public(P384_SPKI), Err(KeyError::UnsupportedCurve)));
}

#[test]
fn private_key_pem_errors_are_specific() {
    let load = |kid: &str, pem: &str| JweKey::from_pem(kid, pem.as_bytes()).map(|_| ());
    assert!(matches!(load("", RSA_A_PKCS8), Err(KeyError::EmptyKid)));
    assert!(matches!(load("k", RSA_A_SPKI), Err(KeyError::Missing(_))));
    assert!(matches!(
        load("k", "not pem at all"),
        Err(KeyError::Missing(_))
    ));
    let two = format!("{RSA_A_PKCS8}{EC_A_SEC1}");
    assert!(matches!(load("k", &two), Err(KeyError::Ambiguous(_))));
    // A certificate or public key next to the private key is fine.
    assert!(load("k", &format!("{RSA_A_SPKI}{RSA_A_PKCS8}")).is_ok());
    let truncated = &RSA_A_PKCS8[..RSA_A_PKCS8.len() - 30];
    assert!(matches!(load("k", truncated), Err(KeyError::Pem(_))));
    let garbage = pem("PRIVATE KEY", b"definitely not DER");
    assert!(matches!(
        load("k", &garbage),
        Err(KeyError::Rejected { .. })
    ));
}

#[test]
fn public_pem_forms_load() {
    assert!(matches!(public(RSA_A_SPKI), Recipient::Rsa(_)));
    assert!(matches!(public(RSA_A_PKCS1_PUBLIC), Recipient::Rsa(_)));
    assert!(matches!(public(EC_A_SPKI), Recipient::EcP256(_)));
    let load = |pem: &str| Recipient::from_public_pem(pem.as_bytes()).map(|_| ());
    assert!(matches!(load(RSA_A_PKCS8), Err(KeyError::Missing(_))));
    assert!(matches!(
        load(&format!("{RSA_A_SPKI}{EC_A_SPKI}")),
        Err(KeyError::Ambiguous(_))
    ));
    let bad = pem("RSA PUBLIC KEY", b"junk");
    assert!(matches!(load(&bad), Err(KeyError::Rejected { .. })));
}

#[test]
fn shared_key_accepts_base64url_and_base64_of_32_bytes() {
    let bytes: Vec<u8> = (0u8..32).collect();
    let forms = [
        SHARED.to_owned(),
        STANDARD.encode(&bytes),
        STANDARD_NO_PAD.encode(&bytes),
        format!("  {SHARED}\n"),
    ];
    for form in forms {
        let key = SharedKey::parse(&form).unwrap_or_else(|err| panic!("{form:?}: {err}"));
        assert_eq!(key.as_bytes().as_slice(), bytes.as_slice());
    }
    // Bytes whose encodings differ between the two alphabets.
    let high = [0xfbu8; 32];
    for form in [URL_SAFE_NO_PAD.encode(high), STANDARD.encode(high)] {
        assert_eq!(SharedKey::parse(&form).unwrap().as_bytes(), &high);
    }
}

#[test]
fn shared_key_rejects_other_lengths_and_garbage() {
    for len in [0usize, 16, 31, 33, 64] {
        let text = URL_SAFE_NO_PAD.encode(vec![7u8; len]);
        assert!(
            matches!(SharedKey::parse(&text), Err(KeyError::SharedKeyLength(got)) if got == len),
            "{len} bytes must be rejected"
        );
    }
    // Padded base64url mixes the two forms and is refused.
    let padded_url = format!("{}=", URL_SAFE_NO_PAD.encode([0xfbu8; 32]));
    for garbage in ["not base64!", "AAEC-wQF+gcI", "====", &padded_url] {
        assert!(
            matches!(SharedKey::parse(garbage), Err(KeyError::SharedKeyEncoding)),
            "{garbage}"
        );
    }
}

#[test]
fn debug_output_never_shows_key_material() {
    let shared = SharedKey::parse(SHARED).unwrap();
    assert_eq!(format!("{shared:?}"), "SharedKey(..)");
    let recipient = Recipient::Direct(shared);
    assert_eq!(format!("{recipient:?}"), "Recipient::Direct(..)");
    let rsa = format!("{:?}", rsa_a());
    assert!(rsa.contains("rsa-a") && rsa.len() < 80, "{rsa}");
    let ec = format!("{:?}", ec_a());
    assert!(ec.contains("ec-a") && ec.len() < 80, "{ec}");
}

#[test]
fn key_errors_do_not_echo_pem_contents() {
    let body_line = RSA_A_PKCS8.lines().nth(1).unwrap();
    let broken = RSA_A_PKCS8.replace(body_line, &format!("{body_line}!!"));
    let err = JweKey::from_pem("k", broken.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(!err.contains(body_line), "{err}");
}

#[test]
fn key_types_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JweKey>();
    assert_send_sync::<Recipient>();
    assert_send_sync::<SharedKey>();
}
