//! Connection timeouts hyper does not give: how long a connection may sit idle between
//! requests (`idle_timeout`), apart from how long a request head may take to arrive
//! (`header_read_timeout`).
//!
//! hyper has one HTTP/1 timer, started whenever it waits for a head, so a keep-alive
//! connection would close `header_read_timeout` after its last answer, well before a load
//! balancer in front expects; and hyper-util's HTTP/1-or-2 detection waits for the first
//! byte with no timer at all, so a connection that never sends one would be kept forever.
//! Here, as HAProxy (`timeout http-request`, `timeout http-keep-alive`) and Envoy
//! (`request_headers_timeout`, `idle_timeout`) do:
//! - the first request's head must be complete within `header_read_timeout` of accept;
//! - after an answer, the connection may sit idle for `idle_timeout`; once the first byte of
//!   the next head arrives, that head must be complete within `header_read_timeout`;
//! - HTTP/2 (the client preface seen) has no head to time: a connection without a request in
//!   progress is closed after `idle_timeout`, counted from accept or from the last answer.
//!
//! Closing is hyper's graceful shutdown: an idle HTTP/1 connection closes at once, a
//! response in progress finishes first, HTTP/2 gets a GOAWAY. A request is never cut.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;

use super::tap::ReadObserver;
use crate::config::Limits;

/// What one connection is doing, shared by its reader, its service and its watchdog.
pub struct Activity {
    accepted: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Requests being served: head read, response head not yet returned.
    open: AtomicU32,
    /// Requests begun so far.
    begun: AtomicU64,
    /// When the last response head was returned (nanoseconds since `accepted`).
    idle_since: AtomicU64,
    /// When the first byte after that arrived (nanoseconds since `accepted`, at least 1);
    /// 0: none yet.
    head_since: AtomicU64,
    /// The client opened with the HTTP/2 preface.
    h2: AtomicBool,
}

impl Activity {
    /// A connection accepted now, under the config's timeouts.
    pub fn accepted(limits: &Limits) -> Arc<Activity> {
        Arc::new(Activity {
            accepted: Instant::now(),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            open: AtomicU32::new(0),
            begun: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A request head was read: the connection is busy until the returned guard drops
    /// (its response head is returned, or the request is abandoned).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Bytes arrived: with no request in progress, they start the next head.
    fn arrived(&self) {
        if self.open.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now().max(1), Ordering::Relaxed);
        }
    }

    /// When the watchdog should look again (nanoseconds since accept), or `None` if the
    /// connection has overstayed.
    fn next_look(&self, now: u64) -> Option<u64> {
        let header = nanos(self.header_read_timeout);
        let idle = nanos(self.idle_timeout);
        if self.open.load(Ordering::Acquire) > 0 {
            // Busy: the upstream timeout bounds the request; look again later.
            return Some(now.saturating_add(header.min(idle)));
        }
        let h2 = self.h2.load(Ordering::Relaxed);
        let first = self.begun.load(Ordering::Relaxed) == 0;
        let head = self.head_since.load(Ordering::Relaxed);
        let deadline = if h2 {
            let since = if first {
                0
            } else {
                self.idle_since.load(Ordering::Relaxed)
            };
            since.saturating_add(idle)
        } else if first {
            header
        } else if head != 0 {
            head.saturating_add(header)
        } else {
            // Idle: look every `header` for a head that has started arriving.
            let d = self.idle_since.load(Ordering::Relaxed).saturating_add(idle);
            if now < d {
                return Some(d.min(now.saturating_add(header)));
            }
            d
        };
        (now < deadline).then_some(deadline)
    }

    /// Resolves once the connection has overstayed its timeouts.
    pub async fn overstayed(&self) {
        let mut look = 0;
        loop {
            // Having slept until `look`, it is at least `look` now, whatever the clock says.
            let now = self.now().max(look);
            match self.next_look(now) {
                None => return,
                Some(at) => {
                    look = at;
                    let at = self.accepted + Duration::from_nanos(at);
                    tokio::time::sleep_until(at.into()).await;
                }
            }
        }
    }

    /// Watches the connection's plaintext for arriving bytes (see `tap`).
    pub fn arrivals(self: &Arc<Self>) -> Arrivals {
        Arrivals {
            activity: self.clone(),
            first_read: true,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A request in progress (see [`Activity::begin`]).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now(), Ordering::Relaxed);
        a.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `conn` to its end, starting its graceful shutdown when `drain` resolves or the
/// connection overstays (`activity`).
pub async fn drive<C: GracefulConnection>(
    conn: C,
    activity: &Activity,
    drain: impl Future<Output = ()>,
) -> Result<(), C::Error> {
    tokio::pin!(conn);
    tokio::select! {
        biased;
        done = conn.as_mut() => return done,
        () = drain => {}
        () = activity.overstayed() => tracing::debug!("closing a connection past its idle or header timeout"),
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// Reports a connection's arriving bytes to its [`Activity`].
pub struct Arrivals {
    activity: Arc<Activity>,
    first_read: bool,
}

impl ReadObserver for Arrivals {
    fn observe(&mut self, read: &[u8]) {
        if self.first_read {
            self.first_read = false;
            // An HTTP/2 client sends its preface, "PRI * HTTP/2.0...", in one piece.
            if read.starts_with(b"PRI ") {
                self.activity.h2.store(true, Ordering::Relaxed);
            }
        }
        self.activity.arrived();
    }
}
