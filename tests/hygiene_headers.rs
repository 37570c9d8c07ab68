//! Request hygiene through the real proxy (SPEC §5 "What the upstream receives", "Path
//! normalization", "Request hygiene", §6). Requests whose bytes matter are written raw on a
//! TCP socket (tests/common/raw.rs), so no client normalizes them first.
//!
//! Here: credential headers, hop-by-hop headers, traceparent, X-Request-Id, and HTTP/2.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::jose::bearer;
use common::policy::{self, *};
use common::raw::*;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// 3. Credential header rules
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_credential_headers_are_malformed() {
    let (up, p) = setup().await;
    let key = bearer(KEY_READ);
    let jwt = token("app-hs", json!({}));
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "two equal Authorization",
            vec![("Authorization", &key), ("Authorization", &key)],
        ),
        (
            "two different Authorization",
            vec![("Authorization", &key), ("Authorization", "Bearer other")],
        ),
        (
            "two equal auth",
            vec![("auth", KEY_READ), ("auth", KEY_READ)],
        ),
        (
            "two different auth",
            vec![("auth", &jwt), ("auth", KEY_READ)],
        ),
        (
            "Authorization and a different auth",
            vec![("Authorization", &key), ("auth", &jwt)],
        ),
    ];
    for (label, headers) in cases {
        let r = send_raw(&p, "GET", "/v1/bots/bot-1", &headers).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "malformed_request"),
            "{label}"
        );
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn authorization_and_auth_with_the_same_value_are_accepted() {
    let (_up, p) = setup().await;
    let key = bearer(KEY_READ);
    let e = send_raw(
        &p,
        "GET",
        "/v1/bots/bot-1",
        &[("Authorization", &key), ("auth", KEY_READ)],
    )
    .await
    .echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("api_key"));
    assert!(e.header("authorization").is_none() && e.header("auth").is_none());
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_whitespace_is_trimmed() {
    let (_up, p) = setup().await;
    let jwt = token("app-hs", json!({}));
    let values = [
        format!("bearer {KEY_READ}"),
        format!("BEARER {KEY_READ}"),
        format!("BeArEr {KEY_READ}"),
        format!("Bearer    {KEY_READ}"),
        format!("  Bearer {KEY_READ}   "),
        format!("bearer   {jwt}  "),
    ];
    for v in &values {
        let r = send_raw(&p, "GET", "/v1/bots/bot-1", &[("Authorization", v)]).await;
        assert_eq!(r.status, 200, "Authorization: {v:?}: {}", r.describe());
    }
    let r = send_raw(
        &p,
        "GET",
        "/v1/bots/bot-1",
        &[("auth", &format!("   {KEY_READ}  "))],
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "auth with surrounding spaces: {}",
        r.describe()
    );
}

#[tokio::test]
async fn a_bearer_value_that_is_not_one_token_is_invalid_token() {
    let (up, p) = setup().await;
    for v in [
        "Bearer a b",
        &format!("Bearer {KEY_READ} extra"),
        &format!("Bearer a {KEY_READ}"),
    ] {
        let r = send_raw(&p, "GET", "/v1/bots/bot-1", &[("Authorization", v)]).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "invalid_token"),
            "Authorization: {v:?}"
        );
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.contains("error=\"invalid_token\"")),
            "{:?}",
            r.headers
        );
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn other_authorization_schemes_are_not_credentials() {
    let (_up, p) = setup().await;
    let basic = [("Authorization", "Basic dXNlcjpwYXNz")];
    for path in ["/jwt-only", "/key-only", "/v1/bots/bot-1"] {
        let r = send_raw(&p, "GET", path, &basic).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "missing_credentials"),
            "{path}"
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"scopegate\"")
        );
    }
    // On an optional route it is simply no credential; it is still not forwarded.
    let e = send_raw(&p, "GET", "/optional", &basic).await.echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("none"));
    assert!(
        e.header("authorization").is_none(),
        "Authorization must be removed"
    );
}

