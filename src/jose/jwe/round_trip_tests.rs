//! Round trips through `encrypt` and `decrypt`, the shape of what
//! `encrypt` produces, and damaged or truncated messages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use std::slice::from_ref;

use super::test_support::*;
use super::*;
use crate::jose::keys::fixtures::*;

#[test]
fn round_trips_every_mode_and_serialization() {
    let (rsa, ec, shared) = (rsa_a(), ec_a(), shared());
    let plaintexts = [Vec::new(), SECRET.to_vec(), vec![0x5a; 70_000]];
    for serialization in [Serialization::Compact, Serialization::Flattened] {
        for (key, alg) in [(&rsa, KeyAlg::RsaOaep256), (&ec, KeyAlg::EcdhEsA256Kw)] {
            for plaintext in &plaintexts {
                let jwe = encrypt_to_jwe_key(plaintext, Some("json"), key, serialization).unwrap();
                let out = decrypt(&jwe, DecryptWith::Keys(from_ref(key)), &ACCEPT_TOKEN).unwrap();
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
        let err = decrypt(&input, DecryptWith::Keys(from_ref(&key)), &ACCEPT_TOKEN).unwrap_err();
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
fn debug_of_decrypted_hides_the_plaintext() {
    let jwe = sealed_to_shared();
    let text = format!("{:?}", open_shared(&jwe).unwrap());
    assert!(
        !text.contains("attack") && text.contains("plaintext_len"),
        "{text}"
    );
}
