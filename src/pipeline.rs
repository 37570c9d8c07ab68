//! The request path, top to bottom. Each stage is a call into its own module and hands the
//! next a typed proof:
//!
//! ```text
//! check head -> normalize path -> match route -> extract credential -> verify -> rate limit
//!            -> authorize (Permit) -> decrypt request -> forward -> encrypt response
//!            -> metrics + access log
//! ```
//!
//! | stage | module | on failure |
//! |---|---|---|
//! | head hygiene (framing, target form, header size) | `check_head` below | 400 `malformed_request`, 431 |
//! | path normalization | `proxy::path` | 400 `invalid_path` |
//! | route match | `policy::routes` | 404 `no_route`, or passthrough when configured |
//! | credential | `auth::credential` | 400 on ambiguity, 401 `missing_credentials` |
//! | verification | `auth::{jwt, api_key, webhook}`, `auth::cache`, `auth::replay` | 401 with the spec's code |
//! | rate limit | `auth::rate_limit` | 429 `rate_limited` |
//! | authorization | `authorize` | 403 `insufficient_scope`, `resource_not_allowed` |
//! | payload decryption | `payload` | 400 `encryption_required`, `invalid_encrypted_payload`, 413 |
//! | forwarding | `proxy::forward` | 502 `upstream_unavailable`, 504 `upstream_timeout` |
//! | payload encryption | `payload` | 502 `encryption_failed` (never plaintext) |
//!
//! A shadow-mode route runs every check but forwards anyway, counting what it would refuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Either, Limited};
use hyper::body::Incoming;

use crate::auth::cache::TokenCache;
use crate::auth::credential::{self, Credential};
use crate::auth::jwt::{self, Verified};
use crate::auth::rate_limit::{Decision, Limiter};
use crate::auth::replay::ReplayStore;
use crate::auth::{Identity, Principal, api_key, webhook};
use crate::authorize::{self, Permit};
use crate::busy_poll::BusyPoll;
use crate::config::{Config, Unmatched};
use crate::error::Error;
use crate::observe::access_log::{AccessLog, Record};
use crate::observe::metrics::Metrics;
use crate::payload;
use crate::policy::Route;
use crate::policy::snapshot::{Policies, Snapshot};
use crate::proxy::forward::{self, Forwarder};
use crate::proxy::headers::{self, Forwarding, IdentityNames, Peer};
use crate::proxy::{Body, full, path};

/// Where clients fetch the proxy's public JWE keys (SPEC §4).
pub const JWKS_PATH: &str = "/.well-known/scopegate/jwks.json";

/// Everything a request needs that outlives it.
pub struct State {
    pub config: Config,
    pub policies: Arc<Policies>,
    pub forwarder: Forwarder,
    pub token_cache: TokenCache,
    pub replay: ReplayStore,
    pub limiter: Limiter,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub names: IdentityNames,
    pub draining: AtomicBool,
    /// `limits.busy_poll`, when set.
    pub busy_poll: Option<Arc<BusyPoll>>,
}

/// The client side of one connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: Peer,
    pub https: bool,
    /// The connection sent a header block with both Content-Length and Transfer-Encoding
    /// (which the HTTP parser resolves silently; see `proxy::framing`).
    pub ambiguous_framing: bool,
}

/// What the request did, gathered along the way for metrics and the access log. It borrows
/// from the request's policy snapshot and shares the principal's id value: no copies.
#[derive(Default)]
struct Trace<'s> {
    path: String,
    route: Option<&'s str>,
    principal_kind: &'static str,
    principal_id: Option<HeaderValue>,
    auth: Duration,
    upstream: Option<(u16, Duration)>,
    rate: Option<Decision>,
    shadowed: Option<&'static str>,
}

