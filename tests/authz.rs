//! The authorization service (SPEC §8): one decision table asked of the proxy and of the
//! authorization listener in each ingress's request shape (nginx, Traefik, Envoy), which
//! must agree on every status and code; then real nginx with `auth_request` in front of a
//! real upstream.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::policy::{self, *};
use common::*;
use serde_json::json;

/// The standard policy with the proxy and authz listeners both on, in one process.
async fn both(extra: &str) -> (Upstream, Proxy, SocketAddr) {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config(&format!("authz: {{ listen: 127.0.0.1:0{extra} }}"))
        .start()
        .await;
    let authz = p.running.as_ref().unwrap().authz_addr.unwrap();
    (up, p, authz)
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
        status,
        code,
    }
}

impl Case {
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
    fn body(mut self, b: &[u8]) -> Case {
        self.body = Some(b.to_vec());
        self
    }
}

/// The decision table: every kind of outcome the proxy's decision gives.
fn table() -> Vec<Case> {
    let bearer = |k: &str| format!("Bearer {k}");
    let hs = token("app-hs", json!({}));
    let hook = br#"{"event":"x"}"#;
    let now = now() as i64;
    vec![
        case("api key", "GET", "/v1/bots/bot-1", 200, "ok").with("authorization", bearer(KEY_READ)),
        case("jwt in auth:", "GET", "/v1/bots/bot-1", 200, "ok").with("auth", hs.clone()),
        case("public", "GET", "/public/a?x=1", 200, "ok"),
        case("optional auth, none", "GET", "/optional", 200, "ok"),
        case("shadow lets it through", "GET", "/shadow", 200, "ok"),
        case("webhook signed", "POST", "/hooks/slack", 200, "ok")
            .with("x-signature", webhook_sig(now, hook))
            .body(hook),
        case(
            "no credential",
            "GET",
            "/v1/bots/bot-1",
            401,
            "missing_credentials",
        ),
        case(
            "disabled key",
            "GET",
            "/v1/bots/bot-1",
            401,
            "api_key_disabled",
        )
        .with("authorization", bearer(KEY_DISABLED)),
        case(
            "expired key",
            "GET",
            "/v1/bots/bot-1",
            401,
            "api_key_expired",
        )
        .with("authorization", bearer(KEY_EXPIRED)),
        case(
            "unknown key",
            "GET",
            "/v1/bots/bot-1",
            401,
            "invalid_api_key",
        )
        .with("authorization", bearer("sk_live_nobody_0123456789")),
        case(
            "forged token",
            "GET",
            "/v1/bots/bot-1",
            401,
            "invalid_token",
        )
        .with("auth", format!("{}x", &hs[..hs.len() - 1])),
        case(
            "expired token",
            "GET",
            "/v1/bots/bot-1",
            401,
            "token_expired",
        )
        .with("auth", token("app-hs", json!({ "exp": now - 100 }))),
        case(
            "token not yet valid",
            "GET",
            "/v1/bots/bot-1",
            401,
            "token_not_yet_valid",
        )
        .with("auth", token("app-hs", json!({ "nbf": now + 3600 }))),
        case("jti required", "GET", "/v1/bots/x", 401, "jti_required").with(
            "auth",
            token("app-strict", json!({ "aud": "https://api.example" })),
        ),
        case(
            "wrong audience",
            "GET",
            "/v1/bots/x",
            401,
            "invalid_audience",
        )
        .with(
            "auth",
            token("app-strict", json!({ "aud": "nope", "jti": "j" })),
        ),
        case("kind not accepted", "GET", "/v1/bots", 401, "invalid_token").with("auth", hs.clone()),
        case(
            "webhook unsigned",
            "POST",
            "/hooks/slack",
            401,
            "missing_credentials",
        )
        .body(hook),
        case(
            "webhook signed by someone else",
            "POST",
            "/hooks/slack",
            401,
            "invalid_signature",
        )
        .with("x-signature", format!("t={now},v1={}", "0".repeat(64)))
        .body(hook),
        case(
            "stale webhook",
            "POST",
            "/hooks/slack",
            401,
            "stale_signature",
        )
        .with("x-signature", webhook_sig(now - 10_000, hook))
        .body(hook),
        case(
            "two credentials",
            "GET",
            "/v1/bots/bot-1",
            400,
            "malformed_request",
        )
        .with("authorization", bearer(KEY_READ))
        .with("auth", hs.clone()),
        case(
            "scope missing",
            "POST",
            "/v1/bots/bot-1",
            403,
            "insufficient_scope",
        )
        .with("authorization", bearer(KEY_READ)),
        case(
            "resource not granted",
            "GET",
            "/v1/bots/bot-9",
            403,
            "resource_not_allowed",
        )
        .with("auth", hs.clone()),
        case("no route", "GET", "/nothing/here", 404, "no_route"),
        case(
            "method not routed",
            "DELETE",
            "/v1/bots/bot-1",
            404,
            "no_route",
        ),
        case("trace", "TRACE", "/public/a", 404, "no_route"),
        case(
            "dot-dot onto a protected path",
            "GET",
            "/public/../v1/bots/bot-1",
            401,
            "missing_credentials",
        ),
        case(
            "encoded dot-dot",
            "GET",
            "/public/%2e%2e/v1/bots/bot-1",
            401,
            "missing_credentials",
        ),
        case("encoded slash", "GET", "/public/a%2Fb", 400, "invalid_path"),
        case("semicolon", "GET", "/public/a;b", 400, "invalid_path"),
        case(
            "climbing above the root",
            "GET",
            "/public/../../etc",
            400,
            "invalid_path",
        ),
    ]
}

