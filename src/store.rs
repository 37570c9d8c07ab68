//! The Redis connection shared by the stores that replicas must agree on (single-use `jti`,
//! rate limits), failing fast while Redis is down (SPEC §7 "Stores fail fast").
//!
//! A command that fails for want of a connection (refused, dropped, timed out) marks the
//! store down; from then on every command fails at once, without touching the network,
//! while one background task pings Redis until it answers again. So an outage costs each
//! request a 503 now instead of a reconnect attempt it would wait for, requests do not pile
//! up behind a dead server, and recovery needs no request to notice it. No command waits
//! longer than the configured timeout (the config's `upstream_connect_timeout`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisError, RedisResult};

/// Between probes of a store that is down: from the first to the last, doubling.
const PROBE_FIRST: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    health: Arc<Health>,
}

#[derive(Default)]
struct Health {
    down: AtomicBool,
}

impl Redis {
    /// Connects (at start, a store that cannot be reached is an error) with every
    /// command bounded by `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Redis, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout)
            // Reconnecting is the prober's job; a command never waits for retries.
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Redis {
            conn,
            timeout,
            health: Arc::default(),
        })
    }

    /// Whether the store is known to be down.
    pub fn is_down(&self) -> bool {
        self.health.down.load(Ordering::Acquire)
    }

    /// Runs one command (or script) on the shared connection: at once `Err` while the store
    /// is down, else bounded by the timeout. The error text is for the log.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.is_down() {
            return Err("redis is unreachable (retried in the background)".into());
        }
        match tokio::time::timeout(self.timeout, command(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if unreachable(&e) {
                    self.mark_down();
                }
                Err(e.to_string())
            }
            Err(_) => {
                self.mark_down();
                Err(format!("no answer from redis within {:?}", self.timeout))
            }
        }
    }

    /// Marks the store down and starts the one prober that will mark it up again.
    fn mark_down(&self) {
        if self.health.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("redis is unreachable: failing requests that need it until it answers");
        let probe = self.clone();
        tokio::spawn(async move {
            let mut wait = PROBE_FIRST;
            loop {
                tokio::time::sleep(wait).await;
                let mut conn = probe.conn.clone();
                let ping = redis::cmd("PING");
                let answer = ping.query_async::<String>(&mut conn);
                if let Ok(Ok(_)) = tokio::time::timeout(probe.timeout, answer).await {
                    probe.health.down.store(false, Ordering::Release);
                    tracing::info!("redis answers again");
                    return;
                }
                wait = (wait * 2).min(PROBE_MAX);
            }
        });
    }
}

/// A failure of the connection rather than of the command (a Redis error reply).
fn unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}