pub async fn handle(state: &State, conn: Conn, req: Request<Incoming>) -> Response<Body> {
    state.polled_io();
    state.metrics.inflight.inc();
    let snapshot = state.policies.current();
    let mut pending = Pending {
        state,
        started: Instant::now(),
        request_id: headers::request_id(req.headers()),
        method: req.method().clone(),
        trace: Trace {
            principal_kind: "none",
            ..Trace::default()
        },
        answered: false,
    };
    let result = process(
        state,
        &snapshot,
        conn,
        req,
        &pending.request_id,
        &mut pending.trace,
    )
    .await;
    let (mut resp, error) = match result {
        Ok(r) => (r, None),
        Err(e) => (e.into_response(&pending.request_id), Some(e)),
    };
    if let Some(d) = pending.trace.rate {
        let h = resp.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(d.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
    }
    pending.answered(resp.status(), error.as_ref());
    resp
}

/// A request being handled. Its metrics and access-log line are recorded once it is
/// answered, or, if its handler is dropped first (its connection cut at the end of the
/// drain), then, as `DrainCut`.
struct Pending<'a, 's> {
    state: &'a State,
    started: Instant,
    request_id: HeaderValue,
    method: Method,
    trace: Trace<'s>,
    answered: bool,
}

impl Pending<'_, '_> {
    fn answered(&mut self, status: StatusCode, error: Option<&Error>) {
        self.answered = true;
        record(
            self.state,
            &self.trace,
            &self.method,
            self.request_id.to_str().unwrap_or_default(),
            status,
            error,
            self.started,
        );
        self.state.metrics.inflight.dec();
    }
}

impl Drop for Pending<'_, '_> {
    fn drop(&mut self) {
        if !self.answered {
            let cut = Error::DrainCut;
            self.answered(cut.status(), Some(&cut));
        }
    }
}

async fn process<'s>(
    state: &State,
    snap: &'s Snapshot,
    conn: Conn,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    t: &mut Trace<'s>,
) -> Result<Response<Body>, Error> {
    check_head(
        &req,
        conn.ambiguous_framing,
        state.config.limits.max_header_bytes,
    )?;
    let (mut parts, body) = req.into_parts();
    let normalized =
        path::normalize(parts.uri.path()).map_err(|e| Error::InvalidPath(e.to_string()))?;
    t.path = normalized.to_string();
    // SPEC §5: never forwarded, whatever the route's methods or `unmatched` say.
    if parts.method == Method::TRACE || parts.method == Method::CONNECT {
        return Err(Error::NoRoute);
    }
    if parts.method == Method::GET && normalized == JWKS_PATH {
        let mut r = jwks(snap);
        headers::prepare_response(r.headers_mut(), request_id);
        return Ok(r);
    }

    let policy = &snap.policy;
    let auth_started = Instant::now();
    let mut body: Body = Either::Left(body);
    let permit = match policy.router.at(&parts.method, &normalized) {
        None if state.config.unmatched == Unmatched::Passthrough => {
            authorize::passthrough(policy.scopes.len())
        }
        None => return Err(Error::NoRoute),
        Some(m) => {
            let route = &policy.routes[m.route];
            t.route = Some(&route.id);
            match decide(state, snap, route, &m.params, &parts.headers, &mut body, t).await {
                Ok(permit) => permit,
                Err(e) if route.shadow && e.origin() == crate::error::Source::Client => {
                    t.shadowed = Some(e.code());
                    state
                        .metrics
                        .shadow_denials
                        .with_label_values(&[&route.id, e.code()])
                        .inc();
                    authorize::shadow(route, policy.scopes.len(), e)
                }
                Err(e) => return Err(e),
            }
        }
    };
    t.auth = auth_started.elapsed();
    state.metrics.auth_duration.observe(t.auth.as_secs_f64());

    let seal = payload::plan(&permit, &parts.method, &parts.headers);
    if let Some(plan) = &seal {
        let (decrypted, content_type) = payload::open_request(
            plan,
            &snap.policy,
            &parts.headers,
            body,
            state.config.limits.max_body_bytes,
        )
        .await?;
        body = decrypted;
        payload::restore_request_headers(&mut parts.headers, content_type, &body);
    }

    let up = state.forwarder.upstream(permit.upstream());
    let forwarding = Forwarding {
        peer: &conn.peer,
        https: conn.https,
        request_id,
        upstream_host: &up.host,
        original_host: parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        }),
        keep_credentials: permit.keeps_credentials(),
    };
    headers::prepare_request(
        &mut parts.headers,
        &state.names,
        permit.principal(),
        permit.route().map(|r| &r.id_header),
        &forwarding,
    );
    if seal.is_some() {
        payload::upstream_accept(&mut parts.headers);
    }
    let path_and_query = match (up.base_path.as_str(), parts.uri.query()) {
        ("", None) => normalized.into_owned(),
        (base, None) => format!("{base}{normalized}"),
        (base, Some(q)) => format!("{base}{normalized}?{q}"),
    };
    let upstream_name = up.name.as_str();
    let req = Request::from_parts(parts, body);
    state.polled_io();
    let sent = state.forwarder.send(&permit, path_and_query, req).await;
    // The window runs from the last I/O, so it also covers the client's next request.
    state.polled_io();
    let (resp, took) = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Some(kind) = forward::error_kind(&e) {
                state
                    .metrics
                    .upstream_errors
                    .with_label_values(&[kind])
                    .inc();
            }
            return Err(e);
        }
    };
    state
        .metrics
        .upstream_duration
        .with_label_values(&[upstream_name])
        .observe(took.as_secs_f64());
    t.upstream = Some((resp.status().as_u16(), took));

    let (mut parts, body) = resp.into_parts();
    headers::prepare_response(&mut parts.headers, request_id);
    let body = match &seal {
        Some(plan) => {
            payload::seal_response(
                plan,
                parts.status,
                &mut parts.headers,
                body,
                state.config.limits.max_body_bytes,
            )
            .await?
        }
        None => Either::Left(body),
    };
    Ok(Response::from_parts(parts, body))
}

