//! Payload encryption (SPEC §4) end to end: a real upstream, the real proxy, real HTTP, and
//! an independent JOSE implementation (Python joserfc, through tests/interop/jose_tool.py)
//! on the client side for every JWE the proxy reads or writes.
//!
//! Here: bodies that cannot be decrypted, plaintext bodies, body limits.
//!
//! Python is started once per test with a batch of jobs (tests/interop/jose_batch.py),
//! not once per JWE. Python and joserfc are required: without them the tests fail.
//! The policy, the jobs and the checks are in tests/common/payload.rs.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::jose::*;
use common::payload::*;
use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------- 2. negative

/// Every way a body can fail to decrypt gets the same 400 `invalid_encrypted_payload`,
/// byte for byte (request id aside), with the same headers, and nothing reaches the upstream.
#[tokio::test]
async fn every_undecryptable_body_gets_one_identical_answer() {
    let (up, p) = start().await;
    let plaintext = r#"{"secret":"attack at dawn"}"#;
    let rsa = To::Key("proxy-jwe-rsa.pub.pem");
    let ec = To::Key("proxy-jwe-ec.pub.pem");
    let ct = Some("application/json");
    let big_cty = "x".repeat(9000);
    let shared = key("shared.key");
    let made = batch_ok(vec![
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            ct,
            None,
            Ser::Compact,
            plaintext,
        ),
        encrypt_job(
            "ECDH-ES+A256KW",
            "A256GCM",
            ec,
            ct,
            None,
            Ser::Compact,
            plaintext,
        ),
        // To a key the proxy does not hold (the client's own public key).
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            To::Key("client-rsa.pub.pem"),
            ct,
            None,
            Ser::Compact,
            plaintext,
        ),
        encrypt_job(
            "ECDH-ES+A256KW",
            "A256GCM",
            To::Key("client-ec.pub.pem"),
            ct,
            None,
            Ser::Compact,
            plaintext,
        ),
        // Right key, wrong kid; and the kid of the proxy's other key.
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            ct,
            Some("nope"),
            Ser::Compact,
            plaintext,
        ),
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            ct,
            Some("sg-ec"),
            Ser::Compact,
            plaintext,
        ),
        // Validly encrypted with a protected header over 8 KiB.
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            Some(&big_cty),
            None,
            Ser::Compact,
            plaintext,
        ),
        // dir from an app that has no shared key.
        encrypt_job(
            "dir",
            "A256GCM",
            To::Shared(&shared),
            ct,
            None,
            Ser::Compact,
            plaintext,
        ),
        // Validly encrypted with "zip": "DEF" (deflated plaintext).
        json!({ "args": ["jwe-token", "--jws", plaintext, "--key", key("proxy-jwe-rsa.pub.pem"),
                         "--alg", "RSA-OAEP-256", "--zip"] }),
        // ECDH-ES with the ephemeral key in the unprotected per-recipient header.
        encrypt_job(
            "ECDH-ES+A256KW",
            "A256GCM",
            ec,
            ct,
            None,
            Ser::Native,
            plaintext,
        ),
    ])
    .await;
    let out: Vec<String> = made.into_iter().map(|m| m.out).collect();
    let [
        base,
        base_ec,
        not_ours,
        not_ours_ec,
        bad_kid,
        other_kid,
        big,
        dir_rsa,
        zipped,
        native_ec,
    ] = &out[..]
    else {
        unreachable!()
    };

    // Sanity: the untampered bodies are accepted, so each case below differs by one cause.
    for body in [base, base_ec, native_ec] {
        let a = post_jwe(&p, "app-rsa", body, None).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    }
    let hits = up.hits();

    let names = [
        "protected header",
        "encrypted key",
        "iv",
        "ciphertext",
        "tag",
    ];
    let mut cases: Vec<(String, &str, String)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        cases.push((
            format!("bit flipped in the {name}"),
            JOSE,
            flip_bit(base, i),
        ));
        cases.push((
            format!("base64 char changed in the {name}"),
            JOSE,
            flip_char(base, i),
        ));
        cases.push((
            format!("bit flipped in the {name} (ECDH-ES)"),
            JOSE,
            flip_bit(base_ec, i),
        ));
    }
    let mut junk_header = serde_json::Map::new();
    junk_header.insert("junk".into(), "j".repeat(9000).into());
    let more: Vec<(&str, &str, String)> = vec![
        (
            "bit flipped in the tag, flattened",
            JOSE_JSON,
            to_flattened(&flip_bit(base, 4)),
        ),
        (
            "bit flipped in the iv, flattened",
            JOSE_JSON,
            to_flattened(&flip_bit(base, 2)),
        ),
        (
            "cty edited in the protected header",
            JOSE,
            set_header(base, "cty", "text/plain"),
        ),
        (
            "truncated in the middle",
            JOSE,
            base[..base.len() / 2].to_string(),
        ),
        ("tag part missing", JOSE, parts(base)[..4].join(".")),
        ("empty tag", JOSE, replace_part(base, 4, "")),
        (
            "tag truncated to its first 12 bytes",
            JOSE,
            shorten(base, 4, 4),
        ),
        (
            "tag truncated to its first 8 bytes",
            JOSE,
            shorten(base, 4, 8),
        ),
        (
            "ciphertext missing its last byte",
            JOSE,
            shorten(base, 3, 1),
        ),
        (
            "iv of 16 bytes",
            JOSE,
            replace_part(base, 2, &B64.encode([7u8; 16])),
        ),
        ("six parts", JOSE, format!("{base}.AAAA")),
        (
            "encrypted to a key the proxy does not hold (RSA)",
            JOSE,
            not_ours.clone(),
        ),
        (
            "encrypted to a key the proxy does not hold (EC)",
            JOSE,
            not_ours_ec.clone(),
        ),
        ("unknown kid", JOSE, bad_kid.clone()),
        (
            "kid of the proxy's EC key on an RSA JWE",
            JOSE,
            other_kid.clone(),
        ),
        ("alg A128KW", JOSE, set_header(base, "alg", "A128KW")),
        ("alg RSA1_5", JOSE, set_header(base, "alg", "RSA1_5")),
        ("alg none", JOSE, set_header(base, "alg", "none")),
        (
            "enc A128CBC-HS256",
            JOSE,
            set_header(base, "enc", "A128CBC-HS256"),
        ),
        ("zip DEF, validly encrypted", JOSE, zipped.clone()),
        (
            "zip DEF added to the header",
            JOSE,
            set_header(base, "zip", "DEF"),
        ),
        (
            "zip DEF in the unprotected header (flattened)",
            JOSE_JSON,
            {
                let mut v: Value = serde_json::from_str(&to_flattened(base)).unwrap();
                v["unprotected"] = json!({ "zip": "DEF" });
                v.to_string()
            },
        ),
        (
            "crit in the header",
            JOSE,
            edit_header(base, |h| {
                h.insert("crit".into(), json!(["exp"]));
                h.insert("exp".into(), json!(1));
            }),
        ),
        (
            "protected header over 8 KiB, validly encrypted",
            JOSE,
            big.clone(),
        ),
        (
            "protected header padded over 8 KiB with a junk parameter",
            JOSE,
            edit_header(base, |h| {
                h.extend(junk_header);
            }),
        ),
        (
            "dir from an app without a shared key",
            JOSE,
            dir_rsa.clone(),
        ),
        ("garbage", JOSE, "this is not a JWE at all".into()),
        ("garbage with four dots", JOSE, "a.b.c.d.e".into()),
        ("four dots only", JOSE, "....".into()),
        (
            "garbage JSON",
            JOSE_JSON,
            r#"{"protected":"e30","ciphertext":"AA"}"#.into(),
        ),
        ("JSON that is not an object", JOSE_JSON, "[1,2,3]".into()),
        (
            "binary garbage",
            JOSE,
            String::from_utf8_lossy(&[0xff, 0xfe, 0, 1, 2]).into(),
        ),
    ];
    // The unprotected epk is outside the AAD, so only the proxy's own checks stand between
    // it and the key agreement: a point off the curve, on another curve, or the identity.
    let epk_edits: [(&str, Value); 4] = [
        (
            "epk off the curve",
            json!({ "kty": "EC", "crv": "P-256", "x": B64.encode([1u8; 32]), "y": B64.encode([2u8; 32]) }),
        ),
        (
            "epk on P-384",
            json!({ "kty": "EC", "crv": "P-384", "x": B64.encode([1u8; 48]), "y": B64.encode([2u8; 48]) }),
        ),
        (
            "epk with zero coordinates",
            json!({ "kty": "EC", "crv": "P-256", "x": B64.encode([0u8; 32]), "y": B64.encode([0u8; 32]) }),
        ),
        (
            "epk that is an RSA key",
            json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" }),
        ),
    ];
    for (what, epk) in epk_edits {
        let mut v: Value = serde_json::from_str(native_ec).unwrap();
        v["header"]["epk"] = epk;
        cases.push((
            format!("{what} (unprotected header)"),
            JOSE_JSON,
            v.to_string(),
        ));
    }
    for (what, ct, body) in more {
        cases.push((what.to_string(), ct, body));
    }

    let t = token("app-rsa");
    let mut reference: Option<(String, Vec<(String, String)>)> = None;
    let mut failures = Vec::new();
    for (i, (what, ct, body)) in cases.iter().enumerate() {
        let rid = format!("neg-{i:03}");
        let a = post(
            &p,
            "/enc",
            &[("auth", &t), ("content-type", ct), ("x-request-id", &rid)],
            body.as_bytes(),
        )
        .await;
        let text = String::from_utf8_lossy(&a.body).into_owned();
        if a.status != 400
            || a.header("content-type") != Some("application/problem+json")
            || a.code() != "invalid_encrypted_payload"
        {
            failures.push(format!("{what}: {} {text}", a.status));
            continue;
        }
        if !text.contains(&rid) {
            failures.push(format!("{what}: request id missing from {text}"));
        }
        let body = text.replace(&rid, "RID");
        let mut headers: Vec<(String, String)> = a
            .headers
            .iter()
            .filter(|(k, _)| !["date", "x-request-id"].contains(&k.as_str()))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        headers.sort();
        match &reference {
            None => reference = Some((body, headers)),
            Some((b, h)) => {
                if *b != body {
                    failures.push(format!("{what}: body differs:\n  {body}\n  vs {b}"));
                }
                if *h != headers {
                    failures.push(format!("{what}: headers differ: {headers:?} vs {h:?}"));
                }
            }
        }
    }
    eprintln!(
        "{} undecryptable bodies, one answer: {}",
        cases.len(),
        reference.as_ref().map(|r| r.0.as_str()).unwrap_or("-")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        up.hits(),
        hits,
        "an undecryptable body reached the upstream"
    );
}

