//! The admin listener (SPEC §7): health, readiness, metrics and what policy is in force.
//! Never served on the public listener, and nothing it answers carries a secret.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::pipeline::State;
use crate::proxy::idle::{self, Activity};
use crate::proxy::tap::Tap;
use crate::wire::{Body, full};

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    let builder = crate::proxy::listener::http_builder(&state.config.limits);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let activity = Activity::accepted(&state.config.limits);
        let state = state.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let tracker = activity.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let _busy = tracker.begin();
                let response = answer(&state, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let io = TokioIo::new(Tap::new(stream, activity.arrivals()));
            // Not drained: the admin listener answers (readyz 503) until the process exits.
            let conn = builder.serve_connection(io, service);
            let _ = idle::drive(conn, &activity, std::future::pending()).await;
        });
    }
}

fn answer(state: &State, req: &Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/metrics" => {
            let snap = state.policies.current();
            for (app, source) in jwks_apps(&snap.policy) {
                if let Some(age) = source.age_secs() {
                    state.metrics.jwks.age.with_label_values(&[app]).set(age);
                }
            }
            let mut r = Response::new(full(state.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4".parse().expect("static value"),
            );
            r
        }
        "/policy" => {
            let snap = state.policies.current();
            let p = &snap.policy;
            let body = serde_json::json!({
                "generation": snap.generation,
                "sha256": snap.sha256,
                "loaded_at": snap.loaded_at,
                "file": state.policies.file().display().to_string(),
                "counts": {
                    "scopes": p.scopes.len(),
                    "routes": p.routes.len(),
                    "apps": p.apps.len(),
                    "api_keys": p.api_keys.len(),
                    "jwe_keys": p.jwe_keys.len(),
                },
                "token_cache_entries": {
                    "shared": state.decider.verifier.cache.entry_count(),
                    "per_thread": state.decider.verifier.cache.local_entry_count(),
                },
                "key_store": state.decider.key_store.as_ref().map(|k| k.status()),
                "jwks": jwks_apps(p)
                    .into_iter()
                    .map(|(app, source)| {
                        let mut s = source.summary();
                        s["app"] = app.into();
                        s
                    })
                    .collect::<Vec<_>>(),
            });
            let mut r = Response::new(full(body.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static value"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

/// The JWKS apps of a policy, for `/policy` and the age gauge, in client_id order.
fn jwks_apps(policy: &crate::policy::Policy) -> Vec<(&str, &Arc<crate::jwks::Source>)> {
    let mut out: Vec<(&str, &Arc<crate::jwks::Source>)> = policy
        .apps
        .values()
        .filter_map(|a| a.jwks.as_ref().map(|s| (a.client_id.as_str(), s)))
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}
