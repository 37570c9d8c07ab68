//! The upstream connection pool, against a hand-written HTTP/1.1 upstream that counts its
//! connections and can misbehave on cue: close after answering without saying so, or send
//! a body slowly; and against a listener that never accepts (connect timeout).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::policy;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers `GET <path>` with `conn <n>` (n counts connections from 1). Paths:
/// `/public/close` answers, then closes the connection (no `Connection: close`);
/// `/public/slow` sends half of its 10-byte body, waits 300 ms, sends the rest;
/// `/public/both-framings` sends Content-Length and chunked framing together;
/// `/public/upgrade` answers 101 Switching Protocols unasked.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(stream, n));
            }
        });
        RawUpstream { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, n: usize) {
    let mut buf = Vec::new();
    loop {
        // One request head at a time (GETs only: no bodies).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        match path.as_str() {
            "/public/slow" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = stream.write_all(b"67890").await;
            }
            // Two framings: hyper reads the chunked body (10 bytes), the length says 5.
            "/public/both-framings" => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
                    )
                    .await;
            }
            // Switching protocols although the proxy never asks to.
            "/public/upgrade" => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nraw bytes after the switch",
                    )
                    .await;
            }
            _ => {
                let body = format!("conn {n}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                if path == "/public/close" {
                    return;
                }
            }
        }
    }
}

async fn proxy_in_front_of(up: &RawUpstream) -> Proxy {
    ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .start()
        .await
}

async fn body_of(url: &str) -> (u16, String) {
    let a = get(url, &[]).await;
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = RawUpstream::start().await;
    let p = proxy_in_front_of(&up).await;
    for _ in 0..20 {
        assert_eq!(body_of(&p.url("/public/a")).await, (200, "conn 1".into()));
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let up = RawUpstream::start().await;
    let p = proxy_in_front_of(&up).await;
    for i in 1..=5 {
        assert_eq!(
            body_of(&p.url("/public/close")).await,
            (200, format!("conn {i}"))
        );
        // The upstream's idle close reaches the proxy before the next request does.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.connections(), 5);
}

#[tokio::test]
async fn a_response_still_streaming_keeps_its_connection_busy() {
    let up = RawUpstream::start().await;
    let p = proxy_in_front_of(&up).await;
    let url = p.url("/public/slow");
    let slow = tokio::spawn(async move { body_of(&url).await });
    // While the slow body is in flight its connection is not handed out: this request
    // is answered on a second one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(body_of(&p.url("/public/a")).await, (200, "conn 2".into()));
    assert_eq!(slow.await.unwrap(), (200, "1234567890".into()));
    // Both are idle now; the next requests reuse them.
    for _ in 0..4 {
        let (status, body) = body_of(&p.url("/public/a")).await;
        assert_eq!(status, 200);
        assert!(body == "conn 1" || body == "conn 2", "{body}");
    }
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn a_response_abandoned_midway_does_not_poison_the_pool() {
    let up = RawUpstream::start().await;
    let p = proxy_in_front_of(&up).await;
    // Read the head of the slow response, then hang up with the body half sent.
    let mut client = TcpStream::connect(p.addr).await.unwrap();
    client
        .write_all(b"GET /public/slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The half-read connection is never reused: a request gets a whole answer.
    for _ in 0..3 {
        let (status, body) = body_of(&p.url("/public/a")).await;
        assert_eq!((status, body.starts_with("conn ")), (200, true), "{body}");
    }
    let (status, body) = body_of(&p.url("/public/slow")).await;
    assert_eq!((status, body.as_str()), (200, "1234567890"));
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// neither succeeds nor fails, the way a firewalled or overloaded host behaves. Stays so
/// while this value lives.
struct Unresponsive {
    addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl Unresponsive {
    async fn start() -> Unresponsive {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let listener = socket.listen(1).unwrap();
        let mut queued = Vec::new();
        for _ in 0..16 {
            let attempt = TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_millis(200), attempt).await {
                Ok(Ok(s)) => queued.push(s),
                Ok(Err(e)) => panic!("connect to the filling listener: {e}"),
                Err(_) => {
                    return Unresponsive {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    };
                }
            }
        }
        panic!("the accept queue of a backlog-1 listener never filled");
    }
}

#[tokio::test]
async fn an_upstream_that_never_accepts_is_a_connect_timeout() {
    let up = Unresponsive::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config("limits: { upstream_connect_timeout: 200ms, upstream_timeout: 5s }")
        .start()
        .await;
    // Without the connect timeout the request would wait for the 5 s upstream timeout: 504.
    let a = get(&p.url("/public/a"), &[]).await;
    assert_eq!((a.status, a.code().as_str()), (502, "upstream_unavailable"));
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("scopegate_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_upstream_answer_framed_two_ways_or_switching_protocols_unasked_is_a_502() {
    let up = RawUpstream::start().await;
    let p = proxy_in_front_of(&up).await;
    for (i, path) in ["/public/both-framings", "/public/upgrade"]
        .iter()
        .enumerate()
    {
        let a = get(&p.url(path), &[]).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (502, "upstream_unavailable"),
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        // That connection is not reused: the next request opens another.
        assert_eq!(
            body_of(&p.url("/public/a")).await,
            (200, format!("conn {}", i + 2))
        );
    }
    assert!(
        p.metrics()
            .await
            .contains(r#"scopegate_upstream_errors_total{kind="protocol"} 2"#)
    );
}