#[tokio::test]
async fn query_string_credentials_are_ignored() {
    let (_up, p) = setup().await;
    let jwt = token("app-hs", json!({}));
    for target in [
        format!("/jwt-only?access_token={jwt}"),
        format!("/key-only?api_key={KEY_READ}"),
        format!("/v1/bots/bot-1?access_token={jwt}&api_key={KEY_READ}&auth={KEY_READ}"),
        format!("/v1/bots/bot-1?authorization=Bearer%20{KEY_READ}"),
    ] {
        let r = send_raw(&p, "GET", &target, &[]).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "missing_credentials"),
            "{target}"
        );
    }
    // On an optional route the query credential is not used, and the query is forwarded unchanged.
    let e = send_raw(&p, "GET", &format!("/optional?access_token={jwt}"), &[])
        .await
        .echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("none"));
    assert_eq!(e.0["query"], format!("access_token={jwt}"));
}

// ---------------------------------------------------------------------------------------------
// 4. Hop-by-hop headers, traceparent, X-Request-Id
// ---------------------------------------------------------------------------------------------

/// (`Upgrade`, hop-by-hop too, is not here: only `websocket` is taken, and any other value
/// is refused with 400; tests/websocket.rs.)
#[tokio::test]
async fn connection_listed_and_hop_by_hop_request_headers_are_removed() {
    let (_up, p) = setup().await;
    let req = format!(
        "GET /public/a HTTP/1.1\r\nHost: {}\r\nConnection: close, x-foo, X-Bar\r\nx-foo: 1\r\nx-bar: 2\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\
         x-kept: yes\r\n\r\n",
        p.addr
    );
    let e = exchange(p.addr, req.as_bytes()).await.single().echo();
    let names = e.header_names();
    for h in [
        "x-foo",
        "x-bar",
        "connection",
        "keep-alive",
        "te",
        "proxy-connection",
    ] {
        assert!(
            !names.iter().any(|n| n == h),
            "{h} reached the upstream: {names:?}"
        );
    }
    assert_eq!(e.header("x-kept").as_deref(), Some("yes"));
}

/// `Proxy-Authorization` (credentials for this proxy, RFC 9110 §11.7.2) and the RFC 7230
/// hop-by-hop `Trailer` are not for the upstream either.
#[tokio::test]
async fn proxy_authorization_and_trailer_are_not_forwarded() {
    let (_up, p) = setup().await;
    let e = send_raw(
        &p,
        "GET",
        "/public/a",
        &[
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("Trailer", "x-checksum"),
        ],
    )
    .await
    .echo();
    let names = e.header_names();
    for h in ["proxy-authorization", "trailer"] {
        assert!(
            !names.iter().any(|n| n == h),
            "{h} reached the upstream: {names:?}"
        );
    }
}

#[tokio::test]
async fn traceparent_passes_through_unchanged() {
    let (_up, p) = setup().await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let e = send_raw(&p, "GET", "/public/a", &[("traceparent", tp)])
        .await
        .echo();
    assert_eq!(e.header("traceparent").as_deref(), Some(tp));
    let e = send_raw(
        &p,
        "GET",
        "/v1/bots/bot-1",
        &[("traceparent", tp), ("authorization", &bearer(KEY_READ))],
    )
    .await
    .echo();
    assert_eq!(e.header("traceparent").as_deref(), Some(tp));
}

