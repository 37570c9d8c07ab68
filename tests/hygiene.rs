//! Request hygiene through the real proxy (SPEC §5 "What the upstream receives", "Path
//! normalization", "Request hygiene", §6): paths, HTTP/1.1 framing, credential headers,
//! hop-by-hop headers, request ids, HTTP/2 and keep-alive isolation. Requests whose bytes
//! matter are written raw on a TCP socket, so no client normalizes them first.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::jose::bearer;
use common::policy::{self, *};
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn setup() -> (Upstream, Proxy) {
    setup_with("").await
}

async fn setup_with(config: &str) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config(config)
        .start()
        .await;
    (up, proxy)
}

/// What came back on one raw connection.
struct Exchange {
    bytes: Vec<u8>,
    /// The proxy closed (FIN or RST) the connection within the time limit.
    closed: bool,
}

impl Exchange {
    fn responses(&self) -> Vec<Resp> {
        parse_responses(&self.bytes)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    /// The only response on the connection.
    fn single(&self) -> Resp {
        let mut r = self.responses();
        assert_eq!(
            r.len(),
            1,
            "expected exactly one response, got:\n{}",
            self.text()
        );
        r.remove(0)
    }
}

/// Writes `request` on a fresh connection and reads until the proxy closes it or 3 s pass.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The proxy may close early (e.g. oversized headers): a failed write is not a failure.
    let _ = s.write_all(request).await;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    };
    Exchange { bytes, closed }
}

/// One parsed HTTP/1.1 response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn is_problem(&self) -> bool {
        self.header("content-type") == Some("application/problem+json")
    }
    /// The problem code; panics unless the response is problem+json.
    fn code(&self) -> String {
        assert!(
            self.is_problem(),
            "not problem+json: status {} headers {:?} body {}",
            self.status,
            self.headers,
            self.body_text()
        );
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        v["code"].as_str().unwrap().to_string()
    }
    fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "not forwarded: {}", self.describe());
        Echo(
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.describe())),
        )
    }
    fn describe(&self) -> String {
        format!("{} {}", self.status, self.body_text())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a byte stream into HTTP/1.1 responses (Content-Length, chunked or until close).
fn parse_responses(mut b: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(end) = find(b, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&b[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.get(9..12))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut rest = &b[end + 4..];
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            while let Some(le) = find(rest, b"\r\n") {
                let size_text = String::from_utf8_lossy(&rest[..le]).into_owned();
                let size_text = size_text.split(';').next().unwrap().trim();
                let size = usize::from_str_radix(size_text, 16).unwrap_or(0);
                rest = &rest[le + 2..];
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    let t = find(rest, b"\r\n").map_or(rest.len(), |i| i + 2);
                    rest = &rest[t..];
                    break;
                }
                let take = size.min(rest.len());
                body.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if rest.starts_with(b"\r\n") {
                    rest = &rest[2..];
                }
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let take = n.min(rest.len());
            body.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        } else if (100..200).contains(&status) || status == 204 || status == 304 {
        } else {
            body.extend_from_slice(rest);
            rest = &[];
        }
        out.push(Resp {
            status,
            headers,
            body,
        });
        b = rest;
    }
    out
}

/// `METHOD target HTTP/1.1` with `Host` and `Connection: close`, plus `headers`.
fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Sends one request exactly as written and returns the single response.
async fn send_raw(p: &Proxy, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    exchange(p.addr, &request(p.addr, method, target, headers))
        .await
        .single()
}