/// Credential -> principal -> rate limit -> permit, for one matched route.
async fn decide<'p>(
    state: &State,
    snap: &'p Snapshot,
    route: &'p Route,
    params: &[&str],
    headers: &HeaderMap,
    body: &mut Body,
    t: &mut Trace<'_>,
) -> Result<Permit<'p>, Error> {
    let policy = &snap.policy;
    let catalogue = policy.scopes.len();
    let principal = if route.auth.only_none() {
        Principal::anonymous(catalogue)
    } else if let Some(w) = (route.webhook.as_ref())
        // `auth: [webhook, none]`: an unsigned request goes on anonymously, below (§3.1).
        .filter(|_| !route.auth.none || headers.contains_key(headers::X_SIGNATURE))
    {
        let bytes = read_limited(
            std::mem::replace(body, full(Bytes::new())),
            state.config.limits.max_body_bytes,
        )
        .await?;
        let sig = headers
            .get(headers::X_SIGNATURE)
            .and_then(|v| v.to_str().ok());
        webhook::verify(w, sig, &bytes, unix_now() as i64)?;
        *body = full(bytes);
        Principal {
            identity: Identity::Webhook,
            ..Principal::anonymous(catalogue)
        }
    } else {
        match credential::extract(headers)? {
            None if route.auth.none => Principal::anonymous(catalogue),
            None => return Err(Error::MissingCredentials),
            Some(Credential::Jws(token)) if route.auth.jwt => {
                verify_token(state, snap, token, false).await?
            }
            Some(Credential::Jwe(token)) if route.auth.jwt => {
                verify_token(state, snap, token, true).await?
            }
            Some(Credential::ApiKey(key)) if route.auth.api_key => {
                api_key::verify(policy, key, unix_now() as i64)?
            }
            Some(_) => {
                return Err(Error::InvalidToken(
                    "credential kind not accepted on this route",
                ));
            }
        }
    };
    t.principal_kind = principal.kind();
    t.principal_id = principal.id().cloned();

    let limit = match &principal.identity {
        Identity::Jwt { app } => app.rate_limit.clone(),
        Identity::ApiKey { key } => key.rate_limit.clone(),
        _ => None,
    };
    if let Some(limit) = limit {
        let d = state.limiter.check(&limit.bucket, limit.rate).await?;
        t.rate = Some(d);
        if !d.allowed {
            return Err(Error::RateLimited {
                retry_after_secs: d.retry_after_secs,
            });
        }
    }
    authorize::authorize(policy, route, params, principal, &state.config.environments)
}

/// Verifies a JWS or JWE token, through the token cache, then the per-use checks (time,
/// single-use jti) that no cache may skip.
async fn verify_token(
    state: &State,
    snap: &Snapshot,
    token: &str,
    is_jwe: bool,
) -> Result<Principal, Error> {
    let now = unix_now();
    let verified = cached(state, snap, token, is_jwe, now)?;
    per_use_checks(state, &verified, now).await?;
    Ok(verified.principal.clone())
}

/// The verdict for a token: from this thread's recent tokens, else (asymmetric and JWE
/// tokens, whose signatures are worth a hash and a shared lookup) from the shared cache,
/// else verified and stored.
fn cached(
    state: &State,
    snap: &Snapshot,
    token: &str,
    is_jwe: bool,
    now: f64,
) -> Result<Arc<Verified>, Error> {
    let cache = &state.token_cache;
    if let Some(v) = cache.get_local(snap.generation, token, now) {
        state.metrics.token_cache_hits.inc();
        return Ok(v);
    }
    let v = if is_jwe {
        shared(state, snap, token, now, || {
            jwt::verify_jwe(&snap.policy, token)
        })?
    } else {
        let jws = jwt::Jws::parse(token)?;
        if jws.is_asymmetric() {
            shared(state, snap, token, now, || {
                jwt::verify(&snap.policy, &jws, false)
            })?
        } else {
            state.metrics.token_cache_misses.inc();
            Arc::new(jwt::verify(&snap.policy, &jws, false)?)
        }
    };
    cache.insert_local(snap.generation, token, &v, now);
    Ok(v)
}

