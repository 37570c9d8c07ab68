//! The metric families of SPEC §7, registered once in a registry of our own.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: Histogram,
    pub auth_duration: Histogram,
    pub upstream_duration: HistogramVec,
    pub inflight: IntGauge,
    pub reloads: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub generation: IntGauge,
    pub token_cache_hits: IntCounter,
    pub token_cache_misses: IntCounter,
    pub upstream_errors: IntCounterVec,
    /// WebSocket tunnels open now, and opened per route (SPEC §5.1).
    pub websockets_open: IntGauge,
    pub websockets: IntCounterVec,
    pub shadow_denials: IntCounterVec,
    pub authz_decisions: IntCounterVec,
    pub access_log_dropped: IntCounter,
    pub token_exchanges: IntCounterVec,
    pub key_store: crate::auth::key_store::KeyStoreMetrics,
    pub jwks: crate::jwks::JwksMetrics,
}

/// Latency buckets from 50 µs: the proxy's own work is sub-millisecond.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let h = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
                .expect("valid histogram")
        };
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "scopegate_requests_total",
                    "Requests by route, outcome code and status class",
                ),
                &["route", "code", "status_class"],
            )
            .expect("valid metric"),
            request_duration: h(
                "scopegate_request_duration_seconds",
                "Time from request head to response head",
            ),
            auth_duration: h(
                "scopegate_auth_duration_seconds",
                "Time spent extracting, verifying and authorizing credentials",
            ),
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scopegate_upstream_duration_seconds",
                    "Time for the upstream to answer with headers",
                )
                .buckets(BUCKETS.to_vec()),
                &["upstream"],
            )
            .expect("valid metric"),
            inflight: IntGauge::new("scopegate_inflight_requests", "Requests being processed")
                .expect("valid metric"),
            reloads: IntCounterVec::new(
                Opts::new(
                    "scopegate_policy_reloads_total",
                    "Policy reload attempts by result (unchanged: an event that changed no byte the policy depends on)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            tls_reloads: IntCounterVec::new(
                Opts::new(
                    "scopegate_tls_reloads_total",
                    "TLS certificate reload attempts by result (unchanged: an event that changed no byte of the certificate or key)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            generation: IntGauge::new(
                "scopegate_policy_generation",
                "Generation of the policy in force",
            )
            .expect("valid metric"),
            token_cache_hits: IntCounter::new(
                "scopegate_token_cache_hits_total",
                "Verified-token cache hits",
            )
            .expect("valid metric"),
            token_cache_misses: IntCounter::new(
                "scopegate_token_cache_misses_total",
                "Verified-token cache misses",
            )
            .expect("valid metric"),
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "scopegate_upstream_errors_total",
                    "Upstream failures by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
            websockets_open: IntGauge::new(
                "scopegate_websockets_open",
                "WebSocket tunnels open",
            )
            .expect("valid metric"),
            websockets: IntCounterVec::new(
                Opts::new(
                    "scopegate_websockets_total",
                    "WebSocket tunnels opened, by route",
                ),
                &["route"],
            )
            .expect("valid metric"),
            shadow_denials: IntCounterVec::new(
                Opts::new(
                    "scopegate_shadow_denials_total",
                    "Requests a shadow-mode route forwarded that enforcement would refuse",
                ),
                &["route", "code"],
            )
            .expect("valid metric"),
            authz_decisions: IntCounterVec::new(
                Opts::new(
                    "scopegate_authz_decisions_total",
                    "Decisions of the authorization-service listener by route and code",
                ),
                &["route", "code"],
            )
            .expect("valid metric"),
            token_exchanges: IntCounterVec::new(
                Opts::new(
                    "scopegate_token_exchanges_total",
                    "Token-endpoint exchanges by result (issued, or the refusal's code)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            jwks: crate::jwks::JwksMetrics {
                fetches: IntCounterVec::new(
                    Opts::new(
                        "scopegate_jwks_fetches_total",
                        "JWKS fetches by app and result (success, or the kind of failure)",
                    ),
                    &["app", "result"],
                )
                .expect("valid metric"),
                keys: IntGaugeVec::new(
                    Opts::new("scopegate_jwks_keys", "JWKS keys in force by app"),
                    &["app"],
                )
                .expect("valid metric"),
                age: GaugeVec::new(
                    Opts::new(
                        "scopegate_jwks_age_seconds",
                        "Age of the JWKS keys in force by app",
                    ),
                    &["app"],
                )
                .expect("valid metric"),
            },
            access_log_dropped: IntCounter::new("scopegate_access_log_dropped_total", "Access-log lines dropped because the write buffer was full").expect("valid metric"),
            key_store: crate::auth::key_store::KeyStoreMetrics::new(),
            registry,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.request_duration.clone()),
            Box::new(m.auth_duration.clone()),
            Box::new(m.upstream_duration.clone()),
            Box::new(m.inflight.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.tls_reloads.clone()),
            Box::new(m.generation.clone()),
            Box::new(m.token_cache_hits.clone()),
            Box::new(m.token_cache_misses.clone()),
            Box::new(m.upstream_errors.clone()),
            Box::new(m.websockets_open.clone()),
            Box::new(m.websockets.clone()),
            Box::new(m.shadow_denials.clone()),
            Box::new(m.authz_decisions.clone()),
            Box::new(m.access_log_dropped.clone()),
            Box::new(m.token_exchanges.clone()),
            Box::new(m.key_store.lookups.clone()),
            Box::new(m.key_store.events.clone()),
            Box::new(m.key_store.unknown_scopes.clone()),
            Box::new(m.jwks.fetches.clone()),
            Box::new(m.jwks.keys.clone()),
            Box::new(m.jwks.age.clone()),
        ] {
            m.registry.register(c).expect("metric registered once");
        }
        // Known label values exist from the start, so rate() has a zero to start from.
        for r in ["success", "failure", "unchanged"] {
            m.reloads.with_label_values(&[r]);
        }
        for kind in ["connect", "timeout", "protocol", "tls"] {
            m.upstream_errors.with_label_values(&[kind]);
        }
        m
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
