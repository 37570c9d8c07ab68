//! Key management: wrong keys, unknown kids, key types against alg,
//! `encrypted_key` presence, ECDH-ES with apu/apv and bad `epk`.

use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::key_wrap::{AES_128, KeyEncryptionKey, KeyWrap};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use std::slice::from_ref;

use super::key_management::concat_kdf;
use super::test_support::*;
use super::*;
use crate::jose::keys::fixtures::{self, *};

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
    let mut token = parts(&encrypt_to_jwe_key(SECRET, None, &rsa, Serialization::Compact).unwrap());
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
        let mut header: Value = serde_json::from_slice(&B64.decode(&parts[0]).unwrap()).unwrap();
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
