//! Payload encryption (SPEC §4) end to end: a real upstream, the real proxy, real HTTP, and
//! an independent JOSE implementation (Python joserfc, through tests/interop/jose_tool.py)
//! on the client side for every JWE the proxy reads or writes.
//!
//! Here: the interop matrix (every request mode, both serializations, both directions).
//!
//! Python is started once per test with a batch of jobs (tests/interop/jose_batch.py),
//! not once per JWE. Python and joserfc are required: without them the tests fail.
//! The policy, the jobs and the checks are in tests/common/payload.rs.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::jose::*;
use common::payload::*;
use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------- 1. interop matrix

/// A request mode joserfc produces.
struct Mode<'a> {
    alg: &'static str,
    enc: &'static str,
    to: To<'a>,
    kid: Option<&'static str>,
    /// The apps that send it (their response keys differ).
    apps: &'static [&'static str],
}

const HYBRID_APPS: &[&str] = &["app-rsa", "app-ec"];

fn modes(shared: &str) -> Vec<Mode<'_>> {
    let mut modes = Vec::new();
    for (alg, key) in [
        ("RSA-OAEP-256", "proxy-jwe-rsa.pub.pem"),
        ("RSA-OAEP", "proxy-jwe-rsa.pub.pem"),
        ("ECDH-ES+A256KW", "proxy-jwe-ec.pub.pem"),
        ("ECDH-ES+A128KW", "proxy-jwe-ec.pub.pem"),
    ] {
        for enc in ["A256GCM", "A128GCM"] {
            modes.push(Mode {
                alg,
                enc,
                to: To::Key(key),
                kid: None,
                apps: HYBRID_APPS,
            });
        }
    }
    modes.push(Mode {
        alg: "RSA-OAEP-256",
        enc: "A256GCM",
        to: To::Key("proxy-jwe-rsa.pub.pem"),
        kid: Some("sg-rsa"),
        apps: HYBRID_APPS,
    });
    modes.push(Mode {
        alg: "ECDH-ES+A256KW",
        enc: "A256GCM",
        to: To::Key("proxy-jwe-ec.pub.pem"),
        kid: Some("sg-ec"),
        apps: HYBRID_APPS,
    });
    modes.push(Mode {
        alg: "dir",
        enc: "A256GCM",
        to: To::Shared(shared),
        kid: None,
        apps: &["app-dir"],
    });
    modes
}

/// One exchange of the matrix, waiting for its response to be decrypted.
struct Exchange {
    row: usize,
    request: Ser,
    app: &'static str,
    flattened_response: bool,
    plaintext: String,
    answer: Answer,
}

fn ser_name(ser: Ser) -> &'static str {
    match ser {
        Ser::Compact => "compact",
        Ser::Flattened => "flattened",
        Ser::Native => "flattened (joserfc native)",
    }
}

