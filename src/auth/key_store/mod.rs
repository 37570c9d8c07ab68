//! API keys kept in Redis (SPEC §3.8), for more keys than a policy file should hold.
//!
//! A key the policy does not know is looked up here: in a per-replica cache first (found
//! and not-found alike, at most `TTL` old, bounded in entries), else in Redis, with one
//! round trip per key however many requests ask for it at once (moka's `try_get_with`
//! coalesces them). Every change is announced on `scopegate:key-events`; the subscriber
//! drops that key's entry, so a revocation reaches every replica within the time a message
//! takes. A subscription that is lost may have missed events, so when it is established
//! again the whole cache is dropped.
//!
//! Fail closed: while Redis is unreachable a cached answer still holds until it expires;
//! anything else is a 503 `key_store_unavailable`, at once while the store is known down
//! (`store::Redis` fails fast and probes in the background), never a 401.

mod metrics;
pub mod record;
pub mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;

use crate::error::Error;
use crate::policy::ApiKey;
use crate::policy::snapshot::Snapshot;
use crate::store::Redis;
pub use metrics::KeyStoreMetrics;
use record::{EVENTS, Record};

/// The longest a cached answer is trusted: also how long a change made without an event
/// (a writer that does not publish) takes to be seen (SPEC §3.8).
pub const TTL: Duration = Duration::from_secs(30);
/// Cached lookups per replica (found and not-found): see README "Key store" for the memory.
pub const CAPACITY: u64 = 1_000_000;
/// How often an idle subscription is pinged, so a connection that died silently is found.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Between attempts to subscribe again: from the first to the last, doubling.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// One cached lookup: the record (or its absence), and the key compiled from it against the
/// policy generation that last used it (a reload recompiles it from the record, not Redis).
struct Cached {
    record: Option<Record>,
    compiled: ArcSwapOption<(u64, Option<Arc<ApiKey>>)>,
}

pub struct KeyStore {
    redis: Redis,
    cache: moka::future::Cache<[u8; 32], Arc<Cached>>,
    /// Bumped by every event and every (re)subscription: a lookup in flight across one may
    /// have read what the event changed, so its answer is not kept.
    epoch: AtomicU64,
    subscribed: AtomicBool,
    metrics: KeyStoreMetrics,
}

impl KeyStore {
    /// Connects to the store and subscribes to its events before returning, so a replica
    /// that serves has heard of every change made since; a store that cannot be reached at
    /// start is an error, as for `replay_store`.
    pub async fn start(
        url: &str,
        timeout: Duration,
        metrics: KeyStoreMetrics,
    ) -> Result<Arc<KeyStore>, String> {
        let redis = Redis::connect(url, timeout).await?;
        let store = Arc::new(KeyStore {
            cache: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .build(),
            redis,
            epoch: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            metrics,
        });
        let first = subscribe(&store.redis).await?;
        store.subscribed.store(true, Ordering::Release);
        tokio::spawn(listen(Arc::downgrade(&store), Some(first)));
        Ok(store)
    }

