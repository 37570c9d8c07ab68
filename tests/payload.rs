//! Payload encryption (SPEC §4) end to end: a real upstream, the real proxy, real HTTP, and
//! an independent JOSE implementation (Python joserfc, through tests/interop/jose_tool.py)
//! on the client side for every JWE the proxy reads or writes.
//!
//! Python is started once per test with a batch of jobs (tests/interop/jose_batch.py),
//! not once per JWE. Python and joserfc are required: without them the tests fail.

mod common;

use scopegate::policy::compile::sha256_hex;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::jose::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const JOSE: &str = "application/jose";
const JOSE_JSON: &str = "application/jose+json";

fn policy() -> String {
    format!(
        r#"version: 1
routes:
  - {{ id: enc-post, methods: [POST], path: /enc, auth: [jwt], encryption: supported }}
  - {{ id: enc-get, methods: [GET], path: /enc, auth: [jwt], encryption: supported }}
  - {{ id: plain, methods: [POST], path: /plain, auth: [jwt] }}
apps:
  - client_id: app-rsa
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
    payload_encryption: {{ public_key_file: "{rsa}" }}
  - client_id: app-ec
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
    payload_encryption: {{ public_key_file: "{ec}" }}
  - client_id: app-dir
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
    payload_encryption: {{ shared_key: {{ file: "{shared}" }} }}
  - client_id: app-plain
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
jwe_keys:
  - {{ kid: sg-rsa, private_key_file: "{jwe_rsa}" }}
  - {{ kid: sg-ec, private_key_file: "{jwe_ec}" }}
"#,
        rsa = key("client-rsa.pub.pem"),
        ec = key("client-ec.pub.pem"),
        shared = key("shared.key"),
        jwe_rsa = key("proxy-jwe-rsa.key.pem"),
        jwe_ec = key("proxy-jwe-ec.key.pem"),
    )
}

async fn start() -> (Upstream, Proxy) {
    Proxy::with_upstream(&policy()).await
}

fn token(app: &str) -> String {
    hs256(json!({ "appId": app, "exp": now() + 600 }))
}

// ---------------------------------------------------------------- joserfc, in batches

/// What a client encrypts with.
#[derive(Clone, Copy, Debug)]
enum To<'a> {
    /// A PEM public key (file name under tests/fixtures/keys).
    Key(&'a str),
    /// A file holding a base64url symmetric key.
    Shared(&'a str),
}

/// A request serialization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ser {
    /// `Content-Type: application/jose`.
    Compact,
    /// Flattened JSON with every header parameter protected (`jose_tool --json`),
    /// `Content-Type: application/jose+json`.
    Flattened,
    /// Flattened JSON as joserfc's own JSON encoder writes it (`--json-native`): `epk` in
    /// the per-recipient unprotected `header`.
    Native,
}

const SERS: [Ser; 3] = [Ser::Compact, Ser::Flattened, Ser::Native];

/// `jose_tool encrypt`: `plaintext` to `to`, in serialization `ser`.
fn encrypt_job(
    alg: &str,
    enc: &str,
    to: To,
    cty: Option<&str>,
    kid: Option<&str>,
    ser: Ser,
    plaintext: &str,
) -> Value {
    let mut args = vec![
        "encrypt".into(),
        "--alg".into(),
        alg.into(),
        "--enc".into(),
        enc.into(),
    ];
    match to {
        To::Key(name) => args.extend(["--key".into(), key(name)]),
        To::Shared(path) => args.extend(["--shared-file".into(), path.to_string()]),
    }
    if let Some(cty) = cty {
        args.extend(["--cty".into(), cty.into()]);
    }
    if let Some(kid) = kid {
        args.extend(["--kid".into(), kid.into()]);
    }
    match ser {
        Ser::Compact => {}
        Ser::Flattened => args.push("--json".into()),
        Ser::Native => args.push("--json-native".into()),
    }
    json!({ "args": args, "stdin": plaintext })
}

/// `jose_tool decrypt` of a response body, as the app `app` would.
fn decrypt_job(app: &str, body: &[u8]) -> Value {
    let (flag, path) = match app {
        "app-rsa" => ("--key", key("client-rsa.key.pem")),
        "app-ec" => ("--key", key("client-ec.key.pem")),
        "app-dir" => ("--shared-file", key("shared.key")),
        other => panic!("no decryption key for {other}"),
    };
    json!({
        "args": ["decrypt", flag, path],
        "stdin": String::from_utf8_lossy(body),
    })
}

