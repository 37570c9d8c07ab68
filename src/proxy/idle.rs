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
//! - HTTP/2 (the client preface seen): a frame other than DATA, and a header block
//!   (HEADERS through its last CONTINUATION), must be complete within
//!   `header_read_timeout` of its first byte; a connection without a request in progress is
//!   closed after `idle_timeout`, counted from accept or from the last answer.
//!
//! An idle connection is closed through hyper's graceful shutdown: an idle HTTP/1
//! connection closes at once, a response in progress finishes first, HTTP/2 gets a GOAWAY;
//! a request is never cut. A head that is late is not waited for: hyper's graceful
//! shutdown would let it finish at whatever pace the client sends it (slowloris), so that
//! connection is dropped.

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
    /// When the head now arriving began (nanoseconds since `accepted`, at least 1); 0: none.
    /// HTTP/1: the first byte after the last answer. HTTP/2: the first byte of a frame
    /// other than DATA, or of a header block, not yet complete (see `H2Frames`).
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
        if !self.h2.load(Ordering::Relaxed) {
            self.head_since.store(0, Ordering::Relaxed);
        }
        Busy(self.clone())
    }

    /// Bytes arrived: with no request in progress, they start the next head.
    fn arrived(&self) {
        if self.open.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now().max(1), Ordering::Relaxed);
        }
    }

    /// The head deadline (a head that began must be complete by then) and the idle one
    /// (nanoseconds since accept), as far as they apply now.
    fn deadlines(&self) -> (Option<u64>, Option<u64>) {
        let header = nanos(self.header_read_timeout);
        let idle = nanos(self.idle_timeout);
        let busy = self.open.load(Ordering::Acquire) > 0;
        let first = self.begun.load(Ordering::Relaxed) == 0;
        let head = self.head_since.load(Ordering::Relaxed);
        let head = (head != 0).then(|| head.saturating_add(header));
        if self.h2.load(Ordering::Relaxed) {
            let since = if first {
                0
            } else {
                self.idle_since.load(Ordering::Relaxed)
            };
            (head, (!busy).then(|| since.saturating_add(idle)))
        } else if busy {
            // The upstream timeout bounds the request.
            (None, None)
        } else if first {
            (Some(header), None)
        } else {
            let since = self.idle_since.load(Ordering::Relaxed);
            (head, head.is_none().then(|| since.saturating_add(idle)))
        }
    }

    /// When the watchdog should look again (nanoseconds since accept), or how the
    /// connection has overstayed. `heads_only`: idle time no longer counts (the connection
    /// is already closing).
    fn next_look(&self, now: u64, heads_only: bool) -> Result<u64, Overstay> {
        let (head, idle) = self.deadlines();
        let idle = idle.filter(|_| !heads_only);
        if head.is_some_and(|d| now >= d) {
            return Err(Overstay::LateHead);
        }
        if idle.is_some_and(|d| now >= d) {
            return Err(Overstay::Idle);
        }
        // A head may start arriving at any time: look at least this often for one.
        let poll = nanos(self.header_read_timeout.min(self.idle_timeout));
        Ok([head, idle]
            .into_iter()
            .flatten()
            .fold(now.saturating_add(poll), u64::min))
    }

    /// Resolves once the connection has overstayed its timeouts.
    async fn overstayed(&self, heads_only: bool) -> Overstay {
        let mut look = 0;
        loop {
            // Having slept until `look`, it is at least `look` now, whatever the clock says.
            let now = self.now().max(look);
            match self.next_look(now, heads_only) {
                Err(how) => return how,
                Ok(at) => {
                    look = at;
                    let at = self.accepted + Duration::from_nanos(at);
                    tokio::time::sleep_until(at.into()).await;
                }
            }
        }
    }

    /// Resolves at the first look, one `period` apart, that finds no request in progress.
    async fn idle_at_a_look(&self, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }

    /// Watches the connection's plaintext for arriving bytes (see `tap`).
    pub fn arrivals(self: &Arc<Self>) -> Arrivals {
        Arrivals {
            activity: self.clone(),
            first_read: true,
            h2: None,
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

/// How a connection overstayed its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overstay {
    /// No request in progress for `idle_timeout`: closed gracefully.
    Idle,
    /// A head (or an HTTP/2 frame) that began did not complete in `header_read_timeout`:
    /// dropped.
    LateHead,
}

/// Serves `conn` to its end, starting its graceful shutdown when `drain` resolves or the
/// connection sits idle too long, and dropping it when a head arrives too slowly, before
/// or during that shutdown (`activity`).
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
        how = activity.overstayed(false) => {
            tracing::debug!(?how, "closing a connection past its idle or header timeout");
            if how == Overstay::LateHead {
                return Ok(());
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        biased;
        done = conn.as_mut() => done,
        _ = activity.overstayed(true) => {
            tracing::debug!("dropping a closing connection whose head arrives too slowly");
            Ok(())
        }
        () = activity.idle_at_a_look(activity.header_read_timeout) => {
            // HTTP/2's graceful close waits for the client to acknowledge a PING after the
            // GOAWAY; a client that never does would hold the connection.
            tracing::debug!("dropping a closing connection that does not close");
            Ok(())
        }
    }
}

/// Reports a connection's arriving bytes to its [`Activity`].
pub struct Arrivals {
    activity: Arc<Activity>,
    first_read: bool,
    /// Set once the client has opened with the HTTP/2 preface.
    h2: Option<H2Frames>,
}

impl ReadObserver for Arrivals {
    fn observe(&mut self, read: &[u8]) {
        if self.first_read {
            self.first_read = false;
            // An HTTP/2 client sends its preface, "PRI * HTTP/2.0...", in one piece.
            if read.starts_with(b"PRI ") {
                self.activity.h2.store(true, Ordering::Relaxed);
                self.h2 = Some(H2Frames::default());
            }
        }
        match &mut self.h2 {
            None => self.activity.arrived(),
            Some(frames) => {
                let head = &self.activity.head_since;
                match (frames.feed(read), head.load(Ordering::Relaxed)) {
                    (true, 0) => head.store(self.activity.now().max(1), Ordering::Relaxed),
                    (false, _) => head.store(0, Ordering::Relaxed),
                    (true, _) => {}
                }
            }
        }
    }
}

const H2_PREFACE_LEN: usize = 24;
const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_PUSH_PROMISE: u8 = 0x5;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_HEADERS: u8 = 0x4;

/// Follows HTTP/2 frame boundaries in the bytes a client sends (RFC 9113 §4.1), only far
/// enough to tell whether a head is partly arrived: a frame other than DATA begun and not
/// complete, or a header block not yet ended. hyper validates the frames themselves.
#[derive(Default)]
struct H2Frames {
    /// Bytes of the 24-byte client preface seen so far.
    preface_seen: usize,
    /// The current frame's 9-byte header, as far as it has arrived.
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// The current frame is DATA (a body: not timed as a head).
    data: bool,
    /// A HEADERS or PUSH_PROMISE without END_HEADERS was seen; CONTINUATION frames follow.
    block_open: bool,
}

impl H2Frames {
    /// Takes the next bytes; returns whether a head is now partly arrived.
    fn feed(&mut self, mut read: &[u8]) -> bool {
        let preface = (H2_PREFACE_LEN - self.preface_seen).min(read.len());
        self.preface_seen += preface;
        read = &read[preface..];
        while !read.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(read.len());
                self.payload_left -= n;
                read = &read[n..];
                continue;
            }
            let n = (9 - self.header_len).min(read.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&read[..n]);
            self.header_len += n;
            read = &read[n..];
            if self.header_len == 9 {
                self.header_len = 0;
                let h = self.header;
                self.payload_left =
                    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                self.data = h[3] == H2_DATA;
                if matches!(h[3], H2_HEADERS | H2_PUSH_PROMISE | H2_CONTINUATION) {
                    self.block_open = h[4] & H2_END_HEADERS == 0;
                }
            }
        }
        self.preface_seen < H2_PREFACE_LEN
            || self.header_len > 0
            || (self.payload_left > 0 && !self.data)
            || self.block_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, kind: u8, flags: u8) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags, 0, 0, 0, 1]);
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    /// Feeds `bytes` one at a time; returns what `feed` said after each.
    fn partial_after_each_byte(bytes: &[u8]) -> Vec<bool> {
        let mut f = H2Frames {
            preface_seen: H2_PREFACE_LEN,
            ..H2Frames::default()
        };
        bytes.iter().map(|b| f.feed(&[*b])).collect()
    }

    #[test]
    fn a_frame_is_partly_arrived_until_its_last_byte() {
        let ping = frame(8, 0x6, 0);
        let seen = partial_after_each_byte(&ping);
        assert!(seen[..ping.len() - 1].iter().all(|p| *p));
        assert!(!seen[ping.len() - 1]);
    }

    #[test]
    fn a_data_payload_is_a_body_not_a_head() {
        let data = frame(100, H2_DATA, 0);
        let seen = partial_after_each_byte(&data);
        assert!(seen[..8].iter().all(|p| *p), "the frame header is timed");
        assert!(seen[9..].iter().all(|p| !*p), "its payload is not");
    }

    #[test]
    fn a_header_block_is_open_until_end_headers() {
        let mut bytes = frame(3, H2_HEADERS, 0);
        let headers_end = bytes.len();
        bytes.extend(frame(2, H2_CONTINUATION, 0));
        let first_continuation_end = bytes.len();
        bytes.extend(frame(2, H2_CONTINUATION, H2_END_HEADERS));
        let seen = partial_after_each_byte(&bytes);
        assert!(seen[headers_end - 1], "HEADERS without END_HEADERS");
        assert!(seen[first_continuation_end - 1]);
        assert!(!seen[bytes.len() - 1], "ended");
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(6, 0x4, 0));
        bytes.extend(frame(30, H2_HEADERS, H2_END_HEADERS));
        bytes.extend(frame(1000, H2_DATA, 0));
        for cut in 0..bytes.len() {
            let mut f = H2Frames::default();
            f.feed(&bytes[..cut]);
            assert!(!f.feed(&bytes[cut..]), "cut at {cut}");
        }
    }
}
