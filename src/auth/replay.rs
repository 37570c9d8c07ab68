//! Single-use `jti` (SPEC §3.2): each jti is accepted once per app for as long as its token
//! is: until `exp` plus the app's leeway. In memory per replica by default, bounded by those
//! lifetimes, which `max_lifetime` caps (an entry can only come from a token the app signed),
//! so by `max_lifetime` × the accepted rate; in Redis (`SET NX PX`) when replicas must agree.
//! Policy validation makes `single_use_jti` require `exp`.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::store::Redis;
use moka::Expiry;

/// Above the longest `max_lifetime` plus twice the longest leeway the policy allows.
const MAX_REMEMBERED: Duration = Duration::from_secs(400 * 24 * 3600);

struct UntilDeadline;

impl<K> Expiry<K, Instant> for UntilDeadline {
    fn expire_after_create(&self, _: &K, deadline: &Instant, now: Instant) -> Option<Duration> {
        Some(deadline.saturating_duration_since(now))
    }
}

pub enum ReplayStore {
    Memory(moka::sync::Cache<(String, String), Instant>),
    Redis(Redis),
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

    pub fn redis(store: Redis) -> ReplayStore {
        ReplayStore::Redis(store)
    }

    /// The jtis remembered in memory (0 for Redis), once expired ones are dropped.
    pub fn remembered(&self) -> u64 {
        match self {
            ReplayStore::Memory(cache) => {
                cache.run_pending_tasks();
                cache.entry_count()
            }
            ReplayStore::Redis(_) => 0,
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
        // `max_lifetime` bounds it (`jwt::check_time`); what overflows is refused all the same.
        let remaining = Duration::try_from_secs_f64((accepted_until - now).max(0.0) + 1.0)
            .ok()
            .filter(|d| *d <= MAX_REMEMBERED)
            .ok_or(Error::InvalidToken("exp beyond max_lifetime"))?;
        match self {
            ReplayStore::Memory(cache) => {
                let entry = cache
                    .entry((app.to_string(), jti.to_string()))
                    .or_insert(Instant::now() + remaining);
                Ok(entry.is_fresh())
            }
            ReplayStore::Redis(store) => {
                let key = format!("scopegate:jti:{}:{}", app.len(), [app, jti].concat());
                let px = u64::try_from(remaining.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let set: Option<String> = store
                    .run(|mut conn| async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(1)
                            .arg("NX")
                            .arg("PX")
                            .arg(px)
                            .query_async(&mut conn)
                            .await
                    })
                    .await
                    .map_err(Error::ReplayStoreUnavailable)?;
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
        assert!(s.first_use("a", "j1", 1e9 + 60.0, 1e9).await.unwrap());
        assert!(!s.first_use("a", "j1", 1e9 + 60.0, 1e9).await.unwrap());
        assert!(s.first_use("b", "j1", 1e9 + 60.0, 1e9).await.unwrap());
    }

    #[tokio::test]
    async fn a_lifetime_no_store_can_hold_is_refused_not_passed_on() {
        let s = ReplayStore::memory();
        for until in [1e300, f64::INFINITY, 1e9 + 500.0 * 86400.0] {
            assert!(
                matches!(
                    s.first_use("a", "j", until, 1e9).await,
                    Err(Error::InvalidToken(_))
                ),
                "{until}"
            );
        }
        assert_eq!(s.remembered(), 0);
    }

    #[tokio::test]
    async fn memory_is_bounded_by_the_tokens_lifetimes() {
        let s = ReplayStore::memory();
        let now = crate::decide::unix_now();
        for i in 0..20_000 {
            assert!(s.first_use("a", &format!("j{i}"), now, now).await.unwrap());
        }
        assert_eq!(s.remembered(), 20_000);
        // Accepted until now: remembered for the one second past it, then dropped.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(s.remembered(), 0);
    }
}
