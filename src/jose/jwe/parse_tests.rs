//! Parsing and header policy: the Accept lists, `zip` and `crit`, header
//! size and shape, strict compact base64url, flattened JSON members.

use serde_json::{Value, json};
use std::slice::from_ref;

use super::test_support::*;
use super::*;
use crate::jose::keys::fixtures::*;

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