/// An opted-in app on an encrypted route must encrypt its body: plaintext is 400
/// `encryption_required`, whatever its content type, and never reaches the upstream.
#[tokio::test]
async fn plaintext_body_from_an_opted_in_app_is_encryption_required() {
    let (up, p) = start().await;
    let body = br#"{"plain":"text"}"#;
    for app in ["app-rsa", "app-ec", "app-dir"] {
        let t = token(app);
        for ct in [
            Some("application/json"),
            Some("text/plain"),
            Some("application/octet-stream"),
            None,
        ] {
            let mut headers = vec![("auth", t.as_str())];
            if let Some(ct) = ct {
                headers.push(("content-type", ct));
            }
            let a = post(&p, "/enc", &headers, body).await;
            assert_eq!(
                (a.status, a.code().as_str()),
                (400, "encryption_required"),
                "{app} {ct:?}"
            );
        }
    }
    assert_eq!(up.hits(), 0);
}

/// Bodies over `max_body_bytes` are 413 before any decryption; an upstream response too large
/// to buffer for encryption is 502 `encryption_failed`, never plaintext.
#[tokio::test]
async fn body_limits_on_encrypted_routes() {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy())
        .upstream("default", up.addr)
        .config("limits: { max_body_bytes: 4096 }")
        .start()
        .await;
    let small = r#"{"n":1}"#.to_string();
    let large = json!({ "pad": "p".repeat(5000) }).to_string();
    let rsa = To::Key("proxy-jwe-rsa.pub.pem");
    let ct = Some("application/json");
    let out = batch_ok(vec![
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            ct,
            None,
            Ser::Compact,
            &small,
        ),
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            ct,
            None,
            Ser::Compact,
            &large,
        ),
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            rsa,
            ct,
            None,
            Ser::Flattened,
            &large,
        ),
    ])
    .await;

    // Under the limit both ways: fine.
    let t = token("app-rsa");
    let a = post_jwe(&p, "app-rsa", &out[0].out, None).await;
    check_sealed(&a, "app-rsa", false).unwrap();

    for jwe in &out[1..] {
        let a = post_jwe(&p, "app-rsa", &jwe.out, None).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (413, "payload_too_large"),
            "{} bytes",
            jwe.out.len()
        );
    }
    // Plaintext over the limit from an opted-in app is refused too, either way.
    let a = post(
        &p,
        "/enc",
        &[("auth", &t), ("content-type", "application/json")],
        large.as_bytes(),
    )
    .await;
    assert!(a.status == 413 || a.status == 400, "{}", a.status);
    assert_eq!(up.hits(), 1);

    // The request fits, the upstream's response does not: it cannot be buffered to be sealed.
    let too_big = "q".repeat(5000);
    let a = get(&p.url("/enc"), &[("auth", &t), ("x-test-body", &too_big)]).await;
    assert_eq!(up.hits(), 2, "the request was forwarded");
    assert_eq!((a.status, a.code().as_str()), (502, "encryption_failed"));
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        !text.contains("qqqq"),
        "upstream bytes in the error: {text}"
    );
}
