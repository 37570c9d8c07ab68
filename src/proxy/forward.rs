//! The upstream client: HTTP/1.1 keep-alive connections pooled per upstream, or one
//! multiplexed HTTP/2 connection (`http2: true`), over TCP or verified TLS (`upstream_tls`),
//! with connect and response-header timeouts mapped to 502 and 504. The pipeline hands it
//! only what a `Permit` let through.
//!
//! The pool is a short list of idle `SendRequest`s under a lock, taken most recent first.
//! A connection goes back on the list as soon as its response head arrives; it is handed out
//! again only once hyper reports it ready, i.e. that response's body has been read to the
//! end. hyper-util's pooled client does the same but spawns a task per request to wait for
//! that moment and hashes the origin twice per request; this costs a scan of a few flags.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::tls::Certificate;
use super::upstream_tls;
use crate::config::{Config, Upstream};
use crate::error::Error;
use crate::wire::Body;

/// Idle connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 256;
/// An idle connection unused this long is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Forwarder {
    upstreams: Vec<Upstream>,
    legs: Vec<Leg>,
    timeout: Duration,
    connect_timeout: Duration,
}

/// The connections to one upstream.
struct Leg {
    /// `https://` upstreams.
    tls: Option<upstream_tls::Client>,
    /// HTTP/1.1 upstreams.
    pool: Pool,
    /// HTTP/2 upstreams: the one connection every request shares, and when it was last
    /// used. The lock is held while a replacement connects, so there is never more than one.
    h2: tokio::sync::Mutex<Option<(http2::SendRequest<Body>, Instant)>>,
}

