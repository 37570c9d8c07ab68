//! Payload encryption (SPEC §4) end to end: a real upstream, the real proxy, real HTTP, and
//! an independent JOSE implementation (Python joserfc, through tests/interop/jose_tool.py)
//! on the client side for every JWE the proxy reads or writes.
//!
//! Here: the response side, opt-out paths, JWKS and the README's client.
//!
//! Python is started once per test with a batch of jobs (tests/interop/jose_batch.py),
//! not once per JWE. Python and joserfc are required: without them the tests fail.
//! The policy, the jobs and the checks are in tests/common/payload.rs.

mod common;

use scopegate::policy::compile::sha256_hex;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::jose::*;
use common::payload::*;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

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
