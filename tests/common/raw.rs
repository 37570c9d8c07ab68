//! Raw HTTP/1.1 exchanges with the proxy for the request-hygiene tests (tests/hygiene_*.rs):
//! requests whose bytes matter are written on a TCP socket, so no client normalizes them
//! first, and the responses are parsed here; plus the proxy those tests run and the table
//! checks (`check_all`) they report every failing case with.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::policy;
use super::*;

pub async fn setup() -> (Upstream, Proxy) {
    setup_with("").await
}

pub async fn setup_with(config: &str) -> (Upstream, Proxy) {
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
pub struct Exchange {
    pub bytes: Vec<u8>,
    /// The proxy closed (FIN or RST) the connection within the time limit.
    pub closed: bool,
}

impl Exchange {
    pub fn responses(&self) -> Vec<Resp> {
        parse_responses(&self.bytes)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    /// The only response on the connection.
    pub fn single(&self) -> Resp {
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
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The proxy may close early (e.g. oversized headers): a failed write is not a failure.
    let _ = s.write_all(request).await;
    read_until_closed(&mut s).await
}

/// Reads what the proxy sends until it closes the connection or 3 s pass.
pub async fn read_until_closed(s: &mut TcpStream) -> Exchange {
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
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn is_problem(&self) -> bool {
        self.header("content-type") == Some("application/problem+json")
    }
    /// The problem code; panics unless the response is problem+json.
    pub fn code(&self) -> String {
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
    pub fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "not forwarded: {}", self.describe());
        Echo(
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.describe())),
        )
    }
    pub fn describe(&self) -> String {
        format!("{} {}", self.status, self.body_text())
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a byte stream into HTTP/1.1 responses (Content-Length, chunked or until close).
pub fn parse_responses(mut b: &[u8]) -> Vec<Resp> {
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
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Sends one request exactly as written and returns the single response.
pub async fn send_raw(p: &Proxy, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    exchange(p.addr, &request(p.addr, method, target, headers))
        .await
        .single()
}

/// The outcome a request must have.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// Forwarded (200 from the echo upstream) with exactly this path.
    Fwd(&'static str),
    /// Rejected with this status and problem code, and never forwarded.
    Rej(u16, &'static str),
}

/// Sends `GET target` raw and checks it against `want`; returns a description of any mismatch
/// so one test can report every failing case at once.
pub async fn check(
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
pub type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Want);

pub async fn check_all(p: &Proxy, up: &Upstream, cases: &[Case<'_>]) -> Vec<String> {
    let mut failures = Vec::new();
    for (target, headers, want) in cases {
        if let Err(e) = check(p, up, target, headers, *want).await {
            failures.push(e);
        }
    }
    failures
}

pub fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