/// How each ingress asks about a request.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// The proxy itself, for reference.
    Proxy,
    Nginx,
    Traefik,
    Envoy,
}

async fn ask(proxy: SocketAddr, authz: SocketAddr, shape: Shape, c: &Case) -> Answer {
    let mut headers: Vec<(&str, String)> = Vec::new();
    let (addr, method, target) = match shape {
        Shape::Proxy => (proxy, c.method, c.path.as_str()),
        // nginx's auth_request subrequest is a GET to its own location, the original in
        // X-Original-*; ingress-nginx also sends X-Original-URL.
        Shape::Nginx => {
            headers.push(("x-original-method", c.method.into()));
            headers.push(("x-original-uri", c.path.clone()));
            headers.push(("x-original-url", format!("https://api.example{}", c.path)));
            (authz, "GET", "/_scopegate")
        }
        Shape::Traefik => {
            headers.push(("x-forwarded-method", c.method.into()));
            headers.push(("x-forwarded-uri", c.path.clone()));
            headers.push(("x-forwarded-proto", "https".into()));
            headers.push(("x-forwarded-host", "api.example".into()));
            headers.push(("x-forwarded-for", "203.0.113.7".into()));
            (authz, "GET", "/")
        }
        // Envoy's HTTP ext_authz sends the original method and path as its own.
        Shape::Envoy => (authz, c.method, c.path.as_str()),
    };
    headers.extend(c.headers.iter().cloned());
    // nginx and Traefik send no body; Envoy does with `with_request_body`, and a webhook
    // needs it on every shape.
    exact(addr, method, target, &headers, c.body.as_deref()).await
}