/// The shared cache's verdict, or `verify`'s, stored.
fn shared(
    state: &State,
    snap: &Snapshot,
    token: &str,
    now: f64,
    verify: impl FnOnce() -> Result<Verified, Error>,
) -> Result<Arc<Verified>, Error> {
    let key = TokenCache::key(snap.generation, token);
    if let Some(v) = state.token_cache.get(&key) {
        state.metrics.token_cache_hits.inc();
        return Ok(v);
    }
    state.metrics.token_cache_misses.inc();
    let v = Arc::new(verify()?);
    state.token_cache.insert(key, v.clone(), now);
    Ok(v)
}

/// What no cache may skip: the clock, and a single-use jti.
async fn per_use_checks(state: &State, verified: &Verified, now: f64) -> Result<(), Error> {
    jwt::check_time(verified, now)?;
    if verified.app.single_use_jti {
        let jti = verified.jti.as_deref().ok_or(Error::JtiRequired)?;
        // Validation makes single_use_jti require exp, so every token here has one.
        let exp = verified.exp.ok_or(Error::InvalidToken("no exp"))?;
        let accepted_until = exp + verified.app.leeway_secs as f64;
        if !state
            .replay
            .first_use(&verified.app.client_id, jti, accepted_until, now)
            .await?
        {
            return Err(Error::TokenReplayed);
        }
    }
    Ok(())
}

/// Request-line and header-block hygiene that the HTTP parser leaves to us (SPEC §5).
fn check_head(
    req: &Request<Incoming>,
    ambiguous_framing: bool,
    max_header_bytes: usize,
) -> Result<(), Error> {
    if !req.uri().path().starts_with('/') {
        return Err(Error::MalformedRequest("request target is not origin-form"));
    }
    let h = req.headers();
    let size: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if size > max_header_bytes {
        return Err(Error::HeadersTooLarge);
    }
    if req.version() <= Version::HTTP_11 {
        if h.get_all(header::HOST).iter().count() != 1 {
            return Err(Error::MalformedRequest("zero or several Host headers"));
        }
        let te: Vec<&HeaderValue> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
        if !te.is_empty() {
            if ambiguous_framing || h.contains_key(header::CONTENT_LENGTH) {
                return Err(Error::MalformedRequest(
                    "Content-Length with Transfer-Encoding",
                ));
            }
            if te.len() != 1 || !te[0].as_bytes().eq_ignore_ascii_case(b"chunked") {
                return Err(Error::MalformedRequest(
                    "transfer coding other than chunked",
                ));
            }
        }
        let mut cl = h.get_all(header::CONTENT_LENGTH).iter();
        if let Some(first) = cl.next() {
            if cl.any(|v| v != first) || first.as_bytes().contains(&b',') {
                return Err(Error::MalformedRequest("differing Content-Length values"));
            }
        }
    }
    Ok(())
}

/// Reads a whole body, refusing it past `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Error> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge),
        Err(_) => Err(Error::MalformedRequest("request body could not be read")),
    }
}

fn jwks(snap: &Snapshot) -> Response<Body> {
    let mut r = Response::new(full(snap.policy.jwks.clone()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

fn record(
    state: &State,
    t: &Trace<'_>,
    method: &Method,
    request_id: &str,
    status: StatusCode,
    error: Option<&Error>,
    started: Instant,
) {
    let elapsed = started.elapsed();
    let code = error.map(Error::code).unwrap_or("ok");
    let route = t
        .route
        .unwrap_or(if error.is_some_and(|e| matches!(e, Error::NoRoute)) {
            "no_route"
        } else {
            "-"
        });
    let class = match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    state
        .metrics
        .requests
        .with_label_values(&[route, code, class])
        .inc();
    state
        .metrics
        .request_duration
        .observe(elapsed.as_secs_f64());
    state.access_log.write(&Record {
        request_id,
        method: method.as_str(),
        path: &t.path,
        route,
        status: status.as_u16(),
        code,
        reason: error.map(|e| e.to_string()),
        principal_kind: t.principal_kind,
        principal_id: t.principal_id.as_ref().and_then(|v| v.to_str().ok()),
        upstream_status: t.upstream.map(|u| u.0),
        duration: elapsed,
        auth: t.auth,
        upstream: t.upstream.map(|u| u.1),
        shadow: t.shadowed.is_some(),
    });
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl State {
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// I/O happened: with `limits.busy_poll`, the worker keeps polling for the window.
    fn polled_io(&self) {
        if let Some(b) = &self.busy_poll {
            b.touch();
        }
    }
}
