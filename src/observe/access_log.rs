//! One JSON line per request. The request path formats its line and appends it to a
//! buffer; a background thread writes the buffer out every 100 ms. Waking a writer per
//! line cost more CPU than the rest of a request (a context switch each time); batching
//! costs one lock per request. A full buffer drops lines (counted) rather than slowing
//! requests down.
//!
//! The line is written field by field: strings that need no JSON escaping (nearly all)
//! are copied as they are, the rest go through serde_json; the time's date and second are
//! formatted once a second per thread. This is a third of what serializing a struct with
//! serde_json cost per request.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

use prometheus::IntCounter;

/// One request, as the access log tells it. Durations are written in milliseconds with
/// microsecond resolution; absent options are left out.
pub struct Record<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The normalized path, never the query string (it may carry anything).
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub code: &'a str,
    pub reason: Option<String>,
    pub principal_kind: &'a str,
    pub principal_id: Option<&'a str>,
    pub upstream_status: Option<u16>,
    pub duration: Duration,
    pub auth: Duration,
    pub upstream: Option<Duration>,
    pub shadow: bool,
    /// `Some("authz")` on the authorization-service listener; the proxy's lines carry none.
    pub listener: Option<&'a str>,
}

/// `,"name":` — a field's separator and key, one literal: one copy per field.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

impl Record<'_> {
    /// Appends the record as one JSON object (no newline) to `out`, stamped `now`.
    pub fn write_json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        rfc3339(now, out);
        out.push(b'"');
        string(out, key!("request_id"), self.request_id);
        string(out, key!("method"), self.method);
        string(out, key!("path"), self.path);
        string(out, key!("route"), self.route);
        number(out, key!("status"), self.status.into());
        string(out, key!("code"), self.code);
        if let Some(r) = &self.reason {
            string(out, key!("reason"), r);
        }
        string(out, key!("principal_kind"), self.principal_kind);
        if let Some(id) = self.principal_id {
            string(out, key!("principal_id"), id);
        }
        if let Some(s) = self.upstream_status {
            number(out, key!("upstream_status"), s.into());
        }
        millis(out, key!("duration_ms"), self.duration);
        millis(out, key!("auth_ms"), self.auth);
        if let Some(d) = self.upstream {
            millis(out, key!("upstream_ms"), d);
        }
        if self.shadow {
            out.extend_from_slice(b",\"shadow\":true");
        }
        if let Some(l) = self.listener {
            string(out, key!("listener"), l);
        }
        out.push(b'}');
    }
}

fn string(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    if plain(value.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// Whether JSON can take `s` between quotes as it is: no control byte, quote or backslash.
/// Eight bytes at a time: `x - 0x01..01 * n & !x & 0x80..80` is nonzero exactly when some
/// byte of `x` is below `n` (for `n <= 0x80`), and a byte equal to `c` is a zero in `x ^ c..c`.
fn plain(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().unwrap_or_default());
        if below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            != 0
        {
            return false;
        }
    }
    (words.remainder().iter()).all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn number(out: &mut Vec<u8>, key: &str, value: u64) {
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `12.345`: milliseconds, three decimals.
fn millis(out: &mut Vec<u8>, key: &str, d: Duration) {
    // In u64 (half a million years): u128 division and formatting cost a few hundred
    // instructions a field.
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    out.extend_from_slice(key.as_bytes());
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(n.format(micros / 1000).as_bytes());
    out.push(b'.');
    let frac = n.format(micros % 1000 + 1000); // "1xyz": the three digits, zero-padded
    out.extend_from_slice(&frac.as_bytes()[1..]);
}

/// `2026-11-22T05:40:12.123456Z`. The part up to the second is kept per thread and made
/// again when the second changes.
fn rfc3339(now: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        prefix.copy_from_slice(&text.as_bytes()[..19]);
        SECOND.set((secs, prefix));
    }
    out.extend_from_slice(&prefix);
    out.push(b'.');
    let mut n = itoa::Buffer::new();
    let frac = n.format(since.subsec_micros() + 1_000_000); // "1uuuuuu", zero-padded
    out.extend_from_slice(&frac.as_bytes()[1..]);
    out.push(b'Z');
}

pub struct AccessLog {
    shared: Option<Arc<Mutex<Vec<u8>>>>,
    /// Bytes the buffer may hold between writes (`MAX_BUFFERED`).
    max_buffered: usize,
    /// `scopegate_access_log_dropped_total`: lines lost to a full buffer.
    dropped: IntCounter,
}

impl AccessLog {
    /// Lines go to stdout; `enabled: false` discards them (benchmarks, tests).
    pub fn new(enabled: bool, dropped: IntCounter) -> AccessLog {
        if !enabled {
            return AccessLog {
                shared: None,
                max_buffered: MAX_BUFFERED,
                dropped,
            };
        }
        let shared = Arc::new(Mutex::new(Vec::with_capacity(64 * 1024)));
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    write_out(&writer, &mut spare);
                }
            })
            .ok();
        AccessLog {
            shared: Some(shared),
            max_buffered: MAX_BUFFERED,
            dropped,
        }
    }

    pub fn write(&self, r: &Record<'_>) {
        let Some(shared) = &self.shared else { return };
        thread_local! {
            /// Each runtime thread formats its lines in one buffer, reused: no allocation
            /// per line, and the lock is held only to copy it.
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            r.write_json(SystemTime::now(), line);
            line.push(b'\n');
            let mut buf = shared.lock().unwrap_or_else(|p| p.into_inner());
            if buf.len() + line.len() > self.max_buffered {
                self.dropped.inc();
                return;
            }
            buf.extend_from_slice(line);
        });
    }

    /// Writes out what is buffered (at shutdown, so the last lines are not lost).
    pub fn flush(&self) {
        if let Some(shared) = &self.shared {
            write_out(shared, &mut Vec::new());
        }
    }
}

