//! Request hygiene through the real proxy (SPEC §5 "What the upstream receives", "Path
//! normalization", "Request hygiene", §6). Requests whose bytes matter are written raw on a
//! TCP socket (tests/common/raw.rs), so no client normalizes them first.
//!
//! Here: HTTP/1.1 request framing, and keep-alive isolation.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::jose::bearer;
use common::policy::*;
use common::raw::*;
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// 2. Request framing (RFC 9112, strict)
// ---------------------------------------------------------------------------------------------

/// A framing rejection: one 400 (problem+json `malformed_request`, or hyper's bare 400), the
/// connection closed, nothing forwarded. Returns every way `ex` falls short, prefixed by `label`.
fn framing_rejected(label: &str, ex: &Exchange, up: &Upstream, hits_before: usize) -> Vec<String> {
    let mut failures = Vec::new();
    let r = ex.responses();
    match r.first() {
        None => failures.push(format!("{label}: no response")),
        Some(first) => {
            if first.status != 400 {
                failures.push(format!("{label}: want 400, got {}", first.describe()));
            } else if first.is_problem() && first.code() != "malformed_request" {
                failures.push(format!(
                    "{label}: want malformed_request, got {}",
                    first.describe()
                ));
            }
        }
    }
    if r.len() > 1 {
        failures.push(format!(
            "{label}: {} responses on the connection, want one:\n{}",
            r.len(),
            ex.text()
        ));
    }
    if !ex.closed {
        failures.push(format!("{label}: the connection was left open"));
    }
    let forwarded = up.hits() - hits_before;
    if forwarded != 0 {
        failures.push(format!(
            "{label}: {forwarded} request(s) reached the upstream"
        ));
    }
    failures
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_rejected_and_nothing_is_smuggled() {
    let (up, p) = setup().await;
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut failures = Vec::new();
    for (label, headers) in [
        (
            "CL then TE",
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                5 + smuggled.len()
            ),
        ),
        (
            "TE then CL",
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                5 + smuggled.len()
            ),
        ),
        (
            "TE with CL 0",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n".into(),
        ),
    ] {
        let req = format!(
            "POST /public/a HTTP/1.1\r\nHost: {}\r\n{headers}\r\n0\r\n\r\n{smuggled}",
            p.addr
        );
        let before = up.hits();
        let ex = exchange(p.addr, req.as_bytes()).await;
        failures.extend(framing_rejected(label, &ex, &up, before));
        if ex.text().contains("/public/smuggled") {
            failures.push(format!("{label}: the smuggled request was answered"));
        }
    }
    assert_no_failures(failures);
}

