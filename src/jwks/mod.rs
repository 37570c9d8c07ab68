//! Keys from identity providers (SPEC §3.2.1): an app's `jwks_url`, fetched, cached and
//! refreshed here, and read by `jwt::check_signature` without waiting.
//!
//! A `Source` is one JWKS (one URL and trust anchor), shared by every app that names it and
//! by successive policies: the `Registry` hands a reload the source the previous policy
//! used, so a reload neither refetches nor loses keys. Each source has a background task
//! that refreshes it per `Cache-Control: max-age` and retries failures with a backoff; it
//! ends when no policy uses the source any more.
//!
//! The request path only ever loads the keys in force (one atomic load). Only a token whose
//! `kid` the set does not know, or a source with no keys at all, waits: for one refetch,
//! shared by every request that wants it, and at most once per cooldown. A failed fetch
//! keeps the last good keys; with none, the app's tokens get 503 `keys_unavailable`.
//!
//! `scopegate check`, `explain` and `test` compile policies without a registry: their
//! sources have no background task and fetch only when a token needs their keys, through
//! the same `refetch` as the proxy's. So `explain` and `test` see the keys (or the failed
//! fetch, as `keys_unavailable`) the proxy would, and `check`, which decides no request,
//! never fetches.

pub mod fetch;
pub mod set;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec};

pub use self::fetch::Endpoint;
pub use self::set::KeySet;

/// The numbers of SPEC §3.2.1.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A refetch for an unknown `kid` waits this long after any fetch.
    pub cooldown: Duration,
    /// How long a response without `max-age` is used.
    pub default_ttl: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// How long past their expiry the last good keys are kept while fetches fail.
    pub stale_for: Duration,
    pub timeout: Duration,
    /// The background retry after a failure starts here and doubles up to `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    pub max_body: usize,
}

pub const TIMING: Timing = Timing {
    cooldown: Duration::from_secs(30),
    default_ttl: Duration::from_secs(600),
    min_ttl: Duration::from_secs(60),
    max_ttl: Duration::from_secs(24 * 3600),
    stale_for: Duration::from_secs(24 * 3600),
    timeout: Duration::from_secs(5),
    retry_first: Duration::from_secs(1),
    retry_max: Duration::from_secs(60),
    max_body: 1024 * 1024,
};

/// `scopegate_jwks_*` (SPEC §3.2.1), labelled by app.
#[derive(Clone)]
pub struct JwksMetrics {
    pub fetches: IntCounterVec,
    pub keys: IntGaugeVec,
    pub age: GaugeVec,
}

/// A good fetch: its keys and when they expire.
pub struct Keys {
    pub set: KeySet,
    fetched_at: SystemTime,
    fetched: Instant,
    expires: Instant,
}

/// The last fetch attempt, for `/policy`, the access log and the cooldown.
#[derive(Default)]
struct Status {
    started: Option<Instant>,
    finished_at: Option<SystemTime>,
    /// `None` for a success, else why it failed.
    error: Option<String>,
}

/// One JWKS, its keys in force and its fetch state.
/// Why a JWKS app's token found no key to check it (`Source::miss`).
#[derive(Debug)]
pub enum Miss {
    /// The keys are there; none fits the token's `kid` and `alg`.
    NoKey,
    /// No keys at all: the last fetch failed (what it said), or none was made yet.
    Unavailable(String),
}

pub struct Source {
    endpoint: Endpoint,
    timing: Timing,
    keys: ArcSwapOption<Keys>,
    status: Mutex<Status>,
    /// Held for the length of a fetch: the single flight every waiting request shares.
    flight: tokio::sync::Mutex<()>,
    /// Fetch attempts finished, to tell a waiter whether a fetch happened while it waited.
    fetches: AtomicU64,
    /// The apps that name this source (metrics labels).
    apps: Mutex<Vec<String>>,
    metrics: Option<JwksMetrics>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwksSource({:?})", self.endpoint)
    }
}