    /// The key with this SHA-256, as of the policy in `snap`; `None` when the store has none.
    pub async fn lookup(
        &self,
        snap: &Snapshot,
        hash: &[u8; 32],
    ) -> Result<Option<Arc<ApiKey>>, Error> {
        let lookups = &self.metrics.lookups;
        if let Some(cached) = self.cache.get(hash).await {
            lookups.with_label_values(&["hit"]).inc();
            return Ok(self.compiled(&cached, snap));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let fetched = self
            .cache
            .try_get_with(*hash, self.fetch(*hash))
            .await
            .map_err(|e| {
                lookups.with_label_values(&["error"]).inc();
                Error::KeyStoreUnavailable((*e).clone())
            })?;
        if self.epoch.load(Ordering::Acquire) != epoch {
            self.cache.invalidate(hash).await;
        }
        let result = if fetched.record.is_some() {
            "miss"
        } else {
            "not_found"
        };
        lookups.with_label_values(&[result]).inc();
        Ok(self.compiled(&fetched, snap))
    }

    async fn fetch(&self, hash: [u8; 32]) -> Result<Arc<Cached>, String> {
        let key = record::record_key(&hex::encode(hash));
        let fields: HashMap<String, String> =
            self.redis
                .run(|mut conn| async move {
                    redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await
                })
                .await?;
        let record = Record::from_fields(&fields).unwrap_or_else(|e| {
            // Unusable is refused like unknown; the id (if any) tells the operator which.
            let id = fields.get("id").map(String::as_str).unwrap_or("-");
            tracing::warn!(key_id = id, error = %e, "key store: an unusable record is ignored");
            None
        });
        Ok(Arc::new(Cached {
            record,
            compiled: ArcSwapOption::empty(),
        }))
    }

    /// The cached record compiled for the snapshot's generation, compiled once per
    /// generation: a hit costs a load and a clone of reference counts.
    fn compiled(&self, cached: &Cached, snap: &Snapshot) -> Option<Arc<ApiKey>> {
        if let Some(c) = &*cached.compiled.load() {
            if c.0 == snap.generation {
                return c.1.clone();
            }
        }
        let key = cached.record.as_ref().and_then(|r| {
            r.compile(&snap.policy, &self.metrics.unknown_scopes)
                .map_err(|e| {
                    tracing::warn!(key_id = %r.id, error = %e, "key store: an unusable record is ignored");
                })
                .ok()
                .map(Arc::new)
        });
        cached
            .compiled
            .store(Some(Arc::new((snap.generation, key.clone()))));
        key
    }

    /// For `/policy`: whether Redis answers, whether events are heard, and the cache size.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "reachable": !self.redis.is_down(),
            "subscribed": self.subscribed.load(Ordering::Acquire),
            "cache_entries": self.cache.entry_count(),
        })
    }

    async fn forget(&self, hash: Option<[u8; 32]>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match hash {
            Some(h) => self.cache.invalidate(&h).await,
            None => self.cache.invalidate_all(),
        }
    }
}

async fn subscribe(redis: &Redis) -> Result<redis::aio::PubSub, String> {
    let mut pubsub = redis.pubsub().await?;
    tokio::time::timeout(PING_EVERY * 2, pubsub.subscribe(EVENTS))
        .await
        .map_err(|_| "no answer to SUBSCRIBE".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(pubsub)
}

/// The subscriber: applies events while subscribed; when the subscription is lost, tries
/// again with backoff and, once back, drops the whole cache. Ends with the key store.
async fn listen(store: std::sync::Weak<KeyStore>, mut first: Option<redis::aio::PubSub>) {
    let mut wait = RESUBSCRIBE_FIRST;
    loop {
        let pubsub = match first.take() {
            Some(p) => p,
            None => {
                let Some(s) = store.upgrade() else { return };
                let redis = s.redis.clone();
                drop(s);
                match subscribe(&redis).await {
                    Ok(p) => {
                        let Some(s) = store.upgrade() else { return };
                        s.forget(None).await;
                        s.subscribed.store(true, Ordering::Release);
                        tracing::info!("key store: subscribed again; the cache was dropped");
                        wait = RESUBSCRIBE_FIRST;
                        p
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "key store: cannot subscribe yet");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RESUBSCRIBE_MAX);
                        continue;
                    }
                }
            }
        };
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { break };
                    let Some(s) = store.upgrade() else { return };
                    s.metrics.events.inc();
                    let mut hash = [0u8; 32];
                    let payload = msg.get_payload_bytes();
                    match hex::decode_to_slice(payload, &mut hash) {
                        Ok(()) => s.forget(Some(hash)).await,
                        // Not a hash: whatever changed, the cache may be stale.
                        Err(_) => s.forget(None).await,
                    }
                }
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(PING_EVERY, sink.ping::<redis::Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        let Some(s) = store.upgrade() else { return };
        s.subscribed.store(false, Ordering::Release);
        tracing::warn!("key store: the event subscription was lost; subscribing again");
    }
}