/// The outcome a request must have.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Forwarded (200 from the echo upstream) with exactly this path.
    Fwd(&'static str),
    /// Rejected with this status and problem code, and never forwarded.
    Rej(u16, &'static str),
}

/// Sends `GET target` raw and checks it against `want`; returns a description of any mismatch
/// so one test can report every failing case at once.
async fn check(
    p: &Proxy,
    up: &Upstream,
    target: &str,
    headers: &[(&str, &str)],
    want: Want,
) -> Result<(), String> {
    let before = up.hits();
    let r = send_raw(p, "GET", target, headers).await;
    let forwarded = up.hits() - before;
    match want {
        Want::Fwd(path) => {
            if r.status != 200 {
                return Err(format!(
                    "{target}: want forwarded as {path}, got {}",
                    r.describe()
                ));
            }
            let e = r.echo();
            if e.path() != path || forwarded != 1 {
                return Err(format!(
                    "{target}: want upstream path {path}, upstream saw {} ({forwarded} hits)",
                    e.path()
                ));
            }
        }
        Want::Rej(status, code) => {
            let got_code = if r.is_problem() { Some(r.code()) } else { None };
            if r.status != status || got_code.as_deref() != Some(code) || forwarded != 0 {
                return Err(format!(
                    "{target}: want {status} {code} (not forwarded), got {} (code {got_code:?}, {forwarded} upstream hits)",
                    r.describe()
                ));
            }
        }
    }
    Ok(())
}

/// One path case: request target, extra headers, expected outcome.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Want);

async fn check_all(p: &Proxy, up: &Upstream, cases: &[Case<'_>]) -> Vec<String> {
    let mut failures = Vec::new();
    for (target, headers, want) in cases {
        if let Err(e) = check(p, up, target, headers, *want).await {
            failures.push(e);
        }
    }
    failures
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Path normalization
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dot_segments_are_resolved_after_decoding_and_forwarded_resolved() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/public/a/../b", vec![], Fwd("/public/b")),
        ("/public/a/%2e%2e/b", vec![], Fwd("/public/b")),
        ("/public/a/%2E%2e/b", vec![], Fwd("/public/b")),
        ("/public/a/%2E%2E/b", vec![], Fwd("/public/b")),
        ("/public/a/.%2e/b", vec![], Fwd("/public/b")),
        ("/public/a/%2e./b", vec![], Fwd("/public/b")),
        ("/public/./a/%2e/b", vec![], Fwd("/public/a/b")),
        ("/public/a/b/../../c", vec![], Fwd("/public/c")),
        // `..` that leaves the public prefix lands on a route that needs a credential.
        (
            "/public/../v1/bots/bot-1",
            vec![],
            Rej(401, "missing_credentials"),
        ),
        (
            "/public/%2e%2e/v1/bots/bot-1",
            vec![],
            Rej(401, "missing_credentials"),
        ),
        (
            "/public/.%2E/jwt-only",
            vec![],
            Rej(401, "missing_credentials"),
        ),
        // `/public/..` resolves to `/`, which no route matches.
        ("/public/..", vec![], Rej(404, "no_route")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

#[tokio::test]
async fn paths_climbing_above_root_are_invalid() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/..", vec![], Rej(400, "invalid_path")),
        ("/../public/x", vec![], Rej(400, "invalid_path")),
        ("/public/../../x", vec![], Rej(400, "invalid_path")),
        ("/public/../../public/x", vec![], Rej(400, "invalid_path")),
        ("/public/%2e%2e/%2e%2e/x", vec![], Rej(400, "invalid_path")),
        ("/%2E%2E/public/x", vec![], Rej(400, "invalid_path")),
        ("/public/a/../../../x", vec![], Rej(400, "invalid_path")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

#[tokio::test]
async fn encoded_slash_nul_backslash_semicolon_and_bad_escapes_are_invalid() {
    let (up, p) = setup().await;
    use Want::*;
    let bad = Rej(400, "invalid_path");
    let cases = vec![
        ("/public/a%2Fb", vec![], bad),
        ("/public/a%2fb", vec![], bad),
        ("/public/..%2F..%2Fx", vec![], bad),
        ("/public/x/..%2f", vec![], bad),
        ("/public/a%00b", vec![], bad),
        ("/public/a%5Cb", vec![], bad),
        ("/public/a%5cb", vec![], bad),
        ("/public/..%5C..%5Cx", vec![], bad),
        ("/public/a;b", vec![], bad),
        ("/public/a;jsessionid=1", vec![], bad),
        ("/public/a%3Bb", vec![], bad),
        ("/public/a%3bb", vec![], bad),
        ("/public/..;/x", vec![], bad),
        ("/public/a/..;/b", vec![], bad),
        ("/public/a%zz", vec![], bad),
        ("/public/a%2", vec![], bad),
        ("/public/a%", vec![], bad),
        ("/public/a%g0b", vec![], bad),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

/// A raw `\` in the target: the proxy answers `invalid_path`, or hyper refuses the request
/// line with a bare 400 first. Either way it is never forwarded.
#[tokio::test]
async fn raw_backslash_is_never_forwarded() {
    let (up, p) = setup().await;
    for target in [
        "/public/a\\b",
        "/public/..\\..\\x",
        "/public\\..\\v1/bots/bot-1",
    ] {
        let ex = exchange(p.addr, &request(p.addr, "GET", target, &[])).await;
        let r = ex.responses();
        if let Some(r) = r.first() {
            assert_eq!(r.status, 400, "{target}: {}", r.describe());
            if r.is_problem() {
                assert_eq!(r.code(), "invalid_path", "{target}");
            }
        } else {
            assert!(ex.closed, "{target}: neither an answer nor a close");
        }
    }
    assert_eq!(
        up.hits(),
        0,
        "a path with a raw backslash reached the upstream"
    );
}

/// SPEC: "a raw `#` [is] rejected with `invalid_path` too". A fragment is never sent by a
/// conforming client, so one in a request target is an attempt to make parsers disagree.
/// SPEC §5 asks for 400 on a raw `#`, but the HTTP parser (the `http` crate's URI) drops
/// the fragment before the proxy sees the target, so it cannot be told apart. What matters
/// still holds: the fragment never reaches the upstream, and the path authorized (the part
/// before `#`) is exactly the path forwarded, so `#/../../x` cannot climb anywhere.
#[tokio::test]
async fn raw_fragment_is_dropped_before_authorization_and_never_forwarded() {
    let (up, p) = setup().await;
    for (target, seen) in [
        ("/public/a#b", "/public/a"),
        ("/public/a#/../../x", "/public/a"),
    ] {
        let (status, body) = raw_get(p.addr, target, &[]).await;
        assert_eq!(status, 200, "{target}: {body}");
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["path"], seen, "{target}");
    }
    let (status, body) = raw_get(p.addr, "/v1/bots/bot-1#/../../../public/x", &[]).await;
    assert_eq!(
        status, 401,
        "the path before # is what gets authorized: {body}"
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn unreserved_escapes_are_decoded_and_others_stay_encoded_once() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/public/%7Euser", vec![], Fwd("/public/~user")),
        ("/public/%7euser", vec![], Fwd("/public/~user")),
        ("/public/%41bc", vec![], Fwd("/public/Abc")),
        ("/public/%61%62%63", vec![], Fwd("/public/abc")),
        ("/public/a%2Db%5Fc%2Ed%30", vec![], Fwd("/public/a-b_c.d0")),
        // Reserved and other characters stay encoded, hex upper-cased.
        ("/public/a%3fb", vec![], Fwd("/public/a%3Fb")),
        ("/public/a%3Fb", vec![], Fwd("/public/a%3Fb")),
        ("/public/a%23b", vec![], Fwd("/public/a%23b")),
        ("/public/a%20b", vec![], Fwd("/public/a%20b")),
        ("/public/%c3%a9", vec![], Fwd("/public/%C3%A9")),
        // Nothing is decoded twice.
        ("/public/%252e", vec![], Fwd("/public/%252e")),
        ("/public/%252e%252e/x", vec![], Fwd("/public/%252e%252e/x")),
        ("/public/a%252Fb", vec![], Fwd("/public/a%252Fb")),
        ("/public/a%25b", vec![], Fwd("/public/a%25b")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    // An encoded `?` does not start a query.
    let e = send_raw(&p, "GET", "/public/a%3fb", &[]).await.echo();
    assert_eq!(e.0["query"], serde_json::Value::Null, "{:?}", e.0);
}

#[tokio::test]
async fn repeated_slashes_are_merged_and_the_query_is_untouched() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/public//a///b", vec![], Fwd("/public/a/b")),
        ("//public/a", vec![], Fwd("/public/a")),
        ("/public/a//", vec![], Fwd("/public/a/")),
        ("//v1//bots//bot-1", vec![], Rej(401, "missing_credentials")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    let e = send_raw(
        &p,
        "GET",
        "/public/a/../b?x=%2e%2e/..&y=%2F&z=a;b&w=%3f",
        &[],
    )
    .await
    .echo();
    assert_eq!(e.path(), "/public/b");
    assert_eq!(e.0["query"], "x=%2e%2e/..&y=%2F&z=a;b&w=%3f");
}

#[tokio::test]
async fn one_trailing_slash_is_kept_and_not_significant_for_matching() {
    let (up, p) = setup().await;
    let key = bearer(KEY_READ);
    use Want::*;
    let cases = vec![
        (
            "/v1/bots/bot-1/",
            vec![("authorization", key.as_str())],
            Fwd("/v1/bots/bot-1/"),
        ),
        (
            "/v1/bots/",
            vec![("authorization", key.as_str())],
            Fwd("/v1/bots/"),
        ),
        ("/public/a/", vec![], Fwd("/public/a/")),
        ("/v1/bots/bot-1/", vec![], Rej(401, "missing_credentials")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    let e = send_raw(&p, "GET", "/v1/bots/bot-1/", &[("authorization", &key)])
        .await
        .echo();
    assert_eq!(e.header("x-auth-route").as_deref(), Some("bot-read"));
}

#[tokio::test]
async fn matching_is_case_sensitive() {
    let (up, p) = setup().await;
    let key = bearer(KEY_READ);
    use Want::*;
    let cases = vec![
        (
            "/V1/bots/bot-1",
            vec![("authorization", key.as_str())],
            Rej(404, "no_route"),
        ),
        (
            "/v1/BOTS/bot-1",
            vec![("authorization", key.as_str())],
            Rej(404, "no_route"),
        ),
        ("/Public/x", vec![], Rej(404, "no_route")),
        ("/PUBLIC/x", vec![], Rej(404, "no_route")),
        // Case of the matched text is preserved for the parameters and the rest.
        ("/public/MiXeD/Case", vec![], Fwd("/public/MiXeD/Case")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

/// The path that is authorized is the path the upstream acts on.
#[tokio::test]
async fn the_authorized_path_is_the_forwarded_path() {
    let (up, p) = setup().await;
    let jwt = token("app-hs", json!({}));
    let key = bearer(KEY_READ);
    use Want::*;
    let cases = vec![
        // app-hs is allowed bot-1 and bot-2 only.
        (
            "/v1/bots/bot-9/../bot-1",
            vec![("auth", jwt.as_str())],
            Fwd("/v1/bots/bot-1"),
        ),
        (
            "/v1/bots/bot-9/%2e%2e/bot-2",
            vec![("auth", jwt.as_str())],
            Fwd("/v1/bots/bot-2"),
        ),
        (
            "/v1/bots/bot-1/../bot-9",
            vec![("auth", jwt.as_str())],
            Rej(403, "resource_not_allowed"),
        ),
        (
            "/v1/bots/bot-1/%2e%2e/bot-3",
            vec![("auth", jwt.as_str())],
            Rej(403, "resource_not_allowed"),
        ),
        (
            "/v1/bots/bot-1/..%2F..%2Fbot-3",
            vec![("auth", jwt.as_str())],
            Rej(400, "invalid_path"),
        ),
        (
            "/v1/bots/bot-1/..%2f..%2fbot-3",
            vec![("authorization", key.as_str())],
            Rej(400, "invalid_path"),
        ),
        (
            "/v1/bots/bot-1;/../bot-3",
            vec![("auth", jwt.as_str())],
            Rej(400, "invalid_path"),
        ),
        // `/v1/bots/bot-1/..` is `/v1/bots/`: the api_key-only list route, not bot-read.
        (
            "/v1/bots/bot-1/..",
            vec![("auth", jwt.as_str())],
            Rej(401, "invalid_token"),
        ),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    let e = send_raw(&p, "GET", "/v1/bots/bot-9/../bot-1", &[("auth", &jwt)])
        .await
        .echo();
    assert_eq!(e.header("x-auth-route").as_deref(), Some("bot-read"));
    assert_eq!(e.header("x-auth-app-id").as_deref(), Some("app-hs"));
}

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

#[tokio::test]
async fn connection_listed_and_hop_by_hop_request_headers_are_removed() {
    let (_up, p) = setup().await;
    let req = format!(
        "GET /public/a HTTP/1.1\r\nHost: {}\r\nConnection: close, x-foo, X-Bar\r\nx-foo: 1\r\nx-bar: 2\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: foo/1\r\nProxy-Connection: keep-alive\r\n\
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
        "upgrade",
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
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    };
    Exchange { bytes, closed }
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
