//! Wiring: builds the shared state from the config, binds the listeners, starts the policy
//! watcher and the signal handlers, and runs until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use crate::auth::cache::TokenCache;
use crate::auth::key_store::KeyStore;
use crate::auth::rate_limit::Limiter;
use crate::auth::replay::ReplayStore;
use crate::auth::verify::Verifier;
use crate::authz::Authz;
use crate::busy_poll::BusyPoll;
use crate::config::{Config, ReplayStoreConfig};
use crate::decide::Decider;
use crate::jwks::Registry;
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::Metrics;
use crate::pipeline::State;
use crate::policy::compile::Context;
use crate::policy::snapshot::Policies;
use crate::proxy::forward::Forwarder;
use crate::proxy::{listener, tls};
use crate::reload;
use crate::store::Redis;
use crate::trace::Tracer;
use crate::wire::IdentityNames;

pub struct Options {
    /// Write access-log lines to stdout.
    pub access_log: bool,
    /// Watch the policy files and reload on change (SIGHUP reloads either way).
    pub watch: bool,
}

/// A started proxy. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    /// The public (proxy) listener; `None` in an authz-only deployment.
    pub addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// The authorization-service listener, when configured (SPEC §8).
    pub authz_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    stop: channel::Sender<bool>,
    serving: Vec<JoinHandle<()>>,
}

impl Running {
    /// Readiness goes 503, the listener closes, in-flight requests finish (bounded by
    /// `drain_timeout`).
    pub async fn shutdown(self) {
        self.state.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        for listener in self.serving {
            let _ = listener.await;
        }
        self.state.access_log.flush();
        if let Some(t) = &self.state.tracer {
            t.shutdown().await;
        }
    }
}

pub fn context(config: &Config) -> Context {
    Context {
        // An authz-only deployment has no upstreams: routes' upstream names go unchecked.
        upstreams: (!config.upstreams.is_empty())
            .then(|| config.upstreams.iter().map(|u| u.name.clone()).collect()),
        identity_prefix: config.identity_header_prefix.clone(),
        test_environment: Some(config.environments.contains_key("test")),
        jwks: None,
    }
}

pub async fn start(config: Config, options: Options) -> Result<Running, String> {
    let metrics = Arc::new(Metrics::new());
    // JWKS sources outlive each policy: a reload reuses them (and their keys).
    let ctx = Context {
        jwks: Some(Arc::new(Registry::new(metrics.jwks.clone()))),
        ..context(&config)
    };
    let (policies, warnings) =
        Policies::load(&config.policy_file, ctx).map_err(|e| e.to_string())?;
    for w in warnings {
        tracing::warn!(warning = %w, "policy");
    }
    let policies = Arc::new(policies);
    metrics.generation.set(policies.current().generation as i64);
    let (replay, limiter) = match &config.replay_store {
        ReplayStoreConfig::Memory => (ReplayStore::memory(), Limiter::memory()),
        ReplayStoreConfig::Redis(url) => {
            let store = Redis::connect(url, config.limits.upstream_connect_timeout)
                .await
                .map_err(|e| format!("replay_store: {e}"))?;
            (ReplayStore::redis(store.clone()), Limiter::redis(store))
        }
    };
    let key_store = match &config.key_store {
        None => None,
        Some(url) => Some(
            KeyStore::start(
                url,
                config.limits.upstream_connect_timeout,
                metrics.key_store.clone(),
            )
            .await
            .map_err(|e| format!("key_store: {e}"))?,
        ),
    };
    let (tls, certificate) = match &config.tls {
        Some(t) => {
            let (acceptor, certificate) = tls::acceptor(t).map_err(|e| format!("tls: {e}"))?;
            (Some(acceptor), Some(certificate))
        }
        None => (None, None),
    };
    let public = match config.listen {
        Some(at) => Some(bind("listen", at).await?),
        None => None,
    };
    let authz = match &config.authz {
        Some(a) => Some(bind("authz.listen", a.listen).await?),
        None => None,
    };
    let admin = bind("admin_listen", config.admin_listen).await?;
    let local = |l: &TcpListener| l.local_addr().map_err(|e| e.to_string());
    let addr = public.as_ref().map(local).transpose()?;
    let authz_addr = authz.as_ref().map(local).transpose()?;
    let admin_addr = local(&admin)?;

    let busy_poll = (!config.limits.busy_poll.is_zero()).then(|| {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        BusyPoll::start(config.limits.busy_poll, workers)
    });
    let forwarder = Forwarder::new(&config)?;
    let tracer = config.tracing.as_ref().map(Tracer::start).transpose()?;
    let mut certificates: Vec<_> = certificate.into_iter().collect();
    certificates.extend(forwarder.certificates());
    let state = Arc::new(State {
        names: IdentityNames::new(&config.identity_header_prefix).map_err(|e| e.to_string())?,
        forwarder,
        decider: Decider {
            verifier: Verifier {
                cache: TokenCache::new(100_000),
                replay,
                hits: metrics.token_cache_hits.clone(),
                misses: metrics.token_cache_misses.clone(),
            },
            limiter,
            key_store,
            unmatched: config.unmatched,
            environments: config.environments.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            shadow_denials: metrics.shadow_denials.clone(),
        },
        metrics: metrics.clone(),
        access_log: AccessLog::new(options.access_log, metrics.access_log_dropped.clone()),
        draining: AtomicBool::new(false),
        busy_poll,
        exchanges: Default::default(),
        assertions: Default::default(),
        tracer,
        policies: policies.clone(),
        config,
    });

    let reload = reload::spawn(
        policies.clone(),
        certificates,
        metrics.clone(),
        options.watch,
    )
    .map_err(|e| format!("policy watcher: {e}"))?;
    spawn_sighup(reload);
    tokio::spawn(crate::admin::serve(state.clone(), admin));
    let (stop, stopped) = channel::channel(false);
    let limits = Arc::new(state.config.limits.clone());
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut serving = Vec::new();
    if let Some(public) = public {
        let proxy = listener::serve(state.clone(), limits.clone(), public, tls, until_stopped());
        serving.push(tokio::spawn(proxy));
    }
    if let Some(authz) = authz {
        let handler = Authz::new(state.clone());
        let decide = listener::serve(handler, limits, authz, None, until_stopped());
        serving.push(tokio::spawn(decide));
    }
    tracing::info!(
        addr = ?addr,
        authz_addr = ?authz_addr,
        %admin_addr,
        generation = policies.current().generation,
        "scopegate ready"
    );
    Ok(Running {
        addr,
        admin_addr,
        authz_addr,
        state,
        stop,
        serving,
    })
}

async fn bind(what: &str, at: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(at)
        .await
        .map_err(|e| format!("{what} {at}: {e}"))
}

#[cfg(unix)]
fn spawn_sighup(reload: tokio::sync::mpsc::UnboundedSender<reload::Trigger>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = reload.send(reload::Trigger::Signal);
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
    }
}

#[cfg(not(unix))]
fn spawn_sighup(_: tokio::sync::mpsc::UnboundedSender<reload::Trigger>) {}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
