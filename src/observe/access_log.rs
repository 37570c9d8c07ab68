//! One JSON line per request, written by a background thread so the request path only
//! formats a line and hands it over; a full queue drops lines (counted) rather than
//! slowing requests down.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

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
    tx: Option<SyncSender<Vec<u8>>>,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Lines go to stdout; `enabled: false` discards them (benchmarks, `explain`).
    pub fn new(enabled: bool) -> AccessLog {
        if !enabled {
            return AccessLog {
                tx: None,
                dropped: AtomicU64::new(0),
            };
        }
        let (tx, rx) = sync_channel::<Vec<u8>>(65_536);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(line) => {
                            let _ = out.write_all(&line);
                            while let Ok(line) = rx.try_recv() {
                                let _ = out.write_all(&line);
                            }
                            let _ = out.flush();
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            let _ = out.flush();
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                let _ = out.flush();
            })
            .ok();
        AccessLog {
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn write(&self, r: &Record<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut line = match serde_json::to_vec(r) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