/// Every request mode joserfc produces, compact and flattened JSON (all header parameters
/// protected, and joserfc's native JSON with `epk` in the per-recipient header), sent by
/// apps with RSA, EC and shared keys, each asking for compact and for flattened responses:
/// the upstream receives the exact plaintext, and joserfc decrypts the proxy's response.
#[tokio::test]
async fn interop_matrix_every_request_mode_both_serializations_both_directions() {
    let (up, p) = start().await;
    let shared = key("shared.key");
    let modes = modes(&shared);
    let mut jobs = Vec::new();
    let mut plaintexts = Vec::new();
    for (row, m) in modes.iter().enumerate() {
        for ser in SERS {
            let plaintext = json!({
                "row": row,
                "alg": m.alg,
                "enc": m.enc,
                "serialization": ser_name(ser),
                "text": "héllo wörld ✓ \u{1F510}",
            })
            .to_string();
            jobs.push(encrypt_job(
                m.alg,
                m.enc,
                m.to,
                Some("application/json"),
                m.kid,
                ser,
                &plaintext,
            ));
            plaintexts.push((row, ser, plaintext));
        }
    }
    let requests = batch_ok(jobs).await;

    let mut exchanges = Vec::new();
    for ((row, request, plaintext), jwe) in plaintexts.into_iter().zip(requests) {
        assert_eq!(
            jwe.out.starts_with('{'),
            request != Ser::Compact,
            "jose_tool serialization"
        );
        for &app in modes[row].apps {
            for flattened_response in [false, true] {
                let accept = flattened_response.then_some(JOSE_JSON);
                let answer = post_jwe(&p, app, &jwe.out, accept).await;
                exchanges.push(Exchange {
                    row,
                    request,
                    app,
                    flattened_response,
                    plaintext: plaintext.clone(),
                    answer,
                });
            }
        }
    }
    let opened = batch(
        exchanges
            .iter()
            .map(|x| decrypt_job(x.app, &x.answer.body))
            .collect(),
    )
    .await;

    // (row, request serialization) -> (exchanges, failures)
    let mut cells: BTreeMap<(usize, Ser), (usize, Vec<String>)> = BTreeMap::new();
    for (x, r) in exchanges.iter().zip(&opened) {
        let result = check_sealed(&x.answer, x.app, x.flattened_response)
            .and_then(|()| check_opened(r, x.app, "application/json"))
            .and_then(|echo| check_upstream_saw(&echo, x.app, &x.plaintext, "application/json"));
        let cell = cells.entry((x.row, x.request)).or_default();
        cell.0 += 1;
        if let Err(e) = result {
            let response = if x.flattened_response {
                "flattened"
            } else {
                "compact"
            };
            cell.1.push(format!("{} / {response} response: {e}", x.app));
        }
    }
    assert_eq!(up.hits(), exchanges.len(), "one upstream call per request");

    // dir + A128GCM needs a 128-bit key; the policy only allows 256-bit shared keys, so such
    // a body is refused. The 128-bit key is each half of the app's key: a proxy that
    // truncated its key to fit the enc would decrypt one of them.
    let dir = tempfile::tempdir().unwrap();
    let full_key = B64
        .decode(std::fs::read_to_string(&shared).unwrap().trim())
        .unwrap();
    let mut jobs = Vec::new();
    let mut dir128_sers = Vec::new();
    for (i, half) in full_key.chunks(16).enumerate() {
        let path = dir.path().join(format!("half-{i}.key"));
        std::fs::write(&path, B64.encode(half)).unwrap();
        let path = path.display().to_string();
        for ser in SERS {
            jobs.push(encrypt_job(
                "dir",
                "A128GCM",
                To::Shared(&path),
                Some("application/json"),
                None,
                ser,
                r#"{"dir":"A128GCM"}"#,
            ));
            dir128_sers.push(ser);
        }
    }
    let hits = up.hits();
    let mut dir128: BTreeMap<Ser, Vec<String>> = BTreeMap::new();
    for (jwe, ser) in batch_ok(jobs).await.into_iter().zip(dir128_sers) {
        let a = post_jwe(&p, "app-dir", &jwe.out, None).await;
        let errors = dir128.entry(ser).or_default();
        if a.status != 400 || a.code() != "invalid_encrypted_payload" {
            errors.push(format!("{} {}", a.status, String::from_utf8_lossy(&a.body)));
        }
    }
    assert_eq!(
        up.hits(),
        hits,
        "a refused dir+A128GCM body reached the upstream"
    );

    let mut table = String::from("\n| request alg | enc | kid |");
    for ser in SERS {
        table.push_str(&format!(" {} |", ser_name(ser)));
    }
    table.push_str("\n|---|---|---|---|---|---|\n");
    for (row, m) in modes.iter().enumerate() {
        table.push_str(&format!(
            "| {} | {} | {} |",
            m.alg,
            m.enc,
            m.kid.unwrap_or("-")
        ));
        for ser in SERS {
            let (n, failures) = &cells[&(row, ser)];
            table.push_str(&if failures.is_empty() {
                format!(" ok ({n}/{n}) |")
            } else {
                format!(" FAIL ({}/{n}) |", n - failures.len())
            });
        }
        table.push('\n');
    }
    table.push_str("| dir (128-bit key) | A128GCM | - |");
    for ser in SERS {
        table.push_str(if dir128[&ser].is_empty() {
            " refused 400 invalid_encrypted_payload (as required) |"
        } else {
            " FAIL: not refused |"
        });
    }
    eprintln!(
        "{table}\n(n/n = exchanges verified per cell: each sending app (app-rsa and app-ec for \
         hybrid modes, app-dir for dir) x response compact / flattened; each checks the \
         upstream's plaintext, content-type, content-length, accept-encoding, and joserfc's \
         decryption of the response: alg per app, enc A256GCM, cty application/json)"
    );

    let mut failures = Vec::new();
    for ((row, ser), (_, errors)) in &cells {
        let m = &modes[*row];
        for e in errors {
            failures.push(format!(
                "{} {} kid={:?} {}: {e}",
                m.alg,
                m.enc,
                m.kid,
                ser_name(*ser)
            ));
        }
    }
    for (ser, errors) in &dir128 {
        for e in errors {
            failures.push(format!("dir A128GCM {} not refused: {e}", ser_name(*ser)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Two identical requests get different ciphertexts: a fresh content key and IV per
/// response (and for ECDH-ES a fresh ephemeral key), for every kind of app key.
#[tokio::test]
async fn identical_responses_get_a_fresh_content_key_and_iv() {
    let (_up, p) = start().await;
    let fixed = r#"{"fixed":true}"#;
    let mut jwes = batch_ok(vec![
        encrypt_job(
            "RSA-OAEP-256",
            "A256GCM",
            To::Key("proxy-jwe-rsa.pub.pem"),
            Some("application/json"),
            None,
            Ser::Compact,
            "{}",
        ),
        encrypt_job(
            "dir",
            "A256GCM",
            To::Shared(&key("shared.key")),
            Some("application/json"),
            None,
            Ser::Compact,
            "{}",
        ),
    ])
    .await;
    let dir_request = jwes.pop().unwrap().out;
    let hybrid_request = jwes.pop().unwrap().out;
    let mut answers = Vec::new();
    for app in ["app-rsa", "app-ec", "app-dir"] {
        let request = if app == "app-dir" {
            &dir_request
        } else {
            &hybrid_request
        };
        for _ in 0..2 {
            let t = token(app);
            let a = post(
                &p,
                "/enc",
                &[("auth", &t), ("content-type", JOSE), ("x-test-body", fixed)],
                request.as_bytes(),
            )
            .await;
            check_sealed(&a, app, false).unwrap();
            answers.push((app, String::from_utf8(a.body.to_vec()).unwrap()));
        }
    }
    let mut jobs: Vec<Value> = answers
        .iter()
        .map(|(app, body)| decrypt_job(app, body.as_bytes()))
        .collect();
    for (_, body) in &answers[0..2] {
        jobs.push(json!({ "unwrap_cek": { "key": key("client-rsa.key.pem"), "jwe": body } }));
    }
    let out = batch_ok(jobs).await;
    for pair in answers.chunks(2).zip(out.chunks(2)) {
        let ([(app, a), (_, b)], [pa, pb]) = pair else {
            unreachable!()
        };
        assert_eq!(pa.out, fixed, "{app}: the upstream's bytes, exactly");
        assert_eq!(pb.out, fixed, "{app}: the upstream's bytes, exactly");
        assert_eq!(pa.header["cty"], "application/json");
        let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
        assert_ne!(a[2], b[2], "{app}: IV reused");
        assert_ne!(a[3], b[3], "{app}: same ciphertext for the same plaintext");
        assert_ne!(a[4], b[4], "{app}: same tag");
        if *app != "app-dir" {
            assert_ne!(a[1], b[1], "{app}: same encrypted key");
        }
        if *app == "app-ec" {
            assert_ne!(
                pa.header["epk"], pb.header["epk"],
                "{app}: ephemeral key reused"
            );
        }
    }
    let (cek_a, cek_b) = (&out[6].out, &out[7].out);
    assert_eq!(cek_a.len(), 64, "a 256-bit content key for A256GCM");
    assert_ne!(cek_a, cek_b, "app-rsa: content key reused");
}

/// A request JWE without `cty` gives the upstream no Content-Type (not application/jose);
/// a `cty` without a '/' is a media type under application/ (RFC 7515 §4.1.10, which RFC
/// 7516 §4.1.12 applies to JWE); parameters are kept.
#[tokio::test]
async fn request_cty_becomes_the_upstream_content_type() {
    let (_up, p) = start().await;
    let cases: [(Option<&str>, Option<&str>); 4] = [
        (None, None),
        (Some("application/json"), Some("application/json")),
        (
            Some("application/json; charset=utf-8"),
            Some("application/json; charset=utf-8"),
        ),
        (Some("json"), Some("application/json")),
    ];
    let jobs = cases
        .iter()
        .map(|(cty, _)| {
            encrypt_job(
                "RSA-OAEP-256",
                "A256GCM",
                To::Key("proxy-jwe-rsa.pub.pem"),
                *cty,
                None,
                Ser::Compact,
                r#"{"a":1}"#,
            )
        })
        .collect();
    let jwes = batch_ok(jobs).await;
    let mut answers = Vec::new();
    for jwe in &jwes {
        answers.push(post_jwe(&p, "app-rsa", &jwe.out, None).await);
    }
    let opened = batch(
        answers
            .iter()
            .map(|a| decrypt_job("app-rsa", &a.body))
            .collect(),
    )
    .await;
    let mut failures = Vec::new();
    for (((cty, want), a), r) in cases.iter().zip(&answers).zip(&opened) {
        let seen = check_sealed(a, "app-rsa", false)
            .and_then(|()| check_opened(r, "app-rsa", "application/json"))
            .map(|echo| Echo(echo).header("content-type"));
        match seen {
            Ok(seen) if seen.as_deref() == *want => {}
            Ok(seen) => failures.push(format!(
                "cty {cty:?}: upstream got content-type {seen:?}, want {want:?}"
            )),
            Err(e) => failures.push(format!("cty {cty:?}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A chunked request body (no Content-Length from the client) is buffered, decrypted and
/// forwarded with the plaintext's Content-Length and no Transfer-Encoding.
#[tokio::test]
async fn chunked_encrypted_request_gets_a_content_length_upstream() {
    let (_up, p) = start().await;
    let plaintext = r#"{"chunked":"yes","n":[1,2,3]}"#;
    let jwe = batch_ok(vec![encrypt_job(
        "ECDH-ES+A128KW",
        "A128GCM",
        To::Key("proxy-jwe-ec.pub.pem"),
        Some("application/json"),
        None,
        Ser::Compact,
        plaintext,
    )])
    .await
    .remove(0)
    .out;
    let (first, second) = jwe.split_at(jwe.len() / 2);
    let t = token("app-ec");
    let request = format!(
        "POST /enc HTTP/1.1\r\nHost: {addr}\r\nauth: {t}\r\ncontent-type: {JOSE}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len(),
        addr = p.addr,
    );
    let response = raw(p.addr, request.as_bytes()).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let opened = batch(vec![decrypt_job("app-ec", body.as_bytes())]).await;
    let echo = check_opened(&opened[0], "app-ec", "application/json").unwrap();
    check_upstream_saw(&echo, "app-ec", plaintext, "application/json").unwrap();
}

/// An empty plaintext is a valid JWE: the upstream gets an empty body with
/// `Content-Length: 0`, not the ciphertext's length and media type (a length it would wait
/// for, or take the next request on the connection for).
#[tokio::test]
async fn an_encrypted_empty_body_reaches_the_upstream_as_an_empty_body() {
    let (up, p) = start().await;
    let jwe = batch_ok(vec![encrypt_job(
        "RSA-OAEP-256",
        "A256GCM",
        To::Key("proxy-jwe-rsa.pub.pem"),
        None,
        None,
        Ser::Compact,
        "",
    )])
    .await
    .remove(0)
    .out;
    let a = post_jwe(&p, "app-rsa", &jwe, None).await;
    check_sealed(&a, "app-rsa", false).unwrap();
    let opened = batch(vec![decrypt_job("app-rsa", &a.body)]).await;
    let echo = Echo(check_opened(&opened[0], "app-rsa", "application/json").unwrap());
    assert_eq!(echo.0["body_len"], 0);
    assert_eq!(echo.header("content-length").as_deref(), Some("0"));
    assert!(
        echo.header("content-type").is_none(),
        "{:?}",
        echo.header("content-type")
    );
    assert_eq!(up.hits(), 1);
}

/// HEAD is allowed wherever GET is (SPEC §5). On an encrypted route its answer must not
/// describe the plaintext: the client sees a JOSE media type, as a GET would give it, and
/// not the plaintext's Content-Type and Content-Length.
#[tokio::test]
async fn head_on_an_encrypted_route_does_not_describe_the_plaintext() {
    let (up, p) = start().await;
    let t = token("app-rsa");
    // The upstream's GET/HEAD representation: 13 bytes of application/json.
    let fixed = r#"{"head":true}"#;
    let headers = [("auth", t.as_str()), ("x-test-body", fixed)];
    let g = get(&p.url("/enc"), &headers).await;
    check_sealed(&g, "app-rsa", false).unwrap();
    let h = send("HEAD", &p.url("/enc"), &headers, None).await;
    assert_eq!(up.hits(), 2);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(
        h.header("content-type"),
        Some(JOSE),
        "HEAD answers the plaintext's media type where GET answers {JOSE}: {:?}",
        h.headers
    );
    assert_ne!(
        h.header("content-length"),
        Some(fixed.len().to_string().as_str()),
        "HEAD reveals the plaintext's length: {:?}",
        h.headers
    );
}
