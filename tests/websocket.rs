//! WebSockets after authorization (SPEC §5.1), against a real echo upstream (tokio-tungstenite,
//! an independent implementation) and real clients over HTTP/1.1 (RFC 6455 upgrade) and
//! HTTP/2 (RFC 8441 extended CONNECT): messages both ways, text and binary, large frames,
//! the close handshake; refusals before any upgrade with the upstream never contacted; the
//! idle timeout and the drain, each closing with a close frame.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::policy::{self, *};
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A WebSocket echo server: every text or binary message comes back as it was. It notes
/// each connection, the handshake headers it got, and the close frames it received.
#[derive(Clone)]
struct EchoUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    headers: Vec<http::HeaderMap>,
    closes: Vec<Option<u16>>,
}

impl EchoUpstream {
    async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.lock().unwrap().connections += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    let heard = s.clone();
                    // The error type is tungstenite's, however large.
                    #[allow(clippy::result_large_err)]
                    let callback = move |req: &WsRequest, resp: WsResponse| {
                        heard.lock().unwrap().headers.push(req.headers().clone());
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if let Message::Close(frame) = &msg {
                            let code = frame.as_ref().map(|f| u16::from(f.code));
                            s.lock().unwrap().closes.push(code);
                        } else if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        EchoUpstream { addr, seen }
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }
}

async fn proxy(up: &EchoUpstream, policy: &str, config: &str) -> Proxy {
    ProxyBuilder::new(policy)
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config(config)
        .start()
        .await
}

type Ws<S> = WebSocketStream<S>;

/// An HTTP/1.1 WebSocket client through the proxy.
async fn connect_h1(
    p: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws<TcpStream>, WsError> {
    let mut req = format!("ws://{}{path}", p.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect(p.addr).await.unwrap();
    tokio_tungstenite::client_async(req, stream)
        .await
        .map(|(ws, _)| ws)
}

/// An HTTP/2 WebSocket client (RFC 8441) through the proxy, over h2c.
async fn connect_h2(
    p: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
) -> Ws<TokioIo<hyper::upgrade::Upgraded>> {
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req =
        Request::connect(format!("http://{}{path}", p.addr)).header("sec-websocket-version", "13");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Empty::<Bytes>::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// Text, binary and a 1 MiB binary message, each echoed; then the client's close is
/// answered and the stream ends.
async fn converse<S>(ws: &mut Ws<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let large: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for msg in [
        Message::text("hello through scopegate"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(large),
        Message::text("é".repeat(70_000)),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an echo")
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let mut answered = false;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the close is answered")
    {
        match m {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Normal);
                answered = true;
            }
            Ok(other) => panic!("after close: {other:?}"),
            Err(_) => break,
        }
    }
    assert!(answered, "the upstream's close frame came back");
}

fn metric(text: &str, line_start: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn an_authorized_websocket_carries_messages_both_ways_over_http11() {
    let up = EchoUpstream::start().await;
    let p = proxy(&up, &policy::standard(), "").await;
    let auth = format!("Bearer {KEY_READ}");
    let mut ws = connect_h1(&p, "/v1/bots/bot-1?x=1", &[("authorization", &auth)])
        .await
        .unwrap();
    let m = p.metrics().await;
    assert_eq!(metric(&m, "scopegate_websockets_open "), Some(1), "{m}");
    assert_eq!(
        metric(&m, "scopegate_websockets_total{route=\"bot-read\"}"),
        Some(1)
    );
    converse(&mut ws).await;
    // The upgrade request carried the identity, not the credential.
    let h = up.seen.lock().unwrap().headers[0].clone();
    assert_eq!(h["x-auth-kind"], "api_key");
    assert_eq!(h["x-auth-key-id"], "key-read");
    assert!(h.get("authorization").is_none());
    assert_eq!(up.seen.lock().unwrap().closes, [Some(1000)]);
    drop(ws);
    eventually(Duration::from_secs(5), "the gauge back to 0", || async {
        metric(&p.metrics().await, "scopegate_websockets_open ") == Some(0)
    })
    .await;
}

#[tokio::test]
async fn an_authorized_websocket_carries_messages_both_ways_over_http2() {
    let up = EchoUpstream::start().await;
    let p = proxy(&up, &policy::standard(), "").await;
    let auth = format!("Bearer {KEY_READ}");
    let mut ws = connect_h2(&p, "/v1/bots/bot-2", &[("authorization", &auth)]).await;
    converse(&mut ws).await;
    let h = up.seen.lock().unwrap().headers[0].clone();
    assert_eq!(h["x-auth-key-id"], "key-read");
    assert_eq!(h["sec-websocket-version"], "13");
}

/// Path, credential headers, status, code.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// A handshake the decision refuses gets the §6 answer, and the upstream never hears of it.
#[tokio::test]
async fn a_refused_handshake_gets_its_problem_before_any_upgrade() {
    let up = EchoUpstream::start().await;
    let p = proxy(&up, &policy::standard(), "").await;
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let other_bot = policy::token("app-hs", serde_json::json!({}));
    let bearer = format!("Bearer {other_bot}");
    let cases: [Refusal; 4] = [
        ("/v1/bots/bot-1", vec![], 401, "missing_credentials"),
        (
            "/v1/bots/bot-1",
            vec![("authorization", "Bearer sk_live_nope_0000000000")],
            401,
            "invalid_api_key",
        ),
        (
            "/v1/bots/bot-9",
            vec![("authorization", &bearer)],
            403,
            "resource_not_allowed",
        ),
        ("/nowhere", vec![], 404, "no_route"),
    ];
    for (path, extra, status, code) in cases {
        let mut headers = ws.to_vec();
        headers.extend(extra);
        let r = common::raw::send_raw(&p, "GET", path, &headers).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{path}");
        // And from a real client: the handshake fails with that status.
        let h1 = connect_h1(&p, path, &headers[4..]).await;
        match h1 {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), status),
            other => panic!("{path}: {:?}", other.map(|_| "upgraded")),
        }
    }
    assert_eq!(up.connections(), 0, "the upstream was never contacted");
}

#[tokio::test]
async fn other_upgrades_are_malformed_requests() {
    let up = EchoUpstream::start().await;
    let p = proxy(&up, &policy::standard(), "").await;
    for upgrade in ["h2c", "websocket, foo/1", "TLS/1.2"] {
        let r = common::raw::send_raw(
            &p,
            "GET",
            "/public/x",
            &[("connection", "upgrade"), ("upgrade", upgrade)],
        )
        .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "malformed_request"),
            "{upgrade}"
        );
    }
    // A WebSocket handshake that is not a GET.
    let r = common::raw::send_raw(
        &p,
        "POST",
        "/public/x",
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("content-length", "0"),
        ],
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "malformed_request"));
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn an_opted_in_app_on_an_encrypted_route_is_refused_a_websocket() {
    let up = EchoUpstream::start().await;
    let p = proxy(&up, &common::payload::policy(), "").await;
    let opted_in = format!("Bearer {}", common::payload::token("app-rsa"));
    let r = common::raw::send_raw(
        &p,
        "GET",
        "/enc",
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("authorization", &opted_in),
        ],
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "encryption_required"));
    match connect_h1(&p, "/enc", &[("authorization", &opted_in)]).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("{:?}", other.map(|_| "upgraded")),
    }
    assert_eq!(up.connections(), 0);
    // The same route for an app that did not opt in: a WebSocket like any other.
    let plain = format!("Bearer {}", common::payload::token("app-plain"));
    let mut ws = connect_h1(&p, "/enc", &[("authorization", &plain)])
        .await
        .unwrap();
    converse(&mut ws).await;
}

