//! Token-bucket rate limits per app or key (SPEC §3.6): per replica in memory, or shared
//! through Redis (one Lua script, clocked by the Redis server so replicas' clocks don't matter).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::policy::RateLimit;
use crate::store::Redis;

/// The outcome, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one request would be allowed (for `Retry-After`).
    pub retry_after_secs: u64,
}

impl Decision {
    fn from_tokens(rl: RateLimit, allowed: bool, tokens: f64) -> Decision {
        let missing = (f64::from(rl.burst) - tokens).max(0.0);
        Decision {
            allowed,
            limit: rl.burst,
            remaining: tokens.max(0.0).floor() as u32,
            reset_secs: (missing / rl.per_second).ceil() as u64,
            retry_after_secs: ((1.0 - tokens).max(0.0) / rl.per_second).ceil().max(1.0) as u64,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Limiter(Store);

enum Store {
    Memory(moka::sync::Cache<String, Arc<Mutex<Bucket>>>),
    Redis(Redis),
}

const SCRIPT: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
";

impl Limiter {
    pub fn memory() -> Limiter {
        Limiter(Store::Memory(
            moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(600))
                .build(),
        ))
    }

    pub fn redis(store: Redis) -> Limiter {
        Limiter(Store::Redis(store))
    }

    /// Takes one token from `principal`'s bucket.
    pub async fn check(&self, principal: &str, rl: RateLimit) -> Result<Decision, Error> {
        match &self.0 {
            Store::Memory(cache) => {
                let bucket = cache.get_with_by_ref(principal, || {
                    Arc::new(Mutex::new(Bucket {
                        tokens: f64::from(rl.burst),
                        at: Instant::now(),
                    }))
                });
                let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(b.at).as_secs_f64() * rl.per_second;
                b.tokens = (b.tokens + refill).min(f64::from(rl.burst));
                b.at = now;
                let allowed = b.tokens >= 1.0;
                if allowed {
                    b.tokens -= 1.0;
                }
                Ok(Decision::from_tokens(rl, allowed, b.tokens))
            }
            // Boxed: the Redis exchange's state stays out of every request's future.
            Store::Redis(store) => {
                Box::pin(async move {
                    let key = format!("scopegate:rl:{principal}");
                    let (allowed, tokens): (i64, String) = store
                        .run(|mut conn| async move {
                            redis::Script::new(SCRIPT)
                                .key(key)
                                .arg(rl.per_second)
                                .arg(rl.burst)
                                .invoke_async(&mut conn)
                                .await
                        })
                        .await
                        .map_err(Error::ReplayStoreUnavailable)?;
                    Ok(Decision::from_tokens(
                        rl,
                        allowed == 1,
                        tokens.parse().unwrap_or(0.0),
                    ))
                })
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_refuse() {
        let l = Limiter::memory();
        let rl = RateLimit {
            per_second: 0.001,
            burst: 3,
        };
        for left in [2, 1, 0] {
            let d = l.check("app:a", rl).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = l.check("app:a", rl).await.unwrap();
        assert!(!d.allowed);
        assert!(d.retry_after_secs >= 1);
        assert!(
            l.check("app:b", rl).await.unwrap().allowed,
            "buckets are per principal"
        );
    }
}
