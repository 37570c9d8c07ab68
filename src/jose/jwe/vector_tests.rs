//! Known-answer tests (RFC 7520 §5.2, §5.4, §5.6 and RFC 7518 Appendix C)
//! and interop with an independent implementation (joserfc).

use aws_lc_rs::agreement::{self, ECDH_P256, UnparsedPublicKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use std::slice::from_ref;

use super::content::open;
use super::key_management::{concat_kdf, kw_unwrap};
use super::test_support::*;
use super::*;
use crate::jose::keys::fixtures::{self, *};

const RFC7520_5_2: &str = include_str!("../testdata/rfc7520_5_2_rsa_oaep_a256gcm.json");
const RFC7520_5_4: &str = include_str!("../testdata/rfc7520_5_4_ecdh_es_a128kw_a128gcm.json");
const RFC7520_5_6: &str = include_str!("../testdata/rfc7520_5_6_dir_a128gcm.json");
const INTEROP_SCRIPT: &str = include_str!("../testdata/interop_joserfc.py");

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
    let private =
        agreement::PrivateKey::from_private_key(&agreement::ECDH_P384, &unb64(&vector["key"]["d"]))
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
    let mut child = spawned.expect("this test needs python3 with joserfc (pip install joserfc)");
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
            let out = result.unwrap_or_else(|err| panic!("{alg}/{enc} {serialization:?}: {err}"));
            assert_eq!(out.plaintext, SECRET, "{alg}/{enc}");
            assert_eq!(
                (out.alg.name(), out.enc.name(), out.serialization),
                (alg, enc, serialization)
            );
        }
    }
}
