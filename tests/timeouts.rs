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

/// Sends `first`, then one byte of `trickle` every 100 ms (cycling), never finishing a head,
/// and returns how long the listener at `addr` took to close the connection (at most 5 s).
async fn trickle_until_closed(
    addr: std::net::SocketAddr,
    first: &[u8],
    trickle: &[u8],
) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(first).await.unwrap();
    let start = Instant::now();
    let mut probe = [0u8; 256];
    let mut next = trickle.iter().cycle();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a connection trickling a head was still open after 5 s"
        );
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            // HTTP/2: the server's SETTINGS and the like; not an answer to anything.
            Ok(Ok(_)) => {}
            Err(_) => {
                let byte = [*next.next().unwrap()];
                if s.write_all(&byte).await.is_err() {
                    return start.elapsed();
                }
            }
        }
    }
}

#[tokio::test]
async fn a_first_request_head_trickling_in_is_cut_on_both_listeners() {
    let (up, p) = proxy("60s").await;
    // One byte, then more, never a whole head: as HTTP/1.1, and as a client that looks
    // like it is starting the HTTP/2 preface (the protocol is not decided yet).
    for (first, rest) in [
        (&b"G"[..], &b"ET /public/a HTTP/1.1\r\nx-slow: 1\r\n"[..]),
        (b"P", b"RI * HTTP/2.0\r\n"),
    ] {
        for (listener, addr) in [("public", p.addr), ("admin", p.admin)] {
            let took = trickle_until_closed(addr, first, rest).await;
            assert!(
                took >= Duration::from_millis(250),
                "{listener} {first:?}: closed early: {took:?}"
            );
        }
    }
    assert_eq!(up.hits(), 0);
}

/// An HTTP/2 frame header: length, type, flags, stream id.
fn h2_frame(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let mut f = (len as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f
}

#[tokio::test]
async fn an_http2_header_block_trickling_in_is_cut_on_both_listeners() {
    let (up, p) = proxy("60s").await;
    let mut open = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    open.extend(h2_frame(0, 0x4, 0, 0)); // SETTINGS, empty
    // A HEADERS frame announcing 200 bytes of header block, sent a byte at a time.
    let mut headers = h2_frame(200, 0x1, 0x4 | 0x1, 1);
    headers.extend([0x82u8; 199]); // `:method: GET`, indexed, repeated
    let mut slow_frame = open.clone();
    slow_frame.extend(&headers[..9]);
    // A header block left open: HEADERS without END_HEADERS, then a CONTINUATION trickled.
    let mut open_block = open.clone();
    open_block.extend(h2_frame(1, 0x1, 0x1, 1));
    open_block.push(0x82);
    open_block.extend(h2_frame(200, 0x9, 0x4, 1));
    for (what, first) in [("frame", &slow_frame), ("header block", &open_block)] {
        for (listener, addr) in [("public", p.addr), ("admin", p.admin)] {
            let took = trickle_until_closed(addr, first, &[0x82]).await;
            assert!(
                took >= Duration::from_millis(250),
                "{listener} {what}: closed early: {took:?}"
            );
        }
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn an_idle_http2_connection_answering_pings_is_not_cut_at_the_header_timeout() {
    // PING frames arrive whole: the connection is idle, not sending a head.
    let (_up, p) = proxy("1500ms").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut open = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    open.extend(h2_frame(0, 0x4, 0, 0));
    s.write_all(&open).await.unwrap();
    let start = Instant::now();
    let mut sink = [0u8; 256];
    while start.elapsed() < Duration::from_millis(1000) {
        let mut ping = h2_frame(8, 0x6, 0, 0);
        ping.extend([7u8; 8]);
        s.write_all(&ping)
            .await
            .unwrap_or_else(|e| panic!("closed after {:?}: {e}", start.elapsed()));
        let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut sink)).await;
    }
    // Three header timeouts in, still open; then closed at the idle timeout, although this
    // client never acknowledges the PING that follows the GOAWAY.
    closes_within(&mut s, Duration::from_secs(5))
        .await
        .expect("an idle HTTP/2 connection was still open 5 s later");
    assert!(
        start.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
}
