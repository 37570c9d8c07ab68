//! The upstream leg (SPEC §5.1): the HTTP version scopegate speaks to the client whatever
//! the upstream's (RFC 9110 §6.2), behind real HTTP/1.0 servers.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use bytes::Bytes;
use common::policy;
use common::*;
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `python3 -m http.server` (HTTP/1.0, as a new user would try first) serving a temp dir
/// with `public/hello.txt`. Killed on drop.
struct PythonHttpServer {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for PythonHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonHttpServer {
    async fn start() -> PythonHttpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        std::fs::write(dir.path().join("public/hello.txt"), "hello from python\n").unwrap();
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .expect("http.server announces its port");
        let port: u16 = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonHttpServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        }
    }
}

/// A hand-written HTTP/1.0 upstream whose answers have no length: the body ends when it
/// closes the connection, as HTTP/1.0 allows.
async fn http10_until_close() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close")
                    .await;
            });
        }
    });
    addr
}

/// `n` GETs of `path`, one after the other on ONE client connection (hyper's HTTP/1.1
/// client: a closed connection fails the next request). Returns the versions and bodies.
async fn many_on_one_connection(proxy: SocketAddr, path: &str, n: usize) -> Vec<(Version, Bytes)> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for i in 0..n {
        sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("the client connection was closed after {i} requests: {e}"));
        let req = Request::get(path)
            .header("host", proxy.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("request {i} on the kept connection: {e}"));
        let version = resp.version();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "request {i}: {body:?}");
        out.push((version, body));
    }
    out
}

#[tokio::test]
async fn behind_python_http_server_the_client_keeps_one_http11_connection() {
    let up = PythonHttpServer::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .start()
        .await;
    // Direct, the upstream answers HTTP/1.0 (the premise of the test).
    let direct = common::raw(
        up.addr,
        b"GET /public/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(direct.starts_with("HTTP/1.0 200"), "{direct}");

    for (version, body) in many_on_one_connection(p.addr, "/public/hello.txt", 5).await {
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(body, "hello from python\n");
    }
}

#[tokio::test]
async fn an_http10_body_delimited_by_close_reaches_a_kept_alive_client_whole() {
    let up = http10_until_close().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up)
        .start()
        .await;
    for (version, body) in many_on_one_connection(p.addr, "/public/x", 3).await {
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(body, "until close");
    }
}

#[tokio::test]
async fn an_http10_client_is_answered_in_http10() {
    let up = http10_until_close().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up)
        .start()
        .await;
    let text = common::raw(p.addr, b"GET /public/x HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with("until close"), "{text}");
}