#[tokio::test]
async fn request_id_is_kept_when_valid_and_replaced_when_invalid() {
    let (_up, p) = setup().await;
    let max = "a".repeat(128);
    for valid in ["a", "req-1", "A.b_c-9", max.as_str()] {
        let r = send_raw(&p, "GET", "/public/a", &[("X-Request-Id", valid)]).await;
        assert_eq!(
            r.header("x-request-id"),
            Some(valid),
            "response id for {valid:?}"
        );
        assert_eq!(
            r.echo().header("x-request-id").as_deref(),
            Some(valid),
            "upstream id"
        );
    }
    let long = "b".repeat(129);
    for invalid in [long.as_str(), "has space", "a/b", "a:b", "é"] {
        let r = send_raw(&p, "GET", "/public/a", &[("X-Request-Id", invalid)]).await;
        let sent_back = r.header("x-request-id").map(str::to_string);
        let e = r.echo();
        let seen = e.header("x-request-id");
        assert!(
            seen.as_deref()
                .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
            "{invalid:?} must be replaced by a UUID, upstream saw {seen:?}"
        );
        assert_eq!(
            sent_back, seen,
            "the response carries the id the upstream saw"
        );
    }
    // Rejections carry the id too, in the header and in the problem body.
    let r = send_raw(&p, "GET", "/v1/bots/bot-1", &[("X-Request-Id", "keep-me")]).await;
    assert_eq!(r.code(), "missing_credentials");
    assert_eq!(r.header("x-request-id"), Some("keep-me"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["request_id"], "keep-me");
}

/// An upstream that answers every request with hop-by-hop response headers.
async fn hop_by_hop_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while find(&head, b"\r\n\r\n").is_none() {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
                          Connection: keep-alive, X-Up-Hop\r\nX-Up-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
                          Proxy-Connection: keep-alive\r\nUpgrade: foo/1\r\nX-Up-End: kept\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_hop_by_hop_response_headers_are_removed() {
    let up = hop_by_hop_upstream().await;
    // Precondition: the upstream really sends them (the test client does not strip them).
    let direct = get(&format!("http://{up}/public/x"), &[]).await;
    assert_eq!(direct.header("x-up-hop"), Some("1"), "{:?}", direct.headers);
    assert_eq!(direct.header("keep-alive"), Some("timeout=5"));
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up)
        .upstream("sandbox", up)
        .start()
        .await;
    let a = get(&p.url("/public/x"), &[]).await;
    assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]));
    assert_eq!(a.header("x-up-end"), Some("kept"));
    for h in ["x-up-hop", "keep-alive", "proxy-connection", "upgrade"] {
        assert!(
            a.header(h).is_none(),
            "{h} reached the client: {:?}",
            a.headers
        );
    }
    assert!(
        a.header("connection")
            .is_none_or(|c| !c.to_ascii_lowercase().contains("x-up-hop")),
        "{:?}",
        a.headers
    );
}

// ---------------------------------------------------------------------------------------------
// 5. HTTP/2 (prior knowledge, cleartext)
// ---------------------------------------------------------------------------------------------

struct H2Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    uri: &str,
    headers: &[(&str, &str)],
) -> H2Answer {
    let mut b = http::Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Empty::<Bytes>::new()).unwrap();
    let fut = async {
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        H2Answer {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("h2 request timed out")
}

#[tokio::test]
async fn http2_prior_knowledge_is_authenticated_and_forwarded_like_http1() {
    let (up, p) = setup().await;
    let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(p.addr))
        .await
        .unwrap()
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let authority = p.addr.to_string();

    let a = h2_get(
        &mut sender,
        &format!("http://{authority}/v1/bots/bot-1"),
        &[("authorization", &bearer(KEY_READ))],
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let e = Echo(serde_json::from_slice(&a.body).unwrap());
    assert_eq!(e.path(), "/v1/bots/bot-1");
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("api_key"));
    assert_eq!(e.header("x-auth-key-id").as_deref(), Some("key-read"));
    assert_eq!(e.header("x-forwarded-host"), Some(authority.clone()));
    assert!(e.header("authorization").is_none());

    // Same connection, no credential: 401 problem+json.
    let a = h2_get(
        &mut sender,
        &format!("http://{authority}/v1/bots/bot-1"),
        &[],
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["code"], "missing_credentials");

    // Paths are normalized on HTTP/2 too, and the authorized path is the forwarded one.
    let jwt = token("app-hs", json!({}));
    let a = h2_get(
        &mut sender,
        &format!("http://{authority}/v1/bots/bot-9/%2e%2e/bot-1"),
        &[("auth", &jwt)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        Echo(serde_json::from_slice(&a.body).unwrap()).path(),
        "/v1/bots/bot-1"
    );
    let a = h2_get(
        &mut sender,
        &format!("http://{authority}/public/a%2Fb"),
        &[],
    )
    .await;
    assert_eq!(a.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["code"], "invalid_path");
    assert_eq!(up.hits(), 2);
}