#[tokio::test]
async fn differing_content_lengths_are_rejected() {
    let (up, p) = setup().await;
    let mut failures = Vec::new();
    for (label, headers) in [
        ("two headers", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("one list", "Content-Length: 5, 6\r\n"),
    ] {
        let req = format!(
            "POST /public/a HTTP/1.1\r\nHost: {}\r\n{headers}\r\nhello!GET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
            p.addr
        );
        let before = up.hits();
        let ex = exchange(p.addr, req.as_bytes()).await;
        failures.extend(framing_rejected(label, &ex, &up, before));
    }
    assert_no_failures(failures);
}

#[tokio::test]
async fn transfer_codings_other_than_one_chunked_are_rejected() {
    let (up, p) = setup().await;
    let mut failures = Vec::new();
    for te in [
        "gzip, chunked",
        "chunked, chunked",
        "identity",
        "identity, chunked",
        "chunked\r\nTransfer-Encoding: chunked",
        "gzip",
    ] {
        let req = format!(
            "POST /public/a HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            p.addr
        );
        let before = up.hits();
        let ex = exchange(p.addr, req.as_bytes()).await;
        let label = format!("Transfer-Encoding: {te:?}");
        failures.extend(framing_rejected(&label, &ex, &up, before));
    }
    assert_no_failures(failures);
}

/// The positive side of strict framing: a plain chunked body (any case of the coding name,
/// which RFC 9112 §7 makes case-insensitive) is forwarded intact.
#[tokio::test]
async fn chunked_request_bodies_are_forwarded_intact() {
    let (up, p) = setup().await;
    for te in ["chunked", "Chunked"] {
        let req = format!(
            "POST /upload HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            p.addr
        );
        let r = exchange(p.addr, req.as_bytes()).await.single();
        let e = r.echo();
        assert_eq!(e.0["body"], "hello world", "Transfer-Encoding: {te}");
        assert_eq!(e.0["body_len"], 11);
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn obs_fold_is_rejected() {
    let (up, p) = setup().await;
    let req = format!(
        "GET /public/a HTTP/1.1\r\nHost: {}\r\nX-Folded: a\r\n b\r\nX-Tab: c\r\n\td\r\n\r\n",
        p.addr
    );
    let ex = exchange(p.addr, req.as_bytes()).await;
    assert_no_failures(framing_rejected("obs-fold", &ex, &up, 0));
}

#[tokio::test]
async fn zero_or_several_host_headers_are_rejected() {
    let (up, p) = setup().await;
    let cases = [
        ("no Host", "GET /public/a HTTP/1.1\r\n\r\n".to_string()),
        (
            "two different Host",
            format!(
                "GET /public/a HTTP/1.1\r\nHost: {}\r\nHost: evil.example\r\n\r\n",
                p.addr
            ),
        ),
        (
            "two equal Host",
            format!(
                "GET /public/a HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\n\r\n",
                p.addr
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (label, req) in cases {
        let before = up.hits();
        let ex = exchange(p.addr, req.as_bytes()).await;
        failures.extend(framing_rejected(label, &ex, &up, before));
    }
    assert_no_failures(failures);
}

#[tokio::test]
async fn asterisk_form_and_connect_authority_form_are_malformed() {
    let (up, p) = setup().await;
    let r = send_raw(&p, "OPTIONS", "*", &[]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "malformed_request"),
        "OPTIONS *"
    );
    let r = send_raw(&p, "CONNECT", "evil.example:443", &[]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "malformed_request"),
        "CONNECT authority-form"
    );
    let r = send_raw(
        &p,
        "CONNECT",
        &p.addr.to_string(),
        &[("authorization", &bearer(KEY_ADMIN))],
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "malformed_request"),
        "CONNECT to the proxy itself"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn trace_and_connect_match_no_route_even_for_wildcard_methods() {
    let (up, p) = setup().await;
    // The public route is `methods: ["*"]`: any other method is forwarded.
    assert_eq!(
        send_raw(&p, "DELETE", "/public/x", &[]).await.echo().0["method"],
        "DELETE"
    );
    let before = up.hits();
    let r = send_raw(&p, "TRACE", "/public/x", &[]).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (404, "no_route"),
        "TRACE /public/x"
    );
    let r = send_raw(
        &p,
        "TRACE",
        "/v1/bots/bot-1",
        &[("authorization", &bearer(KEY_ADMIN))],
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (404, "no_route"),
        "TRACE with a credential"
    );
    // CONNECT with an origin-form target: no route (or malformed), never forwarded.
    let r = send_raw(&p, "CONNECT", "/public/x", &[]).await;
    assert!(
        (r.status == 404 && r.code() == "no_route")
            || (r.status == 400 && (!r.is_problem() || r.code() == "malformed_request")),
        "CONNECT /public/x: {}",
        r.describe()
    );
    assert_eq!(up.hits(), before, "TRACE/CONNECT must never be forwarded");
}

#[tokio::test]
async fn trace_is_not_passed_through_when_unmatched_requests_are() {
    let (up, p) = setup_with("unmatched: passthrough").await;
    assert_eq!(send_raw(&p, "GET", "/legacy/x", &[]).await.status, 200);
    let before = up.hits();
    for path in ["/legacy/x", "/v1/bots/bot-1", "/public/x"] {
        let r = send_raw(&p, "TRACE", path, &[]).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (404, "no_route"),
            "TRACE {path}"
        );
    }
    assert_eq!(up.hits(), before, "TRACE must never be forwarded");
}

#[tokio::test]
async fn absolute_form_uses_only_path_and_query() {
    let (up, p) = setup().await;
    let r = exchange(
        p.addr,
        b"GET http://evil.example/public/x?q=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .single();
    let e = r.echo();
    assert_eq!(e.path(), "/public/x");
    assert_eq!(e.0["query"], "q=1");
    assert_eq!(
        e.header("host"),
        Some(up.addr.to_string()),
        "the upstream is the configured one"
    );
    // Normalization applies to the path of an absolute-form target too.
    let r = exchange(
        p.addr,
        b"GET http://evil.example/public/../v1/bots/bot-1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await
    .single();
    assert_eq!((r.status, r.code().as_str()), (401, "missing_credentials"));
    assert_eq!(up.hits(), 1);
}

fn with_header_bytes(p: &Proxy, headers: &[(String, String)]) -> Vec<u8> {
    let mut r = format!(
        "GET /public/x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        p.addr
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

#[tokio::test]
async fn header_blocks_over_max_header_bytes_get_431() {
    let (up, p) = setup().await;
    // Comfortably under the default 16384: forwarded.
    let ok = with_header_bytes(&p, &[("x-big".into(), "a".repeat(12_000))]);
    exchange(p.addr, &ok).await.single().echo();
    assert_eq!(up.hits(), 1);
    // Over, as one header and as many: 431 headers_too_large, problem+json.
    for (label, headers) in [
        (
            "one 17 KB header",
            vec![("x-big".to_string(), "a".repeat(17_000))],
        ),
        (
            "50 headers of 400 bytes",
            (0..50)
                .map(|i| (format!("x-h{i}"), "b".repeat(400)))
                .collect(),
        ),
    ] {
        let r = exchange(p.addr, &with_header_bytes(&p, &headers))
            .await
            .single();
        assert_eq!(r.status, 431, "{label}: {}", r.describe());
        assert_eq!(r.code(), "headers_too_large", "{label}");
    }
    // Far over: a 431 (possibly hyper's bare one) or a closed connection; never forwarded.
    let ex = exchange(
        p.addr,
        &with_header_bytes(&p, &[("x-huge".into(), "c".repeat(64 * 1024))]),
    )
    .await;
    match ex.responses().first() {
        Some(r) => assert_eq!(r.status, 431, "64 KiB header: {}", r.describe()),
        None => assert!(ex.closed, "64 KiB header: neither an answer nor a close"),
    }
    assert_eq!(up.hits(), 1, "oversized requests reached the upstream");
}

#[tokio::test]
async fn header_limit_follows_the_configuration() {
    let (up, p) = setup_with("limits: { max_header_bytes: 4096 }").await;
    let ok = with_header_bytes(&p, &[("x-big".into(), "a".repeat(2_500))]);
    exchange(p.addr, &ok).await.single().echo();
    let r = exchange(
        p.addr,
        &with_header_bytes(&p, &[("x-big".into(), "a".repeat(5_000))]),
    )
    .await
    .single();
    assert_eq!((r.status, r.code().as_str()), (431, "headers_too_large"));
    assert_eq!(up.hits(), 1);
}

// ---------------------------------------------------------------------------------------------
// 6. Keep-alive isolation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pipelined_requests_on_one_connection_are_each_authenticated() {
    let (up, p) = setup().await;
    let jwt = token("app-hs", json!({}));
    let h = p.addr;
    let req = format!(
        "GET /v1/bots/bot-1 HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {KEY_READ}\r\n\r\n\
         GET /v1/bots/bot-1 HTTP/1.1\r\nHost: {h}\r\n\r\n\
         GET /v1/bots/bot-2 HTTP/1.1\r\nHost: {h}\r\nauth: {jwt}\r\n\r\n\
         GET /jwt-only HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
    );
    let ex = exchange(p.addr, req.as_bytes()).await;
    let r = ex.responses();
    assert_eq!(r.len(), 4, "{}", ex.text());
    assert_eq!(
        r[0].echo().header("x-auth-kind").as_deref(),
        Some("api_key")
    );
    assert_eq!(
        (r[1].status, r[1].code().as_str()),
        (401, "missing_credentials")
    );
    let e = r[2].echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("jwt"));
    assert!(
        e.header("x-auth-key-id").is_none(),
        "nothing from the first request carries over"
    );
    assert_eq!(
        (r[3].status, r[3].code().as_str()),
        (401, "missing_credentials")
    );
    assert_eq!(up.hits(), 2);
}

/// Sends `request` as two writes (head and body parts), then half-closes when `then_close`.
async fn exchange_body(addr: SocketAddr, parts: &[&[u8]], then_close: bool) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for part in parts {
        let _ = s.write_all(part).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if then_close {
        let _ = s.shutdown().await;
    }
    read_until_closed(&mut s).await
}

#[tokio::test]
async fn a_request_body_the_client_frames_badly_is_a_400_never_an_upstream_error() {
    let (up, p) = setup().await;
    let chunked = b"POST /public/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let sized =
        |n: usize| format!("POST /public/a HTTP/1.1\r\nhost: x\r\ncontent-length: {n}\r\n\r\n");
    let (ten, five) = (sized(10), sized(5));
    let cases: Vec<(&str, Vec<&[u8]>, bool)> = vec![
        (
            "bad chunk size",
            vec![chunked, b"5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n"],
            false,
        ),
        (
            "chunk size overflow",
            vec![chunked, b"5\r\nhello\r\nfffffffffffffffffffff\r\nx\r\n"],
            false,
        ),
        (
            "chunk without its CRLF",
            vec![chunked, b"5\r\nhelloXX0\r\n\r\n"],
            false,
        ),
        ("truncated chunked body", vec![chunked, b"a\r\nhello"], true),
        ("truncated sized body", vec![ten.as_bytes(), b"hello"], true),
    ];
    for (what, parts, close) in &cases {
        let ex = exchange_body(p.addr, parts, *close).await;
        let responses = ex.responses();
        assert!(
            responses.iter().all(|r| r.status == 400),
            "{what}: {}",
            ex.text()
        );
        assert!(ex.closed, "{what}: the connection stayed open");
    }
    // A body longer than its Content-Length: the rest is a next request, which is garbage.
    let ex = exchange_body(
        p.addr,
        &[five.as_bytes(), b"helloGARBAGE / HTTP/1.1\r\n\r\n"],
        false,
    )
    .await;
    let responses = ex.responses();
    assert_eq!(responses[0].echo().0["body"], "hello", "{}", ex.text());
    assert!(
        responses[1..].iter().all(|r| r.status == 400),
        "{}",
        ex.text()
    );
    let metrics = p.metrics().await;
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("scopegate_upstream_errors_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(
        counted.is_empty(),
        "a client's bad body was counted as an upstream error: {counted:?}"
    );
    assert!(
        !metrics.contains(r#"code="upstream_unavailable""#),
        "{metrics}"
    );
    // The upstream connections are still sound: requests keep working.
    for _ in 0..5 {
        assert_eq!(get(&p.url("/public/ok"), &[]).await.status, 200);
    }
    let _ = up;
}

/// A request refused before its body is read (here 403: the key lacks `bots:write`) leaves
/// that body on the connection, where it would be read as the next request's head. The
/// refusal says `Connection: close` and the connection ends with it, whether the body comes
/// with the head or after the answer; a refusal of a request without a body keeps it open.
#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_closes_the_connection() {
    let (up, p) = setup().await;
    let h = p.addr;
    let post = format!(
        "POST /v1/bots/bot-1 HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {KEY_READ}\r\n\
         Content-Length: 2\r\n\r\n"
    );
    let next = format!("GET /v1/bots/bot-1 HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
    let together = format!("{post}{{}}{next}");
    let later = format!("{{}}{next}");
    for (what, parts) in [
        ("body with the head", vec![together.as_bytes()]),
        (
            "body after the answer",
            vec![post.as_bytes(), later.as_bytes()],
        ),
    ] {
        let ex = exchange_body(p.addr, &parts, false).await;
        let r = ex.responses();
        assert_eq!(r.len(), 1, "{what}: {}", ex.text());
        assert_eq!(
            (r[0].status, r[0].code().as_str()),
            (403, "insufficient_scope")
        );
        assert_eq!(r[0].header("connection"), Some("close"), "{what}");
        assert!(ex.closed, "{what}");
    }
    // No body: nothing is left, the connection is kept for the next request.
    let ex = exchange_body(
        p.addr,
        &[format!(
            "POST /v1/bots/bot-1 HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {KEY_READ}\r\n\
             Content-Length: 0\r\n\r\nGET /v1/bots/bot-1 HTTP/1.1\r\nHost: {h}\r\n\
             Authorization: Bearer {KEY_READ}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes()],
        false,
    )
    .await;
    let r = ex.responses();
    assert_eq!(r.len(), 2, "{}", ex.text());
    assert_eq!((r[0].status, r[1].status), (403, 200));
    assert_eq!(r[0].header("connection"), None);
    assert_eq!(up.hits(), 1);
}