/// The `alg` each app's responses must use (SPEC §4: responses always use these, with
/// `enc: A256GCM`).
fn response_alg(app: &str) -> &'static str {
    match app {
        "app-rsa" => "RSA-OAEP-256",
        "app-ec" => "ECDH-ES+A256KW",
        "app-dir" => "dir",
        other => panic!("{other} does not encrypt"),
    }
}

// ---------------------------------------------------------------- requests

async fn post(p: &Proxy, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    send("POST", &p.url(path), headers, Some(body.to_vec())).await
}

/// Sends `jwe` (compact or flattened, chosen by its first byte) to POST /enc as `app`.
async fn post_jwe(p: &Proxy, app: &str, jwe: &str, accept: Option<&str>) -> Answer {
    let ct = if jwe.starts_with('{') {
        JOSE_JSON
    } else {
        JOSE
    };
    let t = token(app);
    let mut headers = vec![("auth", t.as_str()), ("content-type", ct)];
    if let Some(a) = accept {
        headers.push(("accept", a));
    }
    post(p, "/enc", &headers, jwe.as_bytes()).await
}

/// Checks an encrypted response's HTTP framing: status 200, the JOSE media type the request
/// asked for, a correct Content-Length, and the members of the serialization.
fn check_sealed(a: &Answer, app: &str, flattened: bool) -> Result<(), String> {
    if a.status != 200 {
        return Err(format!(
            "status {} body {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    let want = if flattened { JOSE_JSON } else { JOSE };
    if a.header("content-type") != Some(want) {
        return Err(format!(
            "response content-type {:?}, want {want}",
            a.header("content-type")
        ));
    }
    if a.header("content-length") != Some(a.body.len().to_string().as_str()) {
        return Err(format!(
            "content-length {:?} for {} bytes",
            a.header("content-length"),
            a.body.len()
        ));
    }
    if a.headers.contains_key("content-encoding") {
        return Err("content-encoding on a JWE response".into());
    }
    let dir = app == "app-dir";
    if flattened {
        let v: Value = serde_json::from_slice(&a.body)
            .map_err(|e| format!("flattened response is not JSON: {e}"))?;
        let members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec!["ciphertext", "iv", "protected", "tag"];
        if !dir {
            want.push("encrypted_key");
        }
        for m in &want {
            if !members.contains(m) {
                return Err(format!("flattened response lacks {m}: {members:?}"));
            }
        }
        if let Some(extra) = members
            .iter()
            .find(|m| !["ciphertext", "iv", "protected", "tag", "encrypted_key"].contains(m))
        {
            return Err(format!("unexpected member {extra} in {members:?}"));
        }
    } else {
        let text = std::str::from_utf8(&a.body).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 5 {
            return Err(format!("compact response has {} parts", parts.len()));
        }
        if dir != parts[1].is_empty() {
            return Err(format!("encrypted_key part {:?} for {app}", parts[1]));
        }
    }
    Ok(())
}

/// Checks joserfc's decryption of a response: the header the SPEC requires and the plaintext.
fn check_opened(r: &Result<PyOut, String>, app: &str, cty: &str) -> Result<Value, String> {
    let opened = r
        .as_ref()
        .map_err(|e| format!("joserfc cannot decrypt the response: {e}"))?;
    let h = &opened.header;
    let want = json!({ "alg": response_alg(app), "enc": "A256GCM", "cty": cty });
    for name in ["alg", "enc", "cty"] {
        if h[name] != want[name] {
            return Err(format!("response header {name}: {} in {h}", h[name]));
        }
    }
    if h.get("zip").is_some() || h.get("crit").is_some() {
        return Err(format!("response header {h}"));
    }
    serde_json::from_str(&opened.out).map_err(|e| format!("plaintext is not JSON ({e})"))
}

/// Checks what the echo upstream says it received for an encrypted POST of `plaintext`.
fn check_upstream_saw(echo: &Value, app: &str, plaintext: &str, cty: &str) -> Result<(), String> {
    let e = Echo(echo.clone());
    let checks = [
        ("method", echo["method"] == "POST"),
        ("path", e.path() == "/enc"),
        ("body", echo["body"] == plaintext),
        ("body_len", echo["body_len"] == plaintext.len()),
        (
            "body_sha256",
            echo["body_sha256"] == sha256_hex(plaintext.as_bytes()),
        ),
        (
            "content-type",
            e.header("content-type").as_deref() == Some(cty),
        ),
        (
            "content-length",
            e.header("content-length") == Some(plaintext.len().to_string()),
        ),
        (
            "no transfer-encoding",
            e.header("transfer-encoding").is_none(),
        ),
        (
            "accept-encoding",
            e.header("accept-encoding").as_deref() == Some("identity"),
        ),
        ("app id", e.header("x-auth-app-id").as_deref() == Some(app)),
        ("no credential", e.header("auth").is_none()),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(format!("upstream saw a wrong {what}: {echo}")),
        None => Ok(()),
    }
}

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

// ---------------------------------------------------------------- 3. response side

/// An upstream that misbehaves on purpose, chosen by the request header `x-mode`:
/// `gzip` answers `Content-Encoding: gzip` whatever Accept-Encoding said; `validators`
/// answers plain JSON with an ETag and digests of the plaintext. It records the
/// Accept-Encoding it received.
async fn odd_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let mode = req
                            .headers()
                            .get("x-mode")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        log.lock().unwrap().push(
                            req.headers()
                                .get("accept-encoding")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default(),
                        );
                        let _ = req.into_body().collect().await;
                        let mut resp = http::Response::builder().status(200);
                        let body: &[u8] = match mode.as_str() {
                            "gzip" => {
                                resp = resp
                                    .header("content-type", "application/json")
                                    .header("content-encoding", "gzip")
                                    .header("etag", "\"gz\"");
                                b"\x1f\x8b\x08\x00UPSTREAM-SECRET-BYTES"
                            }
                            _ => {
                                resp = resp
                                    .header("content-type", "application/json")
                                    .header("etag", "\"abc\"")
                                    .header("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ==")
                                    .header("repr-digest", "sha-256=:YWJj:")
                                    .header("x-upstream", "kept");
                                br#"{"validators":true}"#
                            }
                        };
                        Ok::<_, Infallible>(resp.body(Full::new(Bytes::from_static(body))).unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A response that cannot be encrypted is 502 `encryption_failed` (never plaintext, never the
/// upstream's bytes); validators and digests of the plaintext do not travel with ciphertext.
#[tokio::test]
async fn responses_that_cannot_be_sealed_are_502_and_validators_are_dropped() {
    let (addr, seen) = odd_upstream().await;
    let p = ProxyBuilder::new(&policy())
        .upstream("default", addr)
        .start()
        .await;
    let t = token("app-rsa");

    // Content-Encoding: gzip despite Accept-Encoding: identity, on a GET and on a POST.
    let jwe = batch_ok(vec![encrypt_job(
        "RSA-OAEP-256",
        "A256GCM",
        To::Key("proxy-jwe-rsa.pub.pem"),
        Some("application/json"),
        None,
        Ser::Compact,
        "{}",
    )])
    .await
    .remove(0)
    .out;
    for a in [
        get(&p.url("/enc"), &[("auth", &t), ("x-mode", "gzip")]).await,
        post(
            &p,
            "/enc",
            &[("auth", &t), ("x-mode", "gzip"), ("content-type", JOSE)],
            jwe.as_bytes(),
        )
        .await,
    ] {
        assert_eq!((a.status, a.code().as_str()), (502, "encryption_failed"));
        let text = String::from_utf8_lossy(&a.body);
        assert!(!text.contains("UPSTREAM-SECRET"), "upstream bytes: {text}");
        assert!(!a.body.starts_with(b"\x1f\x8b"));
        for h in ["content-encoding", "etag"] {
            assert!(a.header(h).is_none(), "{h} on the 502: {:?}", a.headers);
        }
    }

    // Validators: ETag and digests describe the plaintext; they are dropped.
    let mut answers = Vec::new();
    for accept in [None, Some(JOSE_JSON)] {
        let mut headers = vec![("auth", t.as_str()), ("x-mode", "validators")];
        if let Some(a) = accept {
            headers.push(("accept", a));
        }
        let a = get(&p.url("/enc"), &headers).await;
        check_sealed(&a, "app-rsa", accept.is_some()).unwrap();
        for h in ["etag", "content-md5", "repr-digest"] {
            assert!(a.header(h).is_none(), "{h} sent alongside ciphertext");
        }
        assert_eq!(a.header("x-upstream"), Some("kept"), "other headers pass");
        answers.push(a);
    }
    let opened = batch_ok(
        answers
            .iter()
            .map(|a| decrypt_job("app-rsa", &a.body))
            .collect(),
    )
    .await;
    for o in &opened {
        assert_eq!(o.out, r#"{"validators":true}"#);
        assert_eq!(o.header["cty"], "application/json");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter().all(|ae| ae == "identity"),
        "upstream was asked for {seen:?}"
    );
}

/// Errors the proxy itself produces on an encrypted route stay plaintext problem+json;
/// the upstream's own error responses are encrypted like any other (status kept).
#[tokio::test]
async fn proxy_errors_stay_plaintext_upstream_errors_are_sealed() {
    let (up, p) = start().await;
    let a = send(
        "POST",
        &p.url("/enc"),
        &[("content-type", JOSE)],
        Some(b"x.y.z.w.v".to_vec()),
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (401, "missing_credentials"));
    assert!(a.header("www-authenticate").is_some());
    let expired = hs256(json!({ "appId": "app-rsa", "exp": now() - 3600 }));
    let a = get(&p.url("/enc"), &[("auth", &expired)]).await;
    assert_eq!((a.status, a.code().as_str()), (401, "token_expired"));
    assert_eq!(up.hits(), 0);

    // The upstream answered 404 with a JSON body: the client gets a 404 it can decrypt.
    let t = token("app-ec");
    let a = get(
        &p.url("/enc"),
        &[
            ("auth", &t),
            ("x-test-status", "404"),
            ("x-test-body", r#"{"error":"nope"}"#),
        ],
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), Some(JOSE));
    assert!(!String::from_utf8_lossy(&a.body).contains("nope"));
    let o = batch_ok(vec![decrypt_job("app-ec", &a.body)]).await;
    assert_eq!(o[0].out, r#"{"error":"nope"}"#);

    // Upstream down: the proxy's 502 is plaintext.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = ProxyBuilder::new(&policy())
        .upstream("default", closed)
        .start()
        .await;
    let a = get(&down.url("/enc"), &[("auth", &t)]).await;
    assert_eq!((a.status, a.code().as_str()), (502, "upstream_unavailable"));
}

// ---------------------------------------------------------------- 4. opt-out paths

/// An app without payload_encryption on an encrypted route, and an opted-in app on a route
/// with encryption off, pass bodies and responses through untouched; a GET without a body
/// from an opted-in app is forwarded and its response is still encrypted.
#[tokio::test]
async fn opt_out_paths_pass_through_untouched() {
    let (_up, p) = start().await;
    let body = r#"{"as":"is"}"#;
    let jwe_like = "eyJhbGciOiJkaXIifQ..AAAA.BBBB.CCCC";
    let cases = [
        ("app-plain", "/enc", "application/json", body),
        ("app-plain", "/enc", JOSE, jwe_like),
        ("app-rsa", "/plain", "application/json", body),
        ("app-rsa", "/plain", JOSE, jwe_like),
    ];
    for (app, path, ct, body) in cases {
        let t = token(app);
        let a = post(
            &p,
            path,
            &[
                ("auth", &t),
                ("content-type", ct),
                ("accept-encoding", "gzip, br"),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(
            a.header("content-type"),
            Some("application/json"),
            "{app} {path}"
        );
        let e = a.echo();
        assert_eq!(e.0["body"], body, "{app} {path}: body forwarded as is");
        assert_eq!(e.0["body_sha256"], sha256_hex(body.as_bytes()));
        assert_eq!(e.header("content-type").as_deref(), Some(ct));
        assert_eq!(
            e.header("accept-encoding").as_deref(),
            Some("gzip, br"),
            "{app} {path}: the client's Accept-Encoding is kept when nothing is encrypted"
        );
        assert_eq!(e.header("x-auth-app-id").as_deref(), Some(app));
    }

    // GET /enc without a body from an opted-in app: forwarded, response encrypted.
    let mut answers = Vec::new();
    for (app, accept) in [
        ("app-rsa", None),
        ("app-ec", Some(JOSE_JSON)),
        ("app-dir", Some(JOSE)),
    ] {
        let t = token(app);
        let mut headers = vec![("auth", t.as_str())];
        if let Some(a) = accept {
            headers.push(("accept", a));
        }
        let a = get(&p.url("/enc"), &headers).await;
        check_sealed(&a, app, accept == Some(JOSE_JSON)).unwrap();
        answers.push((app, a));
    }
    let opened = batch(
        answers
            .iter()
            .map(|(app, a)| decrypt_job(app, &a.body))
            .collect(),
    )
    .await;
    for ((app, _), r) in answers.iter().zip(&opened) {
        let echo = check_opened(r, app, "application/json").unwrap();
        let e = Echo(echo);
        assert_eq!(e.0["method"], "GET");
        assert_eq!(e.path(), "/enc");
        assert_eq!(e.0["body_len"], 0);
        assert_eq!(e.header("accept-encoding").as_deref(), Some("identity"));
        assert_eq!(e.header("x-auth-app-id").as_deref(), Some(*app));
    }
}

// ---------------------------------------------------------------- 5. JWKS

/// The public parts of `jwe_keys`, on the public listener without a credential; the keys are
/// those of the PEM files, and no private member leaks.
#[tokio::test]
async fn jwks_publishes_the_public_parts_of_jwe_keys() {
    let (up, p) = start().await;
    let a = get(
        &p.url("/.well-known/scopegate/jwks.json"),
        &[("x-request-id", "jwks-1")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/jwk-set+json"));
    assert_eq!(a.header("x-request-id"), Some("jwks-1"));
    let jwks: Value = serde_json::from_slice(&a.body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{jwks}");
    let by_kid = |kid: &str| {
        keys.iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("no {kid} in {jwks}"))
    };
    let (rsa, ec) = (by_kid("sg-rsa"), by_kid("sg-ec"));
    assert_eq!(
        (&rsa["kty"], &rsa["alg"], &rsa["use"]),
        (&json!("RSA"), &json!("RSA-OAEP-256"), &json!("enc"))
    );
    assert_eq!(
        (&ec["kty"], &ec["crv"], &ec["alg"], &ec["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ECDH-ES+A256KW"),
            &json!("enc")
        )
    );
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(k.get(private).is_none(), "private member {private} in {k}");
        }
    }
    // The published keys are the proxy's own (joserfc's reading of the PEM files).
    let pems = batch_ok(vec![
        json!({ "args": ["jwk", "--pub", key("proxy-jwe-rsa.pub.pem")] }),
        json!({ "args": ["jwk", "--pub", key("proxy-jwe-ec.pub.pem")] }),
    ])
    .await;
    let pem_rsa: Value = serde_json::from_str(&pems[0].out).unwrap();
    let pem_ec: Value = serde_json::from_str(&pems[1].out).unwrap();
    for m in ["n", "e"] {
        assert_eq!(rsa[m], pem_rsa[m], "sg-rsa {m}");
    }
    for m in ["x", "y"] {
        assert_eq!(ec[m], pem_ec[m], "sg-ec {m}");
    }
    assert_eq!(up.hits(), 0, "the JWKS is the proxy's, not the upstream's");
}

// ---------------------------------------------------------------- 6. the README's client

/// tests/interop/client_example.py, as shown in the README: JWKS, encrypt, send with urllib,
/// decrypt, print. It runs against the real proxy and upstream.
#[tokio::test]
async fn readme_client_example_round_trips() {
    let (up, p) = start().await;
    let base = format!("http://{}", p.addr);
    let t = token("app-rsa");
    let private = key("client-rsa.key.pem");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(Path::new(REPO).join("tests/interop/client_example.py"))
            .args([&base, &t, &private])
            .output()
            .expect("python3 is required (CI installs joserfc)")
    });
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("client_example.py did not finish within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client_example.py failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("client_example.py printed:\n{stdout}");
    assert!(stdout.contains(r#""method": "POST""#), "{stdout}");
    assert!(stdout.contains(r#""path": "/enc""#), "{stdout}");
    let echo = Echo(serde_json::from_str(&stdout).unwrap());
    let sent: Value = serde_json::from_str(echo.0["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({ "botId": "st-1234", "message": "hello" }));
    assert_eq!(
        echo.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(echo.header("x-auth-app-id").as_deref(), Some("app-rsa"));
    assert_eq!(up.hits(), 1);
}
