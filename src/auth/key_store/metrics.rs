//! The key store's Prometheus counters (SPEC §3.8); the proxy's registry holds them.

use prometheus::{IntCounter, IntCounterVec, Opts};

/// The key store's counters (SPEC §3.8), handed to it whole.
#[derive(Clone)]
pub struct KeyStoreMetrics {
    /// `result`: hit (answered from the cache), miss (fetched, found), not_found (fetched,
    /// absent), error (Redis failed: the request got 503).
    pub lookups: IntCounterVec,
    pub events: IntCounter,
    pub unknown_scopes: IntCounter,
}

impl KeyStoreMetrics {
    pub fn new() -> KeyStoreMetrics {
        let lookups = IntCounterVec::new(
            Opts::new(
                "scopegate_key_store_lookups_total",
                "Key-store lookups by result (hit: from the cache; miss: fetched and found; not_found; error: Redis failed)",
            ),
            &["result"],
        )
        .expect("valid metric");
        for r in ["hit", "miss", "not_found", "error"] {
            lookups.with_label_values(&[r]);
        }
        KeyStoreMetrics {
            lookups,
            events: IntCounter::new(
                "scopegate_key_store_events_total",
                "Key-change events received on scopegate:key-events",
            )
            .expect("valid metric"),
            unknown_scopes: IntCounter::new(
                "scopegate_key_store_unknown_scopes_total",
                "Scopes and resource kinds in key-store records that the policy does not declare (they grant nothing)",
            )
            .expect("valid metric"),
        }
    }
}

impl Default for KeyStoreMetrics {
    fn default() -> Self {
        KeyStoreMetrics::new()
    }
}
