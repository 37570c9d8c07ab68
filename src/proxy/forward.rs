//! The upstream client: HTTP/1.1 keep-alive connections, pooled per upstream, with connect
//! and response-header timeouts mapped to 502 and 504. The pipeline hands it only what a
//! `Permit` let through.
//!
//! The pool is a short list of idle `SendRequest`s under a lock, taken most recent first.
//! A connection goes back on the list as soon as its response head arrives; it is handed out
//! again only once hyper reports it ready, i.e. that response's body has been read to the
//! end. hyper-util's pooled client does the same but spawns a task per request to wait for
//! that moment and hashes the origin twice per request; this costs a scan of a few flags.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::{Config, Upstream};
use crate::error::Error;
use crate::wire::Body;

/// Idle connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 256;
/// An idle connection unused this long is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Forwarder {
    upstreams: Vec<Upstream>,
    pools: Vec<Pool>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Forwarder {
    pub fn new(config: &Config) -> Forwarder {
        Forwarder {
            upstreams: config.upstreams.clone(),
            pools: config.upstreams.iter().map(|_| Pool::default()).collect(),
            timeout: config.limits.upstream_timeout,
            connect_timeout: config.limits.upstream_connect_timeout,
        }
    }

    pub fn upstream(&self, i: usize) -> &Upstream {
        &self.upstreams[i]
    }

    /// Sends the request to upstream `i` at `path_and_query` (already normalized, the
    /// upstream's base path in front). Returns the response and how long the upstream took
    /// to answer with headers. Only the pipeline calls it, with a permitted request.
    pub async fn send(
        &self,
        i: usize,
        path_and_query: String,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Duration), Error> {
        // Origin form: the request line carries the path; `Host` is set by `headers`.
        let path = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query))
            .map_err(|_| Error::UpstreamUnavailable("unrepresentable upstream URI".into()))?;
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = Version::HTTP_11;
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.round_trip(i, req, started)).await {
            Err(_) => Err(Error::UpstreamTimeout),
            Ok(Err(e)) => Err(e),
            Ok(Ok(resp)) => Ok((resp, started.elapsed())),
        }
    }

    async fn round_trip(
        &self,
        i: usize,
        mut req: Request<Body>,
        now: Instant,
    ) -> Result<Response<Incoming>, Error> {
        let pool = &self.pools[i];
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
            let mut conn = self.connect(&self.upstreams[i]).await?;
            let resp = conn.send_request(req).await.map_err(|e| send_error(&e))?;
            (conn, resp)
        };
        // A connection whose answer is refused is dropped, never pooled.
        check_answer(&resp)?;
        pool.checkin(conn, now);
        Ok(resp)
    }

    async fn connect(&self, up: &Upstream) -> Result<http1::SendRequest<Body>, Error> {
        let host = up.authority.host();
        // `[::1]` in a URL is `::1` to the resolver.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = up.authority.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(Error::UpstreamConnect(e.to_string())),
            Err(_) => {
                return Err(Error::UpstreamConnect(format!(
                    "no connection within {:?}",
                    self.connect_timeout
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::UpstreamConnect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Why a request did not get its answer. The client's own body failing (bad chunk framing,
/// a body cut short) surfaces here, as hyper's "user body" error wrapping the inbound
/// body's error: that is the client's fault, not the upstream's.
fn send_error(e: &hyper::Error) -> Error {
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