impl Forwarder {
    /// Reads the upstreams' CA and client-certificate files: a file that does not load
    /// stops the start (and fails `check`), never a request.
    pub fn new(config: &Config) -> Result<Forwarder, String> {
        let legs = config
            .upstreams
            .iter()
            .map(|u| {
                let tls = match &u.tls {
                    Some(t) => Some(
                        upstream_tls::Client::new(t, u.http2)
                            .map_err(|e| format!("upstreams.{}: {e}", u.name))?,
                    ),
                    None => None,
                };
                Ok(Leg {
                    tls,
                    pool: Pool::default(),
                    h2: tokio::sync::Mutex::new(None),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Forwarder {
            upstreams: config.upstreams.clone(),
            legs,
            timeout: config.limits.upstream_timeout,
            connect_timeout: config.limits.upstream_connect_timeout,
        })
    }

    pub fn upstream(&self, i: usize) -> &Upstream {
        &self.upstreams[i]
    }

    /// scopegate's client certificates to upstreams, for the reload watcher.
    pub fn certificates(&self) -> Vec<Arc<Certificate>> {
        self.legs
            .iter()
            .filter_map(|l| l.tls.as_ref()?.certificate.clone())
            .collect()
    }

    /// Sends the request to upstream `i` at `path_and_query` (already normalized, the
    /// upstream's base path in front); a WebSocket handshake (`upgrade`) goes on a
    /// connection of its own. Returns the response and how long the upstream took to answer
    /// with headers. Only the pipeline calls it, with a permitted request.
    pub async fn send(
        &self,
        i: usize,
        path_and_query: String,
        mut req: Request<Body>,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, Duration), Error> {
        if upgrade {
            return self.upgrade(i, path_and_query, req).await;
        }
        // Origin form: the request line carries the path; `Host` is set by `headers`.
        let path = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
            .map_err(|_| Error::UpstreamUnavailable("unrepresentable upstream URI".into()))?;
        let up = &self.upstreams[i];
        let started = Instant::now();
        if up.http2 {
            // HTTP/2 names the target in `:scheme` and `:authority`, not `Host`.
            let scheme = if up.tls.is_some() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            };
            *req.uri_mut() = Uri::builder()
                .scheme(scheme)
                .authority(up.authority.clone())
                .path_and_query(path)
                .build()
                .map_err(|_| Error::UpstreamUnavailable("unrepresentable upstream URI".into()))?;
            *req.version_mut() = Version::HTTP_2;
            req.headers_mut().remove(header::HOST);
        } else {
            *req.uri_mut() = Uri::from(path);
            *req.version_mut() = Version::HTTP_11;
        }
        let answer = async {
            if up.http2 {
                self.round_trip_h2(i, req, started).await
            } else {
                self.round_trip(i, req, started).await
            }
        };
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(Error::UpstreamTimeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok(resp)) => Ok((resp, started.elapsed())),
        }
    }

    /// A WebSocket handshake (already in its HTTP/1.1 form) to upstream `i`, on a connection
    /// of its own that becomes the tunnel if the upstream switches protocols (101).
    async fn upgrade(
        &self,
        i: usize,
        path_and_query: String,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Duration), Error> {
        if self.upstreams[i].http2 {
            return Err(Error::UpstreamUnavailable(
                "a WebSocket needs an HTTP/1.1 upstream (http2: false)".into(),
            ));
        }
        let path = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
            .map_err(|_| Error::UpstreamUnavailable("unrepresentable upstream URI".into()))?;
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
        let started = Instant::now();
        let exchange = async {
            let Sender::H1(mut conn) = self.open(i, true).await? else {
                unreachable!("an http/1.1 upstream connects with http/1.1");
            };
            conn.send_request(req).await.map_err(|e| send_error(&e))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(Error::UpstreamTimeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok(resp)) => Ok((resp, started.elapsed())),
        }
    }

    /// One request on the upstream's HTTP/2 connection, opened if there is none, it closed
    /// (GOAWAY, reset) or it idled past `IDLE_TIMEOUT`.
    async fn round_trip_h2(
        &self,
        i: usize,
        req: Request<Body>,
        now: Instant,
    ) -> Result<Response<Incoming>, Error> {
        let mut sender = {
            let mut slot = self.legs[i].h2.lock().await;
            match slot.as_mut() {
                Some((conn, since))
                    if !conn.is_closed()
                        && now.saturating_duration_since(*since) <= IDLE_TIMEOUT =>
                {
                    *since = now;
                    conn.clone()
                }
                _ => {
                    let conn = match self.connect(i).await? {
                        Sender::H2(c) => c,
                        Sender::H1(_) => unreachable!("an http2 upstream connects with h2"),
                    };
                    *slot = Some((conn.clone(), now));
                    conn
                }
            }
        };
        // Waits while the upstream's concurrent-stream limit is reached.
        sender.ready().await.map_err(|e| send_error(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| send_error(&e))?;
        check_answer(&resp)?;
        Ok(resp)
    }

    async fn round_trip(
        &self,
        i: usize,
        mut req: Request<Body>,
        now: Instant,
    ) -> Result<Response<Incoming>, Error> {
        let pool = &self.legs[i].pool;
        let (conn, resp) = 'sent: {
            if let Some(mut conn) = pool.checkout(now) {
                match conn.try_send_request(req).await {
                    Ok(resp) => break 'sent (conn, resp),
                    // The upstream closed the idle connection as we wrote to it and the
                    // request never left: it is safe to send again, on a new connection.
                    Err(mut e) => match e.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(send_error(&e.into_error())),
                    },
                }
            }
            let mut conn = match self.connect(i).await? {
                Sender::H1(c) => c,
                Sender::H2(_) => unreachable!("an http/1.1 upstream connects with http/1.1"),
            };
            let resp = conn.send_request(req).await.map_err(|e| send_error(&e))?;
            (conn, resp)
        };
        // A connection whose answer is refused is dropped, never pooled.
        check_answer(&resp)?;
        pool.checkin(conn, now);
        Ok(resp)
    }

    /// A new connection to upstream `i`: TCP, then TLS for `https://` (both within
    /// `upstream_connect_timeout`), then the HTTP handshake the upstream is configured for.
    fn connect(&self, i: usize) -> Opening<'_> {
        self.open(i, false)
    }

    /// `connect`; with `upgrades`, an HTTP/1.1 connection that can be taken over after a 101.
    /// Boxed: a connection is opened once for many requests, and its TLS handshake's state
    /// inline would make every request's future kilobytes larger, copied whole as it moves.
    fn open(&self, i: usize, upgrades: bool) -> Opening<'_> {
        Box::pin(self.open_inline(i, upgrades))
    }

    async fn open_inline(&self, i: usize, upgrades: bool) -> Result<Sender, Error> {
        let up = &self.upstreams[i];
        let host = up.authority.host();
        // `[::1]` in a URL is `::1` to the resolver.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let tcp = async {
            let stream = TcpStream::connect((host, up.port()))
                .await
                .map_err(|e| Error::UpstreamConnect(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            let Some(tls) = &self.legs[i].tls else {
                return Ok(Stream::Plain(stream));
            };
            let stream = tls
                .connector
                .connect(tls.server_name.clone(), stream)
                .await
                .map_err(|e| {
                    let reason = upstream_tls::is_tls_failure(&e).unwrap_or_else(|| e.to_string());
                    tracing::warn!(upstream = %up.name, %reason, "upstream TLS handshake failed");
                    Error::UpstreamTls(reason)
                })?;
            if up.http2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(Error::UpstreamTls(
                    "the upstream did not agree to h2 by ALPN".into(),
                ));
            }
            Ok(Stream::Tls(Box::new(stream)))
        };
        let stream = match tokio::time::timeout(self.connect_timeout, tcp).await {
            Ok(s) => s?,
            Err(_) => {
                return Err(Error::UpstreamConnect(format!(
                    "no connection within {:?}",
                    self.connect_timeout
                )));
            }
        };
        match stream {
            Stream::Plain(s) => handshake(s, up.http2, upgrades).await,
            Stream::Tls(s) => handshake(*s, up.http2, upgrades).await,
        }
    }
}

