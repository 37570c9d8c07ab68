//! Keys from identity providers (SPEC §3.2.1), `app_id_claims` and `issuer` (§3.2): the real
//! proxy against real JWKS servers started here on loopback, over HTTPS (the test CA of
//! tests/fixtures/tls) and HTTP, each counting the fetches it answers. Every token is made
//! by Python joserfc (tests/interop/jose_tool.py), and so is every JWK the servers publish.
//!
//! The cooldown of 30 s between fetches is the SPEC's; the tests that need it to pass wait
//! it out, in parallel with the others, so the file takes about a minute.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::jose::*;
use common::*;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const ISSUER: &str = "https://idp.test/realms/main";
const COOLDOWN: Duration = Duration::from_secs(31);

// ---------------------------------------------------------------- the JWKS server

/// What the server answers: a body, a status, a `Cache-Control`, a delay.
#[derive(Clone)]
struct Reply {
    body: Bytes,
    status: u16,
    cache_control: Option<&'static str>,
    delay: Duration,
}

impl Reply {
    fn jwks(keys: &[Value]) -> Reply {
        Reply::raw(json!({ "keys": keys }).to_string())
    }
    fn raw(body: impl Into<Bytes>) -> Reply {
        Reply {
            body: body.into(),
            status: 200,
            cache_control: None,
            delay: Duration::ZERO,
        }
    }
}

/// A JWKS server on `127.0.0.1:0` (or a given address), HTTP or HTTPS, counting its hits.
struct JwksServer {
    addr: SocketAddr,
    tls: bool,
    hits: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
    task: tokio::task::JoinHandle<()>,
}

fn tls_fixture(name: &str) -> String {
    format!("{REPO}/tests/fixtures/tls/{name}")
}