impl Source {
    fn new(endpoint: Endpoint, timing: Timing, metrics: Option<JwksMetrics>) -> Source {
        Source {
            endpoint,
            timing,
            keys: ArcSwapOption::empty(),
            status: Mutex::new(Status::default()),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            apps: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// A source of the offline commands (`check`, `explain`, `test`): no background refresh
    /// and no metrics; it fetches when a token first needs its keys (`refetch`).
    pub fn on_demand(endpoint: Endpoint) -> Arc<Source> {
        Arc::new(Source::new(endpoint, TIMING, None))
    }

    pub fn url(&self) -> &str {
        &self.endpoint.url
    }

    /// The keys in force, if any: the last good set, until `stale_for` past its expiry.
    pub fn keys(&self) -> Option<Arc<Keys>> {
        self.keys
            .load_full()
            .filter(|k| k.expires + self.timing.stale_for > Instant::now())
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cooling(&self) -> bool {
        self.status()
            .started
            .is_some_and(|t| t.elapsed() < self.timing.cooldown)
    }

    /// For a token the keys in force cannot check: one fetch, unless one ran within the
    /// cooldown; a fetch already under way is waited for, never doubled.
    pub async fn refetch(&self) {
        let seen = self.fetches.load(Ordering::SeqCst);
        if self.cooling() && self.flight.try_lock().is_ok() {
            return;
        }
        let _flight = self.flight.lock().await;
        if self.fetches.load(Ordering::SeqCst) != seen || self.cooling() {
            return;
        }
        let _ = self.fetch().await;
    }

    /// Why, even after `refetch`, no key could check a token (`Error` has its answer).
    pub fn miss(&self) -> Miss {
        if self.keys().is_some() {
            return Miss::NoKey;
        }
        let why = self
            .status()
            .error
            .clone()
            .unwrap_or_else(|| "no JWKS fetched yet".into());
        Miss::Unavailable(format!("{}: {why}", self.endpoint.url))
    }

    /// One fetch; the caller holds `flight`. On success, the time until the keys expire.
    async fn fetch(&self) -> Result<Duration, ()> {
        self.status().started = Some(Instant::now());
        let outcome = match self
            .endpoint
            .get(self.timing.timeout, self.timing.max_body)
            .await
        {
            Ok(got) => KeySet::parse(&got.body)
                .map(|set| (set, got.max_age))
                .map_err(|e| fetch::Failure::new("invalid", e)),
            Err(e) => Err(e),
        };
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // Counted before the keys and the status are published: whoever sees either (a
        // request, `/policy`) sees the fetch in the metrics too.
        let count = |result: &str| {
            if let Some(m) = &self.metrics {
                for app in &apps {
                    m.fetches.with_label_values(&[app.as_str(), result]).inc();
                }
            }
        };
        let result = match outcome {
            Ok((set, max_age)) => {
                let ttl = max_age
                    .unwrap_or(self.timing.default_ttl)
                    .clamp(self.timing.min_ttl, self.timing.max_ttl);
                let now = Instant::now();
                if let Some(m) = &self.metrics {
                    for app in &apps {
                        m.keys.with_label_values(&[app]).set(set.len() as i64);
                    }
                }
                count("success");
                tracing::info!(url = %self.endpoint.url, keys = set.len(), ignored = set.ignored, ttl_secs = ttl.as_secs(), "JWKS fetched");
                self.keys.store(Some(Arc::new(Keys {
                    set,
                    fetched_at: SystemTime::now(),
                    fetched: now,
                    expires: now + ttl,
                })));
                let mut s = self.status();
                s.finished_at = Some(SystemTime::now());
                s.error = None;
                Ok(ttl)
            }
            Err(f) => {
                tracing::warn!(url = %self.endpoint.url, kind = f.kind, error = %f.detail, "JWKS fetch failed; the last good keys stay in force");
                if self.keys().is_none() {
                    self.keys.store(None);
                    if let Some(m) = &self.metrics {
                        for app in &apps {
                            m.keys.with_label_values(&[app]).set(0);
                        }
                    }
                }
                count(f.kind);
                let mut s = self.status();
                s.finished_at = Some(SystemTime::now());
                s.error = Some(format!("{} ({})", f.detail, f.kind));
                Err(())
            }
        };
        self.fetches.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// Seconds since the keys in force were fetched (`scopegate_jwks_age_seconds`).
    pub fn age_secs(&self) -> Option<f64> {
        self.keys().map(|k| k.fetched.elapsed().as_secs_f64())
    }

    /// What `/policy` shows: the key ids in force and the last fetch (never key material).
    pub fn summary(&self) -> serde_json::Value {
        let keys = self.keys();
        let status = self.status();
        let rfc3339 = |t: SystemTime| {
            time::OffsetDateTime::from(t)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        serde_json::json!({
            "url": self.endpoint.url.split(['?', '#']).next().unwrap_or_default(),
            "kids": keys.as_ref().map(|k| k.set.kids()).unwrap_or_default(),
            "keys": keys.as_ref().map_or(0, |k| k.set.len()),
            "keys_fetched_at": keys.as_ref().map(|k| rfc3339(k.fetched_at)),
            "last_fetch_at": status.finished_at.map(rfc3339),
            "last_fetch_result": match (&status.finished_at, &status.error) {
                (None, _) => "none".to_string(),
                (Some(_), None) => "success".to_string(),
                (Some(_), Some(e)) => format!("error: {e}"),
            },
        })
    }
}

/// Refreshes a source until no policy holds it: at start, then when its keys expire; after
/// a failure, 1 s later, doubling up to a minute.
async fn refresh(source: Weak<Source>, timing: Timing) {
    let mut backoff = timing.retry_first;
    loop {
        let Some(s) = source.upgrade() else { return };
        let outcome = {
            let _flight = s.flight.lock().await;
            s.fetch().await
        };
        drop(s);
        let wait = match outcome {
            Ok(ttl) => {
                backoff = timing.retry_first;
                ttl
            }
            Err(()) => {
                let w = backoff;
                backoff = (backoff * 2).min(timing.retry_max);
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A source's identity: its URL and the bytes of its `jwks_ca_file` (a changed CA makes a
/// new source).
type SourceKey = (String, Vec<u8>);

/// The sources of a running proxy, kept across policy reloads.
pub struct Registry {
    sources: Mutex<HashMap<SourceKey, Weak<Source>>>,
    metrics: JwksMetrics,
    runtime: tokio::runtime::Handle,
    timing: Timing,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("jwks::Registry")
    }
}

impl Registry {
    /// Must be called inside the proxy's runtime: sources refresh on it.
    pub fn new(metrics: JwksMetrics) -> Registry {
        Registry {
            sources: Mutex::new(HashMap::new()),
            metrics,
            runtime: tokio::runtime::Handle::current(),
            timing: TIMING,
        }
    }

    /// The source for `endpoint` with the trust anchor `ca_pem`: the one a policy already
    /// uses, or a new one, fetched at once in the background. `app` names it in metrics.
    pub fn source(&self, endpoint: Endpoint, ca_pem: Option<&[u8]>, app: &str) -> Arc<Source> {
        let key = (endpoint.url.clone(), ca_pem.unwrap_or_default().to_vec());
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.retain(|_, s| s.strong_count() > 0);
        let (source, new) = match sources.get(&key).and_then(Weak::upgrade) {
            Some(s) => (s, false),
            None => {
                let s = Arc::new(Source::new(
                    endpoint,
                    self.timing,
                    Some(self.metrics.clone()),
                ));
                sources.insert(key, Arc::downgrade(&s));
                (s, true)
            }
        };
        let mut apps = source.apps.lock().unwrap_or_else(|p| p.into_inner());
        if !apps.iter().any(|a| a == app) {
            apps.push(app.to_string());
            self.metrics
                .keys
                .with_label_values(&[app])
                .set(source.keys().map_or(0, |k| k.set.len() as i64));
        }
        drop(apps);
        // Started once the app is known, so the first fetch is counted under its name.
        if new {
            self.runtime
                .spawn(refresh(Arc::downgrade(&source), self.timing));
        }
        source
    }
}
