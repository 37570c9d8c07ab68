//! One JSON line per request. The request path formats its line and appends it to a
//! buffer; a background thread writes the buffer out every 100 ms. Waking a writer per
//! line cost more CPU than the rest of a request (a context switch each time); batching
//! costs one lock per request. A full buffer drops lines (counted) rather than slowing
//! requests down.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

use prometheus::IntCounter;
use serde::Serialize;

#[derive(Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub method: &'a str,
    /// The normalized path, never the query string (it may carry anything).
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub principal_kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub duration_ms: f64,
    pub auth_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

pub struct AccessLog {
    shared: Option<Arc<Mutex<Vec<u8>>>>,
    /// `scopegate_access_log_dropped_total`: lines lost to a full buffer.
    dropped: IntCounter,
}

impl AccessLog {
    /// Lines go to stdout; `enabled: false` discards them (benchmarks, tests).
    pub fn new(enabled: bool, dropped: IntCounter) -> AccessLog {
        if !enabled {
            return AccessLog {
                shared: None,
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
            if serde_json::to_writer(&mut *line, r).is_err() {
                return;
            }
            line.push(b'\n');
            let mut buf = shared.lock().unwrap_or_else(|p| p.into_inner());
            if buf.len() + line.len() > MAX_BUFFERED {
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