/// Waits for scopegate's close frame (1001 going away) and the end of the stream.
async fn closed_by_scopegate<S>(ws: &mut Ws<S>, within: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut code = None;
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Err(_) => panic!("not closed within {within:?}"),
            Ok(Some(Ok(Message::Close(f)))) => code = f.map(|f| f.code),
            Ok(Some(Ok(m))) => panic!("unexpected {m:?}"),
            Ok(Some(Err(_))) | Ok(None) => break,
        }
    }
    assert_eq!(code, Some(CloseCode::Away));
}

#[tokio::test]
async fn a_websocket_without_a_frame_for_the_idle_timeout_is_closed_both_ways() {
    let up = EchoUpstream::start().await;
    let p = proxy(
        &up,
        &policy::standard(),
        "limits: { websocket_idle_timeout: 400ms }",
    )
    .await;
    let mut ws = connect_h1(&p, "/public/ws", &[]).await.unwrap();
    // Traffic keeps it open past the timeout.
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("{i}"))
        );
    }
    let quiet = std::time::Instant::now();
    closed_by_scopegate(&mut ws, Duration::from_secs(5)).await;
    assert!(quiet.elapsed() >= Duration::from_millis(400));
    eventually(Duration::from_secs(5), "the upstream got 1001", || async {
        up.seen.lock().unwrap().closes == [Some(1001)]
    })
    .await;
}

#[tokio::test]
async fn the_drain_waits_for_a_websocket_then_closes_it_with_a_close_frame() {
    let up = EchoUpstream::start().await;
    let mut p = proxy(&up, &policy::standard(), "limits: { drain_timeout: 500ms }").await;
    let mut h1 = connect_h1(&p, "/public/ws", &[]).await.unwrap();
    let mut h2 = connect_h2(&p, "/public/ws", &[]).await;
    let started = std::time::Instant::now();
    let running = p.running.take().unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    // Still carried while the drain runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    h1.send(Message::text("during drain")).await.unwrap();
    assert_eq!(
        h1.next().await.unwrap().unwrap(),
        Message::text("during drain")
    );
    closed_by_scopegate(&mut h1, Duration::from_secs(5)).await;
    closed_by_scopegate(&mut h2, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "at the end of the drain"
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown completes")
        .unwrap();
}
