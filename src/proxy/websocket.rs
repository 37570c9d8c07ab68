//! WebSockets (SPEC §5.1): telling a WebSocket handshake from other upgrades, and the tunnel
//! that carries frames both ways once the pipeline has authorized the request and the
//! upstream has switched protocols.
//!
//! Frames pass untouched; the tunnel only follows where each one ends (`Frames`), so that
//! when scopegate itself closes a WebSocket — `websocket_idle_timeout` without a byte either
//! way, or the end of the drain — it can send each side a close frame (1001 going away)
//! between two frames, never inside one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::listener::Drain;
use crate::error::Error;

/// How the client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// RFC 6455: `GET` with `Connection: upgrade` and `Upgrade: websocket`; answered 101.
    Upgrade,
    /// RFC 8441: HTTP/2 extended `CONNECT` with `:protocol websocket`; answered 200.
    ExtendedConnect,
}

/// Whether the request asks for a WebSocket. Any other `Upgrade` (or `:protocol`) is refused
/// (400 `malformed_request`): the proxy switches to nothing it cannot authorize.
pub fn asked(parts: &Parts) -> Result<Option<Handshake>, Error> {
    if parts.version == Version::HTTP_2 {
        let Some(protocol) = parts.extensions.get::<hyper::ext::Protocol>() else {
            return Ok(None);
        };
        return if parts.method == Method::CONNECT
            && protocol.as_str().eq_ignore_ascii_case("websocket")
        {
            Ok(Some(Handshake::ExtendedConnect))
        } else {
            Err(Error::MalformedRequest(
                "an extended CONNECT other than websocket",
            ))
        };
    }
    let mut upgrades = parts.headers.get_all(header::UPGRADE).iter().peekable();
    if upgrades.peek().is_none() {
        return Ok(None);
    }
    let websocket = upgrades
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .all(|t| t.eq_ignore_ascii_case(b"websocket"));
    if !websocket {
        return Err(Error::MalformedRequest("an Upgrade other than websocket"));
    }
    if parts.method != Method::GET || !has_token(&parts.headers, header::CONNECTION, "upgrade") {
        return Err(Error::MalformedRequest(
            "a WebSocket handshake is a GET with Connection: upgrade",
        ));
    }
    Ok(Some(Handshake::Upgrade))
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Turns the client's handshake into the HTTP/1.1 one the upstream gets (after the usual
/// request hygiene removed `Connection` and `Upgrade` as hop-by-hop). An HTTP/2 client
/// sends no `Sec-WebSocket-Key` (RFC 8441 §5): scopegate makes one.
pub fn upstream_request(headers: &mut HeaderMap, method: &mut Method, how: Handshake) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if how == Handshake::ExtendedConnect {
        *method = Method::GET;
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
        if let Ok(key) = HeaderValue::try_from(key) {
            headers.insert(header::SEC_WEBSOCKET_KEY, key);
        }
    }
}

/// Whether the upstream's 101 switches to a WebSocket, as it must.
pub fn switched(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The upstream's 101 headers as the client gets them (after the usual response hygiene):
/// a 101 with `Upgrade` for HTTP/1.1, a 200 without the accept key for HTTP/2.
pub fn client_response(headers: &mut HeaderMap, how: Handshake) {
    match how {
        Handshake::Upgrade => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        Handshake::ExtendedConnect => {
            headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        }
    }
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A side closed its connection.
    Closed,
    /// `websocket_idle_timeout` without a byte either way.
    Idle,
    /// The drain ended.
    Drained,
}

/// One open tunnel on `scopegate_websockets_open`: counted from the switch (before the
/// client has its 101, so whoever sees the 101 sees the count) until dropped, however the
/// tunnel ends.
pub struct Open(IntGauge);

impl Open {
    pub fn count(gauge: &IntGauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Carries bytes both ways between the two upgraded connections until a side closes, the
/// idle timeout passes, or the drain ends. Holds `drain`, so the drain waits for it, and
/// `open`, the tunnel's count.
pub async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    mut drain: Drain,
    _open: Open,
) -> Ended {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            return Ended::Closed;
        }
    };
    let _counted = drain.tunnel();
    carry(
        TokioIo::new(client),
        TokioIo::new(upstream),
        idle_timeout,
        &mut drain,
    )
    .await
}