type Opening<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Sender, Error>> + Send + 'a>>;

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A connection's request side.
enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

async fn handshake<I>(io: I, http2: bool, upgrades: bool) -> Result<Sender, Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // Finds a dead connection while it idles, before a request does.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(io)
            .await
            .map_err(|e| handshake_error(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended with an error");
            }
        });
        return Ok(Sender::H2(sender));
    }
    let (sender, conn) = http1::handshake(io)
        .await
        .map_err(|e| handshake_error(&e))?;
    tokio::spawn(async move {
        let ended = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(Sender::H1(sender))
}

fn handshake_error(e: &hyper::Error) -> Error {
    match upstream_tls::is_tls_failure(e) {
        Some(reason) => Error::UpstreamTls(reason),
        None => Error::UpstreamConnect(e.to_string()),
    }
}

/// Why a request did not get its answer. The client's own body failing (bad chunk framing,
/// a body cut short) surfaces here, as hyper's "user body" error wrapping the inbound
/// body's error: that is the client's fault, not the upstream's.
fn send_error(e: &hyper::Error) -> Error {
    if let Some(reason) = upstream_tls::is_tls_failure(e) {
        tracing::warn!(%reason, "upstream TLS failed");
        return Error::UpstreamTls(reason);
    }
    let client_body =
        e.is_user() && std::error::Error::source(e).is_some_and(|cause| cause.is::<hyper::Error>());
    if client_body {
        Error::MalformedRequest("request body could not be read")
    } else {
        Error::UpstreamUnavailable(e.to_string())
    }
}

/// Answers no client may be given: framing hyper resolved silently (a length and chunked
/// together: the length would be sent on with the chunked body, cut or overrun), and a
/// protocol switch the proxy never asked for (it removes `Upgrade`).
fn check_answer(resp: &Response<Incoming>) -> Result<(), Error> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::UpstreamUnavailable(
            "101 Switching Protocols to a request that asked for no upgrade".into(),
        ));
    }
    let h = resp.headers();
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err(Error::UpstreamUnavailable(
            "answer with both Content-Length and Transfer-Encoding".into(),
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: http1::SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// The most recently returned connection that is ready for a request. Closed ones and
    /// ready ones idle past `IDLE_TIMEOUT` are dropped on the way; busy ones (a response
    /// body still being read) stay.
    fn checkout(&self, now: Instant) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i];
            if c.conn.is_closed() {
                idle.swap_remove(i);
            } else if c.conn.is_ready() {
                let c = idle.swap_remove(i);
                if now.saturating_duration_since(c.since) <= IDLE_TIMEOUT {
                    return Some(c.conn);
                }
            }
        }
        None
    }

    fn checkin(&self, conn: http1::SendRequest<Body>, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle { conn, since: now });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` idle client connections to a listener that accepts and keeps them open.
    async fn connections(n: usize) -> Vec<http1::SendRequest<Body>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            sender.ready().await.unwrap();
            out.push(sender);
        }
        out
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_until_the_idle_timeout_then_dropped() {
        let pool = Pool::default();
        let t0 = Instant::now();
        let mut conns = connections(2).await;
        pool.checkin(conns.pop().unwrap(), t0);
        assert!(
            pool.checkout(t0 + IDLE_TIMEOUT).is_some(),
            "within the timeout"
        );
        pool.checkin(conns.pop().unwrap(), t0);
        let late = t0 + IDLE_TIMEOUT + Duration::from_secs(1);
        assert!(pool.checkout(late).is_none(), "past the timeout");
        assert!(
            pool.idle.lock().unwrap().is_empty(),
            "the stale one is dropped"
        );
    }

    #[tokio::test]
    async fn at_most_max_idle_connections_are_kept() {
        let pool = Pool::default();
        let now = Instant::now();
        for c in connections(MAX_IDLE + 3).await {
            pool.checkin(c, now);
        }
        assert_eq!(pool.idle.lock().unwrap().len(), MAX_IDLE);
    }
}