/// One request with its target exactly as written (an HTTP client library would resolve
/// `..` and `%2e%2e` before sending).
async fn exact(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.unwrap_or_default();
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let mut map = reqwest::header::HeaderMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        map.append(
            reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    Answer {
        status,
        headers: map,
        body: bytes::Bytes::copy_from_slice(&out[split + 4..]),
    }
}

fn outcome(a: &Answer) -> (u16, String) {
    if a.status == 200 {
        (200, "ok".into())
    } else {
        (a.status, a.code())
    }
}

#[tokio::test]
async fn every_decision_is_the_same_on_the_proxy_the_authorization_service_and_explain() {
    let (up, p, authz) = both("").await;
    let mut failures = Vec::new();
    for c in table() {
        for shape in [Shape::Proxy, Shape::Nginx, Shape::Traefik, Shape::Envoy] {
            let a = ask(p.addr, authz, shape, &c).await;
            let got = outcome(&a);
            if got != (c.status, c.code.to_string()) {
                failures.push(format!(
                    "{} via {shape:?}: expected {} {}, got {} {}",
                    c.name, c.status, c.code, got.0, got.1
                ));
            }
            if !matches!(shape, Shape::Proxy) {
                if a.status == 200 {
                    assert!(a.body.is_empty(), "{}: an allow has no body", c.name);
                    assert!(a.header("x-auth-kind").is_some(), "{}: no identity", c.name);
                    assert!(a.header("x-request-id").is_some());
                }
                if a.status == 401 {
                    assert!(
                        a.header("www-authenticate").is_some(),
                        "{}: no challenge",
                        c.name
                    );
                }
            }
        }
    }
    // The third door: `explain`'s offline decision, through the same code.
    let snap = p.running.as_ref().unwrap().state.policies.current();
    let decider = scopegate::explain::offline_decider(scopegate::config::Unmatched::Deny);
    for c in table() {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &c.headers {
            headers.append(*k, v.parse().unwrap());
        }
        let body = bytes::Bytes::from(c.body.clone().unwrap_or_default());
        let method = c.method.parse().unwrap();
        let e =
            scopegate::explain::explain(&decider, &snap, &method, &c.path, &headers, body).await;
        if (e.status, e.code) != (c.status, c.code) {
            failures.push(format!(
                "{} via explain: expected {} {}, got {} {}",
                c.name, c.status, c.code, e.status, e.code
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the doors disagree:\n{}",
        failures.join("\n")
    );
    // Only the proxy's requests reached the upstream: 6 allowed cases.
    assert_eq!(up.hits(), 6);
    let metrics = p.metrics().await;
    assert!(
        metrics.contains(
            r#"scopegate_authz_decisions_total{code="insufficient_scope",route="bot-write"} 3"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"scopegate_authz_decisions_total{code="ok",route="bot-read"} 6"#));
}

#[tokio::test]
async fn an_allow_carries_the_identity_the_upstream_would_have_seen() {
    let (_up, p, authz) = both("").await;
    let c = case("", "GET", "/v1/bots/bot-1", 200, "ok")
        .with("auth", token("app-hs", json!({ "tenant": "acme" })))
        .with("x-auth-scopes", "admin")
        .with("x-request-id", "rid-42");
    let proxied = ask(p.addr, authz, Shape::Proxy, &c).await.echo();
    let decided = ask(p.addr, authz, Shape::Traefik, &c).await;
    for h in [
        "x-auth-kind",
        "x-auth-app-id",
        "x-auth-subject",
        "x-auth-scopes",
        "x-auth-route",
        "x-auth-tenant",
        "x-request-id",
    ] {
        assert_eq!(decided.header(h), proxied.header(h).as_deref(), "{h}");
    }
    assert_eq!(
        decided.header("x-auth-scopes"),
        Some("bots:read reports"),
        "the client's own is not echoed"
    );
    assert!(decided.header("authorization").is_none() && decided.header("auth").is_none());
}

#[tokio::test]
async fn statuses_nginx_answers_other_denials_as_403_keeping_the_code() {
    let (_up, p, authz) = both(", statuses: nginx").await;
    for (path, code, key) in [
        ("/nothing", "no_route", KEY_READ),
        ("/public/a%2Fb", "invalid_path", KEY_READ),
        ("/v1/bots/bot-1", "missing_credentials", ""),
        ("/v1/bots/bot-1", "api_key_disabled", KEY_DISABLED),
    ] {
        let mut c = case("", "GET", path, 0, "");
        if !key.is_empty() {
            c = c.with("authorization", format!("Bearer {key}"));
        }
        let a = ask(p.addr, authz, Shape::Nginx, &c).await;
        let expected = if code == "no_route" || code == "invalid_path" {
            403
        } else {
            401
        };
        assert_eq!((a.status, a.code().as_str()), (expected, code), "{path}");
        assert_eq!(a.header("x-auth-code"), Some(code));
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["code"], code, "the real code stays in the body");
    }
    // Rate limits: the third request of app-limited (burst 2) is refused.
    let t = token("app-limited", json!({}));
    let c = case("", "GET", "/v1/bots/b", 0, "").with("auth", t);
    for _ in 0..2 {
        assert_eq!(ask(p.addr, authz, Shape::Nginx, &c).await.status, 200);
    }
    let a = ask(p.addr, authz, Shape::Nginx, &c).await;
    assert_eq!((a.status, a.code().as_str()), (403, "rate_limited"));
    assert!(a.header("retry-after").is_some() && a.header("ratelimit-remaining") == Some("0"));
}

#[tokio::test]
async fn an_app_that_encrypts_payloads_is_refused_on_an_encrypting_route() {
    let policy = format!(
        r#"version: 1
scopes: {{ read: r }}
routes:
  - {{ id: enc, methods: [POST], path: /enc, auth: [jwt], scopes: [read], encryption: supported }}
  - {{ id: plain, methods: [POST], path: /plain, auth: [jwt], scopes: [read] }}
apps:
  - client_id: app-enc
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    scopes: [read]
    payload_encryption: {{ shared_key: {{ value: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 }} }}
"#
    );
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy)
        .upstream("default", up.addr)
        .config("authz: { listen: 127.0.0.1:0 }")
        .start()
        .await;
    let authz = p.running.as_ref().unwrap().authz_addr.unwrap();
    let t = hs256(json!({ "appId": "app-enc", "exp": now() + 60 }));
    let enc = case("", "POST", "/enc", 0, "").with("auth", t.clone());
    let a = ask(p.addr, authz, Shape::Traefik, &enc).await;
    assert_eq!((a.status, a.code().as_str()), (400, "encryption_required"));
    let plain = case("", "POST", "/plain", 0, "").with("auth", t);
    assert_eq!(ask(p.addr, authz, Shape::Traefik, &plain).await.status, 200);
}

#[tokio::test]
async fn an_authz_only_deployment_needs_no_listen_and_no_upstream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy::standard()).unwrap();
    let config = dir.path().join("scopegate.yaml");
    std::fs::write(
        &config,
        "admin_listen: 127.0.0.1:0\npolicy_file: policy.yaml\nauthz: { listen: 127.0.0.1:0 }\nlog: { level: error }\n",
    )
    .unwrap();
    let policy_file = dir.path().join("policy.yaml");
    let mut p = Proxy::start_with(dir, &config, policy_file).await;
    let running = p.running.as_ref().unwrap();
    assert!(running.addr.is_none(), "no proxy listener");
    let authz = running.authz_addr.unwrap();
    let c = case("", "GET", "/v1/bots/bot-1", 0, "")
        .with("authorization", format!("Bearer {KEY_READ}"));
    let a = ask(authz, authz, Shape::Traefik, &c).await;
    assert_eq!(
        (a.status, a.header("x-auth-key-id")),
        (200, Some("key-read"))
    );
    // Drain and readiness work for it as for the proxy.
    assert_eq!(
        reqwest::get(p.admin_url("/readyz")).await.unwrap().status(),
        200
    );
    p.shutdown().await;
}

// ---------------------------------------------------------------- real nginx

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx with `auth_request` asking `authz`, in front of `upstream`, copying the identity
/// headers as the README shows.
async fn nginx(authz: SocketAddr, upstream: SocketAddr) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_scopegate;
      auth_request_set $auth_kind $upstream_http_x_auth_kind;
      auth_request_set $auth_app $upstream_http_x_auth_app_id;
      auth_request_set $auth_key $upstream_http_x_auth_key_id;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      auth_request_set $auth_route $upstream_http_x_auth_route;
      auth_request_set $auth_request_id $upstream_http_x_request_id;
      proxy_set_header x-auth-kind $auth_kind;
      proxy_set_header x-auth-app-id $auth_app;
      proxy_set_header x-auth-key-id $auth_key;
      proxy_set_header x-auth-scopes $auth_scopes;
      proxy_set_header x-auth-route $auth_route;
      proxy_set_header x-request-id $auth_request_id;
      proxy_set_header authorization "";
      proxy_set_header auth "";
      proxy_pass http://{upstream};
    }}
    location = /_scopegate {{
      internal;
      proxy_pass http://{authz};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
  }}
}}
"#
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new("nginx")
        .args(["-p", &d.to_string(), "-c", &file.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx is required (scripts/test.sh installs it)");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(
        Duration::from_secs(5),
        "nginx accepts connections",
        || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_a_real_upstream() {
    let (up, p, authz) = both(", statuses: nginx").await;
    let n = nginx(authz, up.addr).await;
    let url = |path: &str| format!("http://{}{path}", n.addr);

    // Allowed: the upstream sees the identity headers nginx copied, and no credential.
    let a = get(
        &url("/v1/bots/bot-1"),
        &[("authorization", &format!("Bearer {KEY_READ}"))],
    )
    .await;
    let e = a.echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("api_key"));
    assert_eq!(e.header("x-auth-key-id").as_deref(), Some("key-read"));
    assert_eq!(e.header("x-auth-route").as_deref(), Some("bot-read"));
    assert!(e.header_names().iter().all(|h| h != "authorization"));
    let hits = up.hits();

    // 401 with its challenge, and 403, reach the client; nothing reaches the upstream.
    let a = get(&url("/v1/bots/bot-1"), &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate"),
        Some(r#"Bearer realm="scopegate""#)
    );
    let a = get(
        &url("/v1/bots/bot-1"),
        &[("authorization", "Bearer sk_live_nobody_0123456789")],
    )
    .await;
    assert_eq!(a.status, 401);
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    let a = send(
        "POST",
        &url("/v1/bots/bot-1"),
        &[("authorization", &format!("Bearer {KEY_READ}"))],
        None,
    )
    .await;
    assert_eq!(a.status, 403);
    // A 404 or 400 decision is a 403 through nginx, not nginx's 500.
    assert_eq!(get(&url("/nothing/here"), &[]).await.status, 403);
    // Path tricks are refused, never authorized as another path.
    for trick in [
        "/public/../v1/bots/bot-1",
        "/public/%2e%2e/v1/bots/bot-1",
        "/public/a%2Fb",
        "/public/a;b",
    ] {
        let (status, _) = raw_get(n.addr, trick, &[]).await;
        assert!(status == 401 || status == 403, "{trick}: {status}");
    }
    assert_eq!(up.hits(), hits, "a refused request reached the upstream");
    let _ = p;
}