async fn carry<C, U>(client: C, upstream: U, idle_timeout: Duration, drain: &mut Drain) -> Ended
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    // Frames to the upstream are a client's (masked), to the client a server's.
    let mut to_upstream = Frames::default();
    let mut to_client = Frames::default();
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let ended = {
        let up = pump(
            &mut client_read,
            &mut up_write,
            &mut to_upstream,
            &last,
            started,
        );
        let down = pump(
            &mut up_read,
            &mut client_write,
            &mut to_client,
            &last,
            started,
        );
        tokio::pin!(up, down);
        loop {
            let quiet_since = started + Duration::from_millis(last.load(Ordering::Relaxed));
            tokio::select! {
                // A side that closed its connection has ended the WebSocket (after the
                // close handshake, or without one): nothing more can be answered.
                () = &mut up => break Ended::Closed,
                () = &mut down => break Ended::Closed,
                () = tokio::time::sleep_until(quiet_since + idle_timeout) => {
                    let quiet = started + Duration::from_millis(last.load(Ordering::Relaxed));
                    if quiet + idle_timeout <= Instant::now() {
                        break Ended::Idle;
                    }
                }
                () = drain.ended() => break Ended::Drained,
            }
        }
    };
    if ended != Ended::Closed {
        // Between frames, a close frame (1001 going away) to each side; inside one, only
        // the connection can end.
        if to_upstream.between() {
            let m = uuid::Uuid::new_v4().into_bytes();
            let frame = [0x88, 0x82, m[0], m[1], m[2], m[3], 0x03 ^ m[0], 0xe9 ^ m[1]];
            let _ = up_write.write_all(&frame).await;
        }
        if to_client.between() {
            let _ = client_write.write_all(&[0x88, 0x02, 0x03, 0xe9]).await;
        }
    }
    let _ = up_write.shutdown().await;
    let _ = client_write.shutdown().await;
    ended
}

/// Copies one way until the reader ends, noting the time of every read in `last` (ms since
/// `started`).
async fn pump<R, W>(r: &mut R, w: &mut W, frames: &mut Frames, last: &AtomicU64, started: Instant)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        frames.writing = true;
        if w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
            break;
        }
        frames.feed(&buf[..n]);
        frames.writing = false;
    }
}

/// Where the frames of one direction end (RFC 6455 §5.2), from the bytes written so far.
#[derive(Debug, Default)]
struct Frames {
    /// The header bytes of the frame being read so far, and how many it has in all.
    head: [u8; 14],
    have: usize,
    need: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A write is under way: its bytes may be half out.
    writing: bool,
}

impl Frames {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            self.head[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 2 {
                let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
                let extended = match self.head[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                self.need = 2 + extended + mask;
            }
            if self.have >= 2 && self.have == self.need {
                self.payload_left = match self.head[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                    127 => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&self.head[2..10]);
                        u64::from_be_bytes(b)
                    }
                    n => u64::from(n),
                };
                self.have = 0;
            }
        }
    }

    /// Between two frames: a frame of our own may be written here.
    fn between(&self) -> bool {
        !self.writing && self.have == 0 && self.payload_left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match payload {
            0..=125 => f.push(m | payload as u8),
            126..=65535 => {
                f.push(m | 126);
                f.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                f.push(m | 127);
                f.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, payload));
        f
    }

    #[test]
    fn frame_ends_are_found_across_any_split() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (len, masked) in [
            (0, true),
            (5, false),
            (125, true),
            (126, false),
            (70_000, true),
        ] {
            stream.extend(frame(len, masked));
            ends.push(stream.len());
        }
        for step in [1, 2, 3, 7, 1000, stream.len()] {
            let mut f = Frames::default();
            let mut at = 0;
            while at < stream.len() {
                let to = (at + step).min(stream.len());
                f.feed(&stream[at..to]);
                at = to;
                assert_eq!(
                    f.between(),
                    ends.contains(&at) || at == 0,
                    "step {step} at {at}"
                );
            }
        }
    }

    #[test]
    fn only_websocket_upgrades_are_taken() {
        let parts = |method: &str, headers: &[(&str, &str)]| {
            let mut b = http::Request::builder().method(method).uri("/ws");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap().into_parts().0
        };
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ];
        assert_eq!(asked(&parts("GET", &ws)).unwrap(), Some(Handshake::Upgrade));
        assert_eq!(asked(&parts("GET", &[])).unwrap(), None);
        for (method, headers) in [
            ("GET", &[("connection", "upgrade"), ("upgrade", "h2c")][..]),
            (
                "GET",
                &[("connection", "upgrade"), ("upgrade", "websocket, foo/1")][..],
            ),
            ("GET", &[("upgrade", "websocket")][..]),
            ("POST", &ws[..]),
        ] {
            assert!(
                matches!(
                    asked(&parts(method, headers)),
                    Err(Error::MalformedRequest(_))
                ),
                "{method} {headers:?}"
            );
        }
    }
}