/// Swaps the buffer out under the lock, then writes it with the lock released.
fn write_out(shared: &Mutex<Vec<u8>>, spare: &mut Vec<u8>) {
    {
        let mut buf = shared.lock().unwrap_or_else(|p| p.into_inner());
        if buf.is_empty() {
            return;
        }
        std::mem::swap(&mut *buf, spare);
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(spare);
    let _ = out.flush();
    spare.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    fn line(r: &Record<'_>, now: SystemTime) -> serde_json::Value {
        let mut out = Vec::new();
        r.write_json(now, &mut out);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out));
        })
    }

    fn minimal() -> Record<'static> {
        Record {
            request_id: "rid-1",
            method: "GET",
            path: "/v1/bots",
            route: "-",
            status: 404,
            code: "no_route",
            reason: None,
            principal_kind: "none",
            principal_id: None,
            upstream_status: None,
            duration: Duration::from_nanos(1_234_567),
            auth: Duration::ZERO,
            upstream: None,
            shadow: false,
            listener: None,
        }
    }

    /// Nothing writes the buffer out, so it fills: whole lines are kept up to the bound and
    /// every line past it is counted as dropped.
    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        let dropped = IntCounter::new("dropped", "lines dropped").unwrap();
        let log = AccessLog {
            shared: Some(Arc::new(Mutex::new(Vec::new()))),
            max_buffered: 1000,
            dropped: dropped.clone(),
        };
        for _ in 0..20 {
            log.write(&minimal());
        }
        let buf = log.shared.as_ref().unwrap().lock().unwrap();
        let lines: Vec<&[u8]> = buf.split_inclusive(|b| *b == b'\n').collect();
        let kept = 1000 / lines[0].len();
        assert_eq!(lines.len(), kept);
        for l in &lines {
            assert!(l.ends_with(b"\n"));
            serde_json::from_slice::<serde_json::Value>(l).expect("a whole JSON line");
        }
        assert_eq!(dropped.get() as usize, 20 - kept);
    }

    /// The word-at-a-time check against the byte-at-a-time one: every byte value at every
    /// position of a word and of the tail.
    #[test]
    fn plain_agrees_with_the_bytewise_check() {
        let bytewise = |s: &[u8]| s.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        for len in [1, 7, 8, 9, 16, 19] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    assert_eq!(plain(&s), bytewise(&s), "byte {b:#x} at {at} of {len}");
                    s.iter_mut().for_each(|c| *c = 0xc3);
                    s[at] = b;
                    assert_eq!(
                        plain(&s),
                        bytewise(&s),
                        "byte {b:#x} at {at} of {len}, high"
                    );
                }
            }
        }
        assert!(plain(b""));
    }

    #[test]
    fn every_field_with_strings_that_need_escaping() {
        let reason = "bad \"token\"\\\n\u{1}é".to_string();
        let r = Record {
            request_id: "a\"b",
            method: "PATCH",
            path: "/v1/ü/\\x",
            route: "bot-read",
            status: 200,
            code: "ok",
            reason: Some(reason.clone()),
            principal_kind: "jwt",
            principal_id: Some("app\t1"),
            upstream_status: Some(503),
            duration: Duration::from_micros(12_345_678),
            auth: Duration::from_micros(5),
            upstream: Some(Duration::from_millis(12)),
            shadow: true,
            listener: None,
        };
        let v = line(&r, at(1_795_316_281, 42));
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-11-22T02:58:01.000042Z",
                "request_id": "a\"b",
                "method": "PATCH",
                "path": "/v1/ü/\\x",
                "route": "bot-read",
                "status": 200,
                "code": "ok",
                "reason": reason,
                "principal_kind": "jwt",
                "principal_id": "app\t1",
                "upstream_status": 503,
                "duration_ms": 12345.678,
                "auth_ms": 0.005,
                "upstream_ms": 12.0,
                "shadow": true,
            })
        );
    }

    #[test]
    fn an_authorization_service_line_names_its_listener() {
        let r = Record {
            listener: Some("authz"),
            ..minimal()
        };
        assert_eq!(line(&r, at(951_782_400, 0))["listener"], "authz");
    }

    #[test]
    fn absent_options_are_left_out() {
        let v = line(&minimal(), at(951_782_400, 999_999));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth_ms",
                "code",
                "duration_ms",
                "method",
                "path",
                "principal_kind",
                "request_id",
                "route",
                "status",
                "time"
            ]
        );
        assert_eq!(v["time"], "2000-02-29T00:00:00.999999Z");
        assert_eq!(v["duration_ms"], 1.234);
        assert_eq!(v["auth_ms"], 0.0);
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        for (secs, text) in [
            (1_795_316_281, "2026-11-22T02:58:01.000000Z"),
            (1_795_316_282, "2026-11-22T02:58:02.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_795_316_282, "2026-11-22T02:58:02.000000Z"),
        ] {
            assert_eq!(line(&minimal(), at(secs, 0))["time"], text);
        }
    }
}
