//! Connection timeouts on the public listener (SPEC §1.1 `header_read_timeout`,
//! `idle_timeout`): a request head must arrive in time, an idle keep-alive connection lives
//! for the idle timeout (not less), and neither ever cuts a request in progress.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::policy;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GET: &[u8] = b"GET /public/a HTTP/1.1\r\nhost: x\r\n\r\n";

/// `header_read_timeout` 300 ms; `idle_timeout` as given.
async fn proxy(idle: &str) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config(&format!(
            "limits: {{ header_read_timeout: 300ms, idle_timeout: {idle} }}"
        ))
        .start()
        .await;
    (up, p)
}

/// Reads one response (head and a body of `content-length`) off a keep-alive connection.
async fn response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// How long until the proxy closes `s` (reading and dropping anything it sends), at most
/// `within`; `None` if it is still open then.
async fn closes_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut sink))
        .await
        .ok()
        .map(|_| start.elapsed())
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    let (_up, p) = proxy("60s").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let took = closes_within(&mut s, Duration::from_secs(5)).await;
    let took = took.expect("a silent connection was still open after 5 s");
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
}

#[tokio::test]
async fn the_admin_listener_closes_a_silent_connection_too() {
    let (_up, p) = proxy("60s").await;
    let mut s = TcpStream::connect(p.admin).await.unwrap();
    let took = closes_within(&mut s, Duration::from_secs(5)).await;
    let took = took.expect("a silent admin connection was still open after 5 s");
    assert!(took >= Duration::from_millis(250), "closed early: {took:?}");
}

#[tokio::test]
async fn a_keep_alive_connection_lives_for_the_idle_timeout_not_the_header_timeout() {
    let (up, p) = proxy("1500ms").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle for well over the header timeout: the connection still serves.
    tokio::time::sleep(Duration::from_millis(900)).await;
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    assert_eq!(up.hits(), 2);
    // And then it is closed, about the idle timeout after its last answer.
    let took = closes_within(&mut s, Duration::from_secs(5)).await;
    let took = took.expect("an idle keep-alive connection was still open after 5 s");
    assert!(
        took >= Duration::from_millis(1000),
        "closed early: {took:?}"
    );
}

#[tokio::test]
async fn a_request_head_trickling_in_is_cut_at_the_header_read_timeout() {
    let (up, p) = proxy("60s").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // A new head, one header line every 100 ms, never finished (slowloris).
    s.write_all(b"GET /public/b HTTP/1.1\r\n").await.unwrap();
    let start = Instant::now();
    let mut probe = [0u8; 64];
    let closed = loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a head trickling in was still accepted after 5 s"
        );
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break start.elapsed(),
            Ok(Ok(n)) => panic!("answered: {}", String::from_utf8_lossy(&probe[..n])),
            Err(_) => {
                if s.write_all(b"x-slow: 1\r\n").await.is_err() {
                    break start.elapsed();
                }
            }
        }
    };
    assert!(
        closed >= Duration::from_millis(250),
        "closed early: {closed:?}"
    );
    assert_eq!(up.hits(), 1, "the unfinished request reached the upstream");
}

#[tokio::test]
async fn a_request_slower_than_both_timeouts_is_not_cut() {
    let (_up, p) = proxy("300ms").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /public/slow HTTP/1.1\r\nhost: x\r\nx-test-delay-ms: 1000\r\n\r\n")
        .await
        .unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // The idle timeout counts from that answer: the connection still serves right after.
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn an_idle_http2_connection_is_sent_away_at_the_idle_timeout() {
    let (_up, p) = proxy("1500ms").await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let start = Instant::now();
    let conn = tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://{}{path}", p.addr))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let r = sender.send_request(get("/public/a")).await.unwrap();
    assert_eq!(r.status(), 200);
    // HTTP/2 has no head to time: past the header timeout, the connection still serves.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let r = sender.send_request(get("/public/b")).await.unwrap();
    assert_eq!(r.status(), 200);
    // Idle for the idle timeout: the proxy sends GOAWAY and the connection ends.
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("an idle HTTP/2 connection was still open after 5 s")
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        start.elapsed()
    );
}
