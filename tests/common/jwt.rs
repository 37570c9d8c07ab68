//! Shared by the JWT interop tests (tests/jwt_*.rs): the policy every one of them runs, its
//! proxy, the claims they sign and the request helpers that assert acceptance or refusal.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::jose::*;
use super::*;

pub const HS: &str = "jwt-interop-hs-secret-0123456789abcdef0123456789abcdef0123456789abcdef";
/// The own secret of `app-mixed` (RS256 + HS256): anything but its public PEM.
pub const MIXED_HS: &str = "app-mixed-own-secret-fedcba9876543210fedcba9876543210fedcba98";
pub const AUD: &str = "https://api.example";

pub fn jwt_fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/jwt").join(name)
}

pub fn policy() -> String {
    let rsa = key("app-rsa.pub.pem");
    format!(
        r#"version: 1
scopes:
  bots:read: View bots
  bots:write: Change bots
routes:
  - {{ id: read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt], scopes: [bots:read] }}
  - {{ id: write, methods: [GET], path: "/v1/write/{{botId}}", auth: [jwt], scopes: [bots:write] }}
apps:
  - {{ client_id: app-hs, algorithms: [HS256, HS384, HS512], secret: {{ value: "{HS}" }}, scopes: [bots:read, bots:write] }}
  - {{ client_id: app-rs, algorithms: [RS256, RS384, RS512, PS256, PS384, PS512], public_key_file: "{rsa}", scopes: [bots:read, bots:write] }}
  - {{ client_id: app-rs-twin, algorithms: [RS256], public_key_file: "{rsa}", scopes: [bots:read, bots:write] }}
  - {{ client_id: app-rs256, algorithms: [RS256], public_key_file: "{rsa}", scopes: [bots:read] }}
  - {{ client_id: app-mixed, algorithms: [RS256, HS256], public_key_file: "{rsa}", secret: {{ value: "{MIXED_HS}" }}, scopes: [bots:read] }}
  - {{ client_id: app-es256, algorithms: [ES256], public_key_file: "{ec256}", scopes: [bots:read] }}
  - {{ client_id: app-es384, algorithms: [ES384], public_key_file: "{ec384}", scopes: [bots:read] }}
  - {{ client_id: app-ed, algorithms: [EdDSA], public_key_file: "{ed}", scopes: [bots:read] }}
  - client_id: app-claims
    algorithms: [HS256]
    secret: {{ value: "{HS}" }}
    leeway: 30s
    scopes: [bots:read]
    claims_to_headers: {{ tenant: x-auth-tenant }}
  - {{ client_id: app-long, algorithms: [HS256], secret: {{ value: "{HS}" }}, max_lifetime: 48h, leeway: 0s, scopes: [bots:read] }}
  - {{ client_id: app-aud, algorithms: [HS256], secret: {{ value: "{HS}" }}, audience: "{AUD}", scopes: [bots:read] }}
  - {{ client_id: app-jwe, algorithms: [RS256], public_key_file: "{rsa}", enforce_jwe: true, scopes: [bots:read] }}
jwe_keys:
  - {{ kid: sg-rsa, private_key_file: "{jwe_rsa}" }}
  - {{ kid: sg-ec, private_key_file: "{jwe_ec}" }}
"#,
        ec256 = key("app-ec256.pub.pem"),
        ec384 = key("app-ec384.pub.pem"),
        ed = key("app-ed25519.pub.pem"),
        jwe_rsa = key("proxy-jwe-rsa.key.pem"),
        jwe_ec = key("proxy-jwe-ec.key.pem"),
    )
}

pub async fn start() -> (Upstream, Proxy) {
    Proxy::with_upstream(&policy()).await
}

// ---------------------------------------------------------------- token making (joserfc)

/// Claims for `app`, valid for ten minutes; `extra` members are merged, a null removes one.
pub fn claims(app: &str, extra: Value) -> Value {
    let now = now();
    let mut c = json!({ "appId": app, "sub": "user-1", "iat": now, "exp": now + 600 });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

// ---------------------------------------------------------------- requests

pub async fn call(p: &Proxy, path: &str, token: &str) -> Answer {
    get(&p.url(path), &[("authorization", &bearer(token))]).await
}

/// Asserts that `token` is forwarded for `app` on the read route.
pub async fn accepted(p: &Proxy, token: &str, app: &str, what: &str) -> Echo {
    let a = call(p, "/v1/bots/b1", token).await;
    assert_eq!(
        a.status,
        200,
        "{what}: expected acceptance, got {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    let e = a.echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("jwt"), "{what}");
    assert_eq!(e.header("x-auth-app-id").as_deref(), Some(app), "{what}");
    e
}

/// Asserts a 401 with `code` on `path`, and that the upstream saw nothing.
pub async fn refused_on(p: &Proxy, up: &Upstream, path: &str, token: &str, code: &str, what: &str) {
    let before = up.hits();
    let a = call(p, path, token).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (401, code),
        "{what}: token {token}"
    );
    assert!(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer ") && v.contains(r#"error="invalid_token""#)),
        "{what}: 401 without the RFC 6750 challenge: {:?}",
        a.header("www-authenticate")
    );
    assert_eq!(up.hits(), before, "{what}: reached the upstream");
}

pub async fn refused(p: &Proxy, up: &Upstream, token: &str, code: &str, what: &str) {
    refused_on(p, up, "/v1/bots/b1", token, code, what).await;
}

/// Counts TCP connections made to it: proves a URL in a token header is never fetched.
pub async fn connection_counter() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}
