//! Accepting connections: plain or TLS (`tls`), HTTP/1.1 and HTTP/2, each under its
//! timeouts (`idle`), and graceful drain: on shutdown the listener closes, in-flight
//! requests finish up to the drain timeout, idle keep-alive connections are told to go away.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::framing::{self, Scanner};
use super::headers::Peer;
use super::idle::{self, Activity};
use super::tap::Tap;
use crate::config::Limits;
use crate::wire::Body;

pub fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // `idle` times heads and idle connections; hyper's own timer would also close a
        // keep-alive connection `header_read_timeout` after its last answer.
        .header_read_timeout(None)
        .keep_alive(true)
        // Room above max_header_bytes so our own check answers 431 with a problem body;
        // hyper's bare 431 only catches what is far over.
        .max_buf_size((limits.max_header_bytes * 2).max(16 * 1024));
    b.http2()
        .timer(TokioTimer::new())
        // RFC 8441: WebSockets from HTTP/2 clients (extended CONNECT).
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(limits.max_header_bytes * 2).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// The client side of one connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: Peer,
    pub https: bool,
    /// The connection sent a header block with both Content-Length and Transfer-Encoding
    /// (which the HTTP parser resolves silently; see `proxy::framing`).
    pub ambiguous_framing: bool,
    /// The end of the drain, for what outlives its request (a WebSocket tunnel).
    pub drain: Drain,
}

/// The listener's drain as something that outlives a request sees it: holding one keeps
/// the drain waiting (up to `drain_timeout`), and `ended` says when the drain gave up.
#[derive(Debug, Clone)]
pub struct Drain {
    phase: watch::Receiver<Phase>,
    /// Tunnels open on this connection: when the drain is cut, an HTTP/2 connection is
    /// driven on until they have said goodbye (their streams live in it).
    tunnels: Arc<AtomicUsize>,
}

impl Drain {
    /// Resolves when the drain timeout passed (or the listener is gone).
    pub async fn ended(&mut self) {
        let _ = self.phase.wait_for(|p| *p == Phase::Cut).await;
    }

    /// Counts a tunnel on this connection while the guard lives.
    pub fn tunnel(&self) -> TunnelGuard {
        self.tunnels.fetch_add(1, Ordering::SeqCst);
        TunnelGuard(self.tunnels.clone())
    }
}

pub struct TunnelGuard(Arc<AtomicUsize>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves once no tunnel is open on the connection (polled: it is waited for only at
/// the end of a drain, for at most a second).
async fn tunnels_closed(tunnels: &AtomicUsize) {
    while tunnels.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What answers the requests of a listener's connections (the proxy's pipeline).
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        conn: Conn,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// Serves a listener with `handler` until `shutdown` resolves, then drains.
pub async fn serve<H: Handler>(
    handler: H,
    limits: Arc<Limits>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = Arc::new(http_builder(&limits));
    // Each connection holds receivers until it ends; draining sends, then waits for none
    // to be left.
    let (drain, _) = watch::channel(Phase::Serving);
    let drain_timeout = limits.drain_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            handler.clone(),
            limits.clone(),
            builder.clone(),
            tls.clone(),
            stream,
            peer,
            drain.subscribe(),
        ));
    }
    drop(listener);
    let _ = drain.send(Phase::Draining);
    tokio::select! {
        () = drain.closed() => tracing::info!("drained"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("drain timeout reached with requests still in flight: cutting them");
            // Dropping each connection drops its requests' handlers, which log them.
            let _ = drain.send(Phase::Cut);
            let _ = tokio::time::timeout(Duration::from_secs(1), drain.closed()).await;
        }
    }
}

/// Where the listener is in its life, as its connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish what is in flight; take nothing new.
    Draining,
    /// The drain timeout passed: drop what is still in flight.
    Cut,
}

/// One accepted connection, from the TLS handshake (if any) to its end.
async fn connection<H: Handler>(
    handler: H,
    limits: Arc<Limits>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    mut drain: watch::Receiver<Phase>,
) {
    let header_read_timeout = limits.header_read_timeout;
    let activity = Activity::accepted(&limits);
    let ambiguous = framing::Ambiguous::default();
    let flag = ambiguous.clone();
    let https = tls.is_some();
    let client = Peer::new(peer);
    let tracker = activity.clone();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let held = Drain {
        phase: drain.clone(),
        tunnels: tunnels.clone(),
    };
    let service = service_fn(move |req: Request<Incoming>| {
        let busy = tracker.begin();
        let handler = handler.clone();
        let conn = Conn {
            peer: client.clone(),
            https,
            ambiguous_framing: ambiguous.is_set(),
            drain: held.clone(),
        };
        async move {
            let response = handler.handle(conn, req).await;
            drop(busy);
            Ok::<Response<Body>, Infallible>(response)
        }
    });
    // The receivers live until this connection ends, so draining waits for the
    // connection, not only for the signal to reach it.
    let mut cut = drain.clone();
    let drained = async {
        let _ = drain.wait_for(|p| *p != Phase::Serving).await;
    };
    let serve = async {
        match tls {
            None => {
                let io = TokioIo::new(Tap::new(stream, (Scanner::new(flag), activity.arrivals())));
                let conn = builder.serve_connection_with_upgrades(io, service);
                idle::drive(conn, &activity, drained).await
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(header_read_timeout, handshake).await {
                    Ok(Ok(tls_stream)) => {
                        let observers = (Scanner::new(flag), activity.arrivals());
                        let io = TokioIo::new(Tap::new(tls_stream, observers));
                        let conn = builder.serve_connection_with_upgrades(io, service);
                        idle::drive(conn, &activity, drained).await
                    }
                    _ => Ok(()),
                }
            }
        }
    };
    tokio::pin!(serve);
    let result = tokio::select! {
        result = &mut serve => result,
        () = async { let _ = cut.wait_for(|p| *p == Phase::Cut).await; } => {
            let goodbyes = async {
                tokio::select! {
                    _ = &mut serve => {}
                    () = tunnels_closed(&tunnels) => {}
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), goodbyes).await;
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