fn acceptor() -> tokio_rustls::TlsAcceptor {
    let certs = rustls_pemfile::certs(
        &mut std::fs::read(tls_fixture("server.crt.pem"))
            .unwrap()
            .as_slice(),
    )
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let key = rustls_pemfile::private_key(
        &mut std::fs::read(tls_fixture("server.key.pem"))
            .unwrap()
            .as_slice(),
    )
    .unwrap()
    .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

impl JwksServer {
    async fn start(tls: bool, reply: Reply) -> JwksServer {
        JwksServer::start_at("127.0.0.1:0".parse().unwrap(), tls, reply).await
    }

    async fn start_at(at: SocketAddr, tls: bool, reply: Reply) -> JwksServer {
        let listener = TcpListener::bind(at).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(reply));
        let (h, r) = (hits.clone(), reply.clone());
        let acceptor = tls.then(acceptor);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, r, acceptor) = (h.clone(), r.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let reply = r.lock().unwrap().clone();
                        async move {
                            tokio::time::sleep(reply.delay).await;
                            let mut resp = Response::new(Full::new(reply.body));
                            *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
                            resp.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            if let Some(cc) = reply.cache_control {
                                resp.headers_mut()
                                    .insert("cache-control", cc.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        JwksServer {
            addr,
            tls,
            hits,
            reply,
            task,
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/jwks.json", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Stops accepting: the port refuses connections from now on.
    fn stop(&self) {
        self.task.abort();
    }
}

/// A loopback port nothing listens on (bound, then released).
async fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------- keys and tokens

/// The public JWK of a fixture key, made by joserfc, with `kid` and extra members.
fn jwk(pem: &str, kid: Option<&str>, extra: Value) -> Value {
    let out = jose_tool(&["jwk", "--pub", &key(pem)], None);
    let mut k: Value = serde_json::from_slice(&out).unwrap();
    let o = k.as_object_mut().unwrap();
    o.remove("kid");
    if let Some(kid) = kid {
        o.insert("kid".into(), kid.into());
    }
    o.extend(extra.as_object().unwrap().clone());
    k
}

fn idp_claims(extra: Value) -> Value {
    let now = now();
    let mut c = json!({
        "azp": "idp-client", "iss": ISSUER, "sub": "user-1", "iat": now, "exp": now + 600,
        "jti": uuid_like(),
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A fresh value per token, so that no two tokens are equal (the verified-token cache).
fn uuid_like() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t-{}-{}", now(), N.fetch_add(1, Ordering::SeqCst))
}

/// Signs with joserfc: `(alg, private key fixture, kid, claims)`.
async fn tokens(specs: Vec<(&str, &str, Option<&str>, Value)>) -> Vec<String> {
    let jobs: Vec<Value> = specs
        .iter()
        .map(|(alg, pem, kid, claims)| {
            let header = match kid {
                Some(k) => json!({ "kid": k }),
                None => json!({}),
            };
            let signer = if alg.starts_with("HS") {
                pem.to_string()
            } else {
                key(pem)
            };
            Value::from(&sign_h(alg, &signer, claims, header))
        })
        .collect();
    batch_ok(jobs).await.into_iter().map(|o| o.out).collect()
}

async fn token(alg: &str, pem: &str, kid: Option<&str>, claims: Value) -> String {
    tokens(vec![(alg, pem, kid, claims)]).await.remove(0)
}

// ---------------------------------------------------------------- the proxy

/// One route, an IdP app per `(client_id, jwks_url, ca_file)`, and an HS256 app that
/// never depends on a JWKS.
fn policy(apps: &[(&str, &str, Option<&str>)]) -> String {
    let mut p = format!(
        r#"version: 1
scopes: {{ read: Read }}
routes:
  - {{ id: r, methods: [GET], path: /r, auth: [jwt], scopes: [read] }}
app_id_claims: [azp, appId]
apps:
  - client_id: hs-app
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    scopes: [read]
"#
    );
    for (id, url, ca) in apps {
        p.push_str(&format!(
            "  - client_id: {id}\n    algorithms: [RS256, PS256, ES256, EdDSA]\n    jwks_url: {url}\n    issuer: {ISSUER}\n    scopes: [read]\n"
        ));
        if let Some(ca) = ca {
            p.push_str(&format!("    jwks_ca_file: {ca}\n"));
        }
    }
    p
}

async fn proxy(apps: &[(&str, &str, Option<&str>)]) -> (Upstream, Proxy) {
    Proxy::with_upstream(&policy(apps)).await
}

async fn call(p: &Proxy, t: &str) -> Answer {
    get(&p.url("/r"), &[("authorization", &bearer(t))]).await
}

async fn status(p: &Proxy, t: &str) -> (u16, String) {
    let a = call(p, t).await;
    let code = if a.status == 200 {
        "ok".to_string()
    } else {
        a.code()
    };
    (a.status, code)
}

async fn policy_doc(p: &Proxy) -> Value {
    let body = reqwest::get(p.admin_url("/policy"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// `/policy`'s JWKS entry of `app`.
async fn jwks_of(p: &Proxy, app: &str) -> Value {
    let doc = policy_doc(p).await;
    doc["jwks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["app"] == app)
        .cloned()
        .unwrap_or_else(|| panic!("no jwks entry for {app}: {doc}"))
}

async fn fetched(p: &Proxy, app: &str) -> bool {
    jwks_of(p, app).await["last_fetch_result"] != "none"
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

// ================================================================ tests

#[tokio::test]
async fn every_key_type_over_https_with_and_without_kid() {
    let keys = vec![
        jwk("app-rsa.pub.pem", Some("rsa-1"), json!({ "use": "sig" })),
        jwk("app-ec256.pub.pem", Some("ec-1"), json!({ "alg": "ES256" })),
        jwk("app-ed25519.pub.pem", Some("ed-1"), json!({})),
    ];
    let server = JwksServer::start(true, Reply::jwks(&keys)).await;
    let ca = tls_fixture("ca.crt.pem");
    let (_up, p) = proxy(&[("idp-client", &server.url(), Some(&ca))]).await;
    let c = || idp_claims(json!({}));
    let t = tokens(vec![
        ("RS256", "app-rsa.key.pem", Some("rsa-1"), c()),
        ("PS256", "app-rsa.key.pem", Some("rsa-1"), c()),
        ("ES256", "app-ec256.key.pem", Some("ec-1"), c()),
        ("EdDSA", "app-ed25519.key.pem", Some("ed-1"), c()),
        ("RS256", "app-rsa.key.pem", None, c()),
        ("PS256", "app-rsa.key.pem", None, c()),
        ("ES256", "app-ec256.key.pem", None, c()),
        ("EdDSA", "app-ed25519.key.pem", None, c()),
        // Named by appId when azp is absent (app_id_claims: [azp, appId]).
        (
            "RS256",
            "app-rsa.key.pem",
            Some("rsa-1"),
            idp_claims(json!({ "azp": null, "appId": "idp-client" })),
        ),
    ])
    .await;
    for (i, t) in t.iter().enumerate() {
        let a = call(&p, t).await;
        let e = a.echo();
        assert_eq!(
            e.header("x-auth-app-id").as_deref(),
            Some("idp-client"),
            "token {i}"
        );
        assert_eq!(e.header("x-auth-subject").as_deref(), Some("user-1"));
    }
    // Cache hits: the same tokens again.
    for t in &t {
        assert_eq!(call(&p, t).await.status, 200);
    }
    assert_eq!(server.hits(), 1, "one fetch at start, none per request");

    let entry = jwks_of(&p, "idp-client").await;
    assert_eq!(entry["kids"], json!(["rsa-1", "ec-1", "ed-1"]), "{entry}");
    assert_eq!(entry["last_fetch_result"], "success");
    let doc = policy_doc(&p).await.to_string();
    for k in &keys {
        for member in ["n", "x", "y"] {
            if let Some(v) = k[member].as_str() {
                assert!(!doc.contains(v), "/policy shows key material");
            }
        }
    }
    let m = p.metrics().await;
    assert_eq!(
        metric(&m, "scopegate_jwks_keys{app=\"idp-client\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "scopegate_jwks_fetches_total{app=\"idp-client\",result=\"success\"}"
        ),
        Some(1.0)
    );
    assert!(metric(&m, "scopegate_jwks_age_seconds{app=\"idp-client\"}").is_some());
}

#[tokio::test]
async fn issuer_and_app_id_claims() {
    let keys = vec![jwk("app-rsa.pub.pem", Some("rsa-1"), json!({}))];
    let server = JwksServer::start(false, Reply::jwks(&keys)).await;
    let (_up, p) = proxy(&[("idp-client", &server.url(), None)]).await;
    let rs = |claims| ("RS256", "app-rsa.key.pem", Some("rsa-1"), claims);
    let t = tokens(vec![
        rs(idp_claims(json!({ "iss": "https://other.idp/" }))),
        rs(idp_claims(json!({ "iss": null }))),
        rs(idp_claims(json!({ "iss": 7 }))),
        // azp wins over appId: this names no app.
        rs(idp_claims(
            json!({ "azp": "nobody", "appId": "idp-client" }),
        )),
        // The first present claim must be a string.
        rs(idp_claims(json!({ "azp": ["idp-client"] }))),
        rs(idp_claims(json!({ "azp": null }))),
    ])
    .await;
    for (i, t) in t.iter().enumerate() {
        assert_eq!(
            status(&p, t).await,
            (401, "invalid_token".into()),
            "token {i}"
        );
    }
    // The HS256 app, named by appId, is unaffected.
    let hs = hs256(json!({ "appId": "hs-app", "exp": now() + 600 }));
    assert_eq!(call(&p, &hs).await.status, 200);
}

#[tokio::test]
async fn rotation_unknown_kid_single_flight_and_cooldown() {
    let old = jwk("app-rsa.pub.pem", Some("old"), json!({}));
    let new = jwk("app-rsa-other.pub.pem", Some("new"), json!({}));
    let server = JwksServer::start(false, Reply::jwks(std::slice::from_ref(&old))).await;
    let (_up, p) = proxy(&[("idp-client", &server.url(), None)]).await;
    eventually(Duration::from_secs(5), "first fetch", || {
        fetched(&p, "idp-client")
    })
    .await;
    assert_eq!(server.hits(), 1);

    // 100 tokens by the new key and 100 with random kids, made before the clock runs.
    let mut specs = Vec::new();
    for i in 0..200 {
        let c = idp_claims(json!({}));
        if i % 2 == 0 {
            specs.push(("RS256", "app-rsa-other.key.pem", Some("new"), c));
        } else {
            specs.push(("RS256", "app-rsa-other.key.pem", None, c));
        }
    }
    let mut t = tokens(specs).await;
    for (i, tok) in t.iter_mut().enumerate().filter(|(i, _)| i % 2 == 1) {
        *tok = set_header(tok, "kid", &format!("random-{i}"));
    }
    let old_tokens = tokens(
        (0..3)
            .map(|_| {
                (
                    "RS256",
                    "app-rsa.key.pem",
                    Some("old"),
                    idp_claims(json!({})),
                )
            })
            .collect(),
    )
    .await;
    // Within the cooldown of the fetch at start, an unknown kid is not fetched for.
    assert_eq!(status(&p, &t[0]).await, (401, "invalid_token".into()));
    assert_eq!(server.hits(), 1);

    // The IdP publishes the new key beside the old one.
    server.set(Reply::jwks(&[old.clone(), new.clone()]));
    tokio::time::sleep(COOLDOWN).await;
    let calls = t.iter().map(|tok| {
        let p = &p;
        async move { status(p, tok).await }
    });
    let answers = futures_join_all(calls).await;
    for (i, a) in answers.iter().enumerate() {
        let want = if i % 2 == 0 {
            (200, "ok".to_string())
        } else {
            (401, "invalid_token".to_string())
        };
        assert_eq!(*a, want, "request {i}");
    }
    assert_eq!(server.hits(), 2, "200 concurrent requests, one refetch");
    // Both keys verify while both are published.
    assert_eq!(call(&p, &old_tokens[0]).await.status, 200);
    // Cooldown: another unknown kid right away causes no fetch.
    let stray = set_header(&t[0], "kid", "yet-another");
    assert_eq!(status(&p, &stray).await, (401, "invalid_token".into()));
    assert_eq!(server.hits(), 2);

    // The old key is withdrawn: it still verifies until the next fetch, then no more.
    server.set(Reply::jwks(std::slice::from_ref(&new)));
    assert_eq!(call(&p, &old_tokens[1]).await.status, 200);
    tokio::time::sleep(COOLDOWN).await;
    assert_eq!(status(&p, &stray).await, (401, "invalid_token".into()));
    assert_eq!(server.hits(), 3);
    assert_eq!(
        status(&p, &old_tokens[2]).await,
        (401, "invalid_token".into())
    );
    assert_eq!(call(&p, &t[2]).await.status, 200);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn down_at_start_is_503_for_that_app_only_then_recovers_by_itself() {
    let at = free_port().await;
    let url = format!("http://{at}/jwks.json");
    let (_up, p) = proxy(&[("idp-client", &url, None)]).await;
    eventually(Duration::from_secs(5), "first fetch", || {
        fetched(&p, "idp-client")
    })
    .await;
    let t = token(
        "RS256",
        "app-rsa.key.pem",
        Some("rsa-1"),
        idp_claims(json!({})),
    )
    .await;
    let a = call(&p, &t).await;
    assert_eq!((a.status, a.code()), (503, "keys_unavailable".into()));
    assert!(a.header("www-authenticate").is_none());
    let entry = jwks_of(&p, "idp-client").await;
    let result = entry["last_fetch_result"].as_str().unwrap();
    assert!(result.starts_with("error: connect"), "{entry}");
    // Other apps keep working.
    let hs = hs256(json!({ "appId": "hs-app", "exp": now() + 600 }));
    assert_eq!(call(&p, &hs).await.status, 200);
    let m = p.metrics().await;
    assert!(
        metric(
            &m,
            "scopegate_jwks_fetches_total{app=\"idp-client\",result=\"connect\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );

    // The IdP comes up: the background retry (1 s, doubling) finds it, no restart.
    let keys = vec![jwk("app-rsa.pub.pem", Some("rsa-1"), json!({}))];
    let server = JwksServer::start_at(at, false, Reply::jwks(&keys)).await;
    eventually(Duration::from_secs(20), "service back", || async {
        call(&p, &t).await.status == 200
    })
    .await;
    assert!(server.hits() >= 1);
}

#[tokio::test]
async fn down_after_a_good_fetch_keeps_the_keys_and_a_reload_keeps_the_source() {
    let keys = vec![jwk("app-ec256.pub.pem", Some("ec-1"), json!({}))];
    let server = JwksServer::start(false, Reply::jwks(&keys)).await;
    let (_up, p) = proxy(&[("idp-client", &server.url(), None)]).await;
    let t = tokens(
        (0..3)
            .map(|_| {
                (
                    "ES256",
                    "app-ec256.key.pem",
                    Some("ec-1"),
                    idp_claims(json!({})),
                )
            })
            .collect(),
    )
    .await;
    assert_eq!(call(&p, &t[0]).await.status, 200);
    assert_eq!(server.hits(), 1);

    // A reload that changes the policy reuses the source: no refetch, keys kept.
    let text = std::fs::read_to_string(&p.policy_file).unwrap();
    std::fs::write(
        &p.policy_file,
        text.replace("read: Read", "read: Read things"),
    )
    .unwrap();
    eventually(Duration::from_secs(5), "reload", || async {
        policy_doc(&p).await["generation"] == 2
    })
    .await;
    assert_eq!(jwks_of(&p, "idp-client").await["kids"], json!(["ec-1"]));
    assert_eq!(server.hits(), 1);

    server.stop();
    tokio::time::sleep(COOLDOWN).await;
    // An unknown kid refetches; the fetch fails; the last good keys stay.
    let stray = set_header(&t[1], "kid", "unknown");
    assert_eq!(status(&p, &stray).await, (401, "invalid_token".into()));
    let entry = jwks_of(&p, "idp-client").await;
    assert!(
        entry["last_fetch_result"]
            .as_str()
            .unwrap()
            .starts_with("error: connect"),
        "{entry}"
    );
    assert_eq!(call(&p, &t[2]).await.status, 200, "stale keys still verify");
}

#[tokio::test]
async fn fetch_failures_leave_an_app_without_keys_503() {
    let keys = vec![jwk("app-rsa.pub.pem", Some("rsa-1"), json!({}))];
    let good = Reply::jwks(&keys);
    let ca = tls_fixture("ca.crt.pem");
    // The certificate names 127.0.0.1 and localhost: 127.0.0.2 is loopback but not named.
    let wrong_name = JwksServer::start_at("127.0.0.2:0".parse().unwrap(), true, good.clone()).await;
    let system_roots = JwksServer::start(true, good.clone()).await;
    let mut huge = b"{\"keys\":[".to_vec();
    huge.extend(std::iter::repeat_n(b' ', 1024 * 1024));
    huge.extend(b"]}");
    let oversize = JwksServer::start(false, Reply::raw(huge)).await;
    let slow = JwksServer::start(
        false,
        Reply {
            delay: Duration::from_secs(7),
            ..good.clone()
        },
    )
    .await;
    let garbage = JwksServer::start(false, Reply::raw("<html>not json</html>")).await;
    let error = JwksServer::start(
        false,
        Reply {
            status: 500,
            ..good.clone()
        },
    )
    .await;
    let oct_only = JwksServer::start(
        false,
        Reply::jwks(&[json!({ "kty": "oct", "kid": "rsa-1", "k": "c2VjcmV0" })]),
    )
    .await;
    let cases = [
        ("wrong-name", &wrong_name, Some(ca.as_str()), "error: tls"),
        ("wrong-ca", &system_roots, None, "error: tls"),
        (
            "oversize",
            &oversize,
            None,
            "error: body over 1048576 bytes",
        ),
        ("slow", &slow, None, "error: no answer within 5s"),
        ("garbage", &garbage, None, "error: JWKS is not JSON"),
        ("status", &error, None, "error: HTTP status 500"),
        (
            "oct-only",
            &oct_only,
            None,
            "error: JWKS has no usable signature key",
        ),
    ];
    let apps: Vec<(&str, String, Option<&str>)> = cases
        .iter()
        .map(|(id, s, ca, _)| (*id, s.url(), *ca))
        .collect();
    let apps: Vec<(&str, &str, Option<&str>)> =
        apps.iter().map(|(a, u, c)| (*a, u.as_str(), *c)).collect();
    let (_up, p) = proxy(&apps).await;
    let specs = cases
        .iter()
        .map(|(id, ..)| {
            (
                "RS256",
                "app-rsa.key.pem",
                Some("rsa-1"),
                idp_claims(json!({ "azp": id })),
            )
        })
        .collect();
    let t = tokens(specs).await;
    for ((id, _, _, want), t) in cases.iter().zip(&t) {
        let started = std::time::Instant::now();
        let a = call(&p, t).await;
        assert_eq!(
            (a.status, a.code()),
            (503, "keys_unavailable".into()),
            "{id}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "{id} waited too long"
        );
        let entry = jwks_of(&p, id).await;
        let result = entry["last_fetch_result"].as_str().unwrap();
        assert!(result.starts_with(want), "{id}: {entry}");
    }
    let hs = hs256(json!({ "appId": "hs-app", "exp": now() + 600 }));
    assert_eq!(call(&p, &hs).await.status, 200);
    let m = p.metrics().await;
    for (app, result) in [
        ("wrong-name", "tls"),
        ("wrong-ca", "tls"),
        ("oversize", "oversize"),
        ("slow", "timeout"),
        ("garbage", "invalid"),
        ("status", "status"),
    ] {
        let name = format!("scopegate_jwks_fetches_total{{app=\"{app}\",result=\"{result}\"}}");
        assert!(metric(&m, &name).is_some_and(|n| n >= 1.0), "{name}\n{m}");
    }
}

#[tokio::test]
async fn no_algorithm_confusion_through_a_jwks() {
    let secret = "an-hmac-secret-that-is-long-enough-0123";
    let k = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        secret.as_bytes(),
    );
    let keys = vec![
        jwk(
            "app-rsa.pub.pem",
            Some("rs-only"),
            json!({ "alg": "RS256" }),
        ),
        json!({ "kty": "oct", "kid": "hmac", "k": k, "alg": "HS256" }),
        jwk("app-ec256.pub.pem", Some("ec-1"), json!({})),
    ];
    let server = JwksServer::start(false, Reply::jwks(&keys)).await;
    let (_up, p) = proxy(&[("idp-client", &server.url(), None)]).await;
    let c = || idp_claims(json!({}));
    let t = tokens(vec![
        ("RS256", "app-rsa.key.pem", Some("rs-only"), c()),
        // The key says RS256: a PS256 signature by the same key is refused.
        ("PS256", "app-rsa.key.pem", Some("rs-only"), c()),
        // An HS256 token made with the JWKS's oct key.
        ("HS256", secret, Some("hmac"), c()),
        // An ES256 token naming the RSA key's kid.
        ("ES256", "app-ec256.key.pem", Some("rs-only"), c()),
        // An RS256 token naming the EC key's kid.
        ("RS256", "app-rsa.key.pem", Some("ec-1"), c()),
    ])
    .await;
    assert_eq!(call(&p, &t[0]).await.status, 200);
    for (i, t) in t.iter().enumerate().skip(1) {
        assert_eq!(
            status(&p, t).await,
            (401, "invalid_token".into()),
            "token {i}"
        );
    }
    assert_eq!(server.hits(), 1, "a known kid is never a reason to refetch");
    // HS256 with the app's kid but keyed by the RSA public key's PEM (classic confusion).
    let conf = batch_ok(vec![Value::from(&confusion(
        &key("app-rsa.pub.pem"),
        "HS256",
        &c(),
    ))])
    .await
    .remove(0)
    .out;
    assert_eq!(status(&p, &conf).await, (401, "invalid_token".into()));
}

/// `check` decides no request and never fetches; `explain` and `test` fetch an app's JWKS
/// when a token needs it, as the proxy does (over TLS here), and a fetch that fails is the
/// proxy's 503 `keys_unavailable`, naming the URL. Multi-threaded: the commands block this
/// thread while the JWKS server answers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_never_fetches_and_explain_and_test_fetch_as_the_proxy_does() {
    let keys = vec![jwk("app-rsa.pub.pem", Some("rsa-1"), json!({}))];
    let server = JwksServer::start(true, Reply::jwks(&keys)).await;
    // A port nothing listens on: the JWKS of `down-app` cannot be fetched.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down_url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_scopegate");
    let write = |name: &str, text: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let ca = tls_fixture("ca.crt.pem");
    let good = write(
        "good.yaml",
        &policy(&[
            ("idp-client", &server.url(), Some(&ca)),
            ("down-app", &down_url, None),
        ]),
    );
    let out = std::process::Command::new(bin)
        .args(["check", "--policy"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.hits(), 0, "check never fetches");

    let t = tokens(vec![
        (
            "RS256",
            "app-rsa.key.pem",
            Some("rsa-1"),
            idp_claims(json!({})),
        ),
        (
            "RS256",
            "app-rsa.key.pem",
            Some("rsa-1"),
            idp_claims(json!({ "azp": "down-app" })),
        ),
    ])
    .await;
    let explain = |token: &str| {
        let out = std::process::Command::new(bin)
            .args(["explain", "--format", "json", "--method", "GET"])
            .args(["--path", "/r", "--policy"])
            .arg(&good)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), v)
    };
    let (code, v) = explain(&t[0]);
    assert_eq!(
        (code, &v["status"], &v["code"]),
        (Some(0), &json!(200), &json!("ok")),
        "{v}"
    );
    assert_eq!(v["principal"], json!({ "kind": "jwt", "id": "idp-client" }));
    assert_eq!(server.hits(), 1, "explain fetched the JWKS once");
    let started = std::time::Instant::now();
    let (code, v) = explain(&t[1]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(code, Some(1));
    assert_eq!(
        (&v["status"], &v["code"]),
        (&json!(503), &json!("keys_unavailable"))
    );
    assert!(v.to_string().contains(&down_url), "{v}");

    // `test`: the same two requests as cases, the tokens from the environment.
    let cases = write(
        "cases.yaml",
        r#"- name: an IdP app's token, its keys fetched
  request: { method: GET, path: /r, headers: { Authorization: "Bearer {{env UP}}" } }
  expect: { status: 200 }
- name: an IdP that cannot be reached
  request: { method: GET, path: /r, headers: { Authorization: "Bearer {{env DOWN}}" } }
  expect: { status: 503, code: keys_unavailable }
"#,
    );
    let out = std::process::Command::new(bin)
        .args(["test", "--policy"])
        .arg(&good)
        .arg(&cases)
        .env("UP", &t[0])
        .env("DOWN", &t[1])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    assert_eq!(server.hits(), 2, "test fetched it too");

    let bad = write(
        "bad.yaml",
        &format!(
            r#"version: 1
scopes: {{ read: Read }}
apps:
  - client_id: a
    algorithms: [RS256]
    jwks_url: ftp://idp.example/jwks
  - client_id: b
    algorithms: [RS256, HS256]
    secret: {{ value: {HS_SECRET} }}
    jwks_url: https://idp.example/jwks
  - client_id: c
    algorithms: [RS256]
    jwks_url: https://idp.example/jwks
    jwks_ca_file: missing-ca.pem
  - client_id: d
    algorithms: [RS256]
    jwks_url: http://idp.example/jwks
    jwks_ca_file: {ca}
  - client_id: e
    algorithms: [RS256]
    jwks_url: https://idp.example/jwks
    public_key_file: {pem}
"#,
            ca = tls_fixture("ca.crt.pem"),
            pem = key("app-rsa.pub.pem"),
        ),
    );
    let out = std::process::Command::new(bin)
        .args(["check", "--policy"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "bad.yaml:6: app \"a\": jwks_url \"ftp://idp.example/jwks\" must be an http:// or https:// URL",
        "bad.yaml:10: app \"b\": an app with a jwks_url may not allow HS* algorithms",
        "bad.yaml:13: jwks_ca_file",
        "app \"d\": jwks_ca_file is set but jwks_url \"http://idp.example/jwks\" is not https://",
        "app \"e\": public_key_file and jwks_url exclude each other",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// Runs the futures concurrently (one task each) and returns their outputs in order.
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::with_capacity(futures.len());
    let mut pending: Vec<_> = futures.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(Option::unwrap));
    out
}
