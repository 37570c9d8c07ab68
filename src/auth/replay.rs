//! Single-use `jti` (SPEC §3.2): each jti is accepted once per app for as long as its token
//! is: until `exp` plus the app's leeway. In memory per replica by default, bounded only by
//! those lifetimes (an entry can only come from a token the app signed); in Redis (`SET NX
//! PX`) when replicas must agree. Policy validation makes `single_use_jti` require `exp`.

use std::time::{Duration, Instant};

use moka::Expiry;
use redis::aio::ConnectionManager;

use crate::error::Error;

struct UntilDeadline;

impl<K> Expiry<K, Instant> for UntilDeadline {
    fn expire_after_create(&self, _: &K, deadline: &Instant, now: Instant) -> Option<Duration> {
        Some(deadline.saturating_duration_since(now))
    }
}

pub enum ReplayStore {
    Memory(moka::sync::Cache<(String, String), Instant>),
    Redis(ConnectionManager),
}

impl ReplayStore {
    pub fn memory() -> ReplayStore {
        ReplayStore::Memory(
            // No capacity bound: an evicted jti could be replayed.
            moka::sync::Cache::builder()
                .expire_after(UntilDeadline)
                .build(),
        )
    }

    pub async fn redis(url: &str) -> Result<ReplayStore, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(1))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ReplayStore::Redis(conn))
    }

    pub fn redis_connection(&self) -> Option<ConnectionManager> {
        match self {
            ReplayStore::Redis(c) => Some(c.clone()),
            ReplayStore::Memory(_) => None,
        }
    }

    /// Records the jti of a token accepted until `accepted_until` (unix seconds: its `exp`
    /// plus leeway); `Ok(false)` when it was seen before (a replay).
    pub async fn first_use(
        &self,
        app: &str,
        jti: &str,
        accepted_until: f64,
        now: f64,
    ) -> Result<bool, Error> {
        // A second past the token's last valid moment, so no clock rounding reopens it.
        let remaining = Duration::from_secs_f64((accepted_until - now).max(0.0) + 1.0);
        match self {
            ReplayStore::Memory(cache) => {
                let entry = cache
                    .entry((app.to_string(), jti.to_string()))
                    .or_insert(Instant::now() + remaining);
                Ok(entry.is_fresh())
            }
            ReplayStore::Redis(conn) => {
                let mut conn = conn.clone();
                let key = format!("scopegate:jti:{}:{}", app.len(), [app, jti].concat());
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(remaining.as_millis().max(1) as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Error::ReplayStoreUnavailable(e.to_string()))?;
                Ok(set.is_some())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_accepts_once_per_app() {
        let s = ReplayStore::memory();
        assert!(s.first_use("a", "j1", 2e9, 1e9).await.unwrap());
        assert!(!s.first_use("a", "j1", 2e9, 1e9).await.unwrap());
        assert!(s.first_use("b", "j1", 2e9, 1e9).await.unwrap());
    }
}
