//! The request path, top to bottom. Each stage is a call into its own module and hands the
//! next a typed proof:
//!
//! ```text
//! check head -> decide (normalize path -> match route -> extract credential -> verify
//!            -> rate limit -> authorize: Permit) -> decrypt request -> forward
//!            -> encrypt response -> metrics + access log
//! ```
//!
//! | stage | module | on failure |
//! |---|---|---|
//! | head hygiene (framing, target form, header size) | `proxy::framing::check_head` | 400 `malformed_request`, 431 |
//! | path normalization | `decide::normalize` (`path`) | 400 `invalid_path` |
//! | the token endpoint, before routing (SPEC §3.7) | `issuer::endpoint` | 400, 401 `invalid_client`, 413, 429 |
//! | the decision: route, credential, verification, rate limit, authorization | `decide` (`policy::routes`, `auth`, `authorize`) | 404 `no_route`, 400/401/403/429/503 with the spec's code |
//! | payload decryption | `payload` | 400 `encryption_required`, `invalid_encrypted_payload`, 413 |
//! | the upstream assertion (SPEC §3.7) | `issuer::assertion` | 503 `keys_unavailable` (never unsigned) |
//! | WebSocket handshake (after the decision) | `proxy::websocket` | 400 `malformed_request` (other upgrades), `encryption_required` |
//! | forwarding (a WebSocket: then the tunnel) | `proxy::forward`, `proxy::websocket` | 502 `upstream_unavailable`, 504 `upstream_timeout` |
//! | payload encryption | `payload` | 502 `encryption_failed` (never plaintext) |
//!
//! With `tracing` on (SPEC §7), `handle` opens the request's span (`trace`), the
//! decision and the upstream leg add their child spans, the upstream's `traceparent` names
//! it as the parent, and the record ends it. Off, each of those is a branch on `None`.
//!
//! The decision is `decide`'s, shared with every other front door; this file adds what
//! only a proxy does: the JWKS document, the token endpoint, payloads, the upstream leg (with
//! its assertion) and the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::authorize::Permitted;
use crate::busy_poll::BusyPoll;
use crate::config::Config;
use crate::decide::{self, Decider, unix_now};
use crate::error::Error;
use crate::issuer::assertion::Assertions;
use crate::issuer::endpoint::{self, Exchange, Guard};
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::Metrics;
use crate::observe::record::{Listener, Pending, Trace};
use crate::payload;
use crate::policy::snapshot::{Policies, Snapshot};
use crate::proxy::forward::Forwarder;
use crate::proxy::framing;
use crate::proxy::headers::{self, Forwarding};
use crate::proxy::listener::{Conn, Handler};
use crate::proxy::websocket::{self, Handshake};
use crate::trace::{self, Kind, Tracer};
use crate::wire::{Body, IdentityNames, full};

/// Where clients fetch the proxy's public JWE keys (SPEC §4) and the issuer's signing keys (§3.7).
pub const JWKS_PATH: &str = "/.well-known/scopegate/jwks.json";

/// Everything a request needs that outlives it.
pub struct State {
    pub config: Config,
    pub policies: Arc<Policies>,
    pub forwarder: Forwarder,
    /// The decision, with the caches and stores it keeps.
    pub decider: Decider,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    pub names: IdentityNames,
    pub draining: AtomicBool,
    /// `limits.busy_poll`, when set.
    pub busy_poll: Option<Arc<BusyPoll>>,
    /// The token endpoint's brute-force counters (SPEC §3.7).
    pub exchanges: Guard,
    /// Signed upstream assertions, reused while fresh (SPEC §3.7).
    pub assertions: Assertions,
    /// `tracing` (SPEC §7); `None`, the default, creates no span.
    pub tracer: Option<Tracer>,
}

impl Handler for Arc<State> {
    /// `handle`'s own future, not one wrapping it: every layer of async state is copied
    /// whole when the future moves, and this one would be ~5 KiB.
    fn handle(
        &self,
        conn: Conn,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send {
        handle(self, conn, req)
    }
}

pub async fn handle(state: &State, conn: Conn, req: Request<Incoming>) -> Response<Body> {
    state.polled_io();
    let snapshot = state.policies.current();
    let mut pending = Pending::start(
        &state.metrics,
        &state.access_log,
        Listener::Proxy,
        req.method(),
        headers::request_id(req.headers()),
    );
    if let Some(tracer) = &state.tracer {
        pending.trace.seen.span = tracer.request(req.headers());
    }
    // An HTTP/1 body the refusal below may leave unread.
    let unread_on_refusal =
        req.version() <= http::Version::HTTP_11 && !hyper::body::Body::is_end_stream(req.body());
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
        Err(e) => {
            let mut r = e.into_response(&pending.request_id);
            // A refusal may leave the body unread, and what is left of it would be read as
            // the next request's head: the connection ends with this answer (as Envoy and
            // nginx do), and the client knows not to reuse it.
            if unread_on_refusal {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            (r, Some(e))
        }
    };
    pending.rate_limit_headers(resp.headers_mut());
    pending.answered(resp.status(), error.as_ref());
    resp
}

async fn process<'s>(
    state: &State,
    snap: &'s Snapshot,
    conn: Conn,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    t: &mut Trace<'s>,
) -> Result<Response<Body>, Error> {
    framing::check_head(
        &req,
        conn.ambiguous_framing,
        state.config.limits.max_header_bytes,
    )?;
    let (mut parts, body) = req.into_parts();
    // scopegate speaks its own HTTP version to the client (RFC 9110 §6.2), whatever the
    // upstream's: an HTTP/1.0 upstream's answer must not end a keep-alive connection.
    let client_version = parts.version;
    // A WebSocket handshake is decided like any request (an HTTP/2 one as the GET it
    // stands for); any other protocol switch is refused here, before anything else.
    let websocket = websocket::asked(&parts)?;
    if websocket == Some(Handshake::ExtendedConnect) {
        parts.method = Method::GET;
    }
    let normalized = decide::normalize(parts.uri.path())?;
    t.path = normalized.to_string();
    if parts.method == Method::GET && normalized.as_str() == JWKS_PATH {
        let mut r = jwks(snap);
        headers::prepare_response(r.headers_mut(), request_id);
        return Ok(r);
    }
    // SPEC §3.7: the token endpoint is served before routing and needs no route.
    if let Some(te) = &snap.policy.token_endpoint {
        if parts.method == Method::POST && normalized.as_str() == te.path {
            t.seen.route = Some(endpoint::ROUTE);
            // Boxed, as are the payload stages below: what only some requests do stays out
            // of the future every request builds and moves.
            let mut r = Box::pin(exchange(state, snap, &conn, &parts.headers, body, t)).await?;
            headers::prepare_response(r.headers_mut(), request_id);
            return Ok(r);
        }
    }

    let auth_started = Instant::now();
    let mut body: Body = Either::Left(body);
    let permit = state
        .decider
        .decide(
            snap,
            &parts.method,
            &normalized,
            &parts.headers,
            &mut body,
            &mut t.seen,
        )
        .await?;
    t.auth = auth_started.elapsed();
    state.metrics.auth_duration.observe(t.auth.as_secs_f64());

    let seal = payload::plan(&permit, &parts.method, &parts.headers);
    if websocket.is_some() && seal.is_some() {
        // Frames would pass in plaintext for an app that asked for encrypted payloads.
        return Err(Error::EncryptionRequired);
    }
    if let Some(plan) = &seal {
        let (decrypted, content_type) = Box::pin(payload::open_request(
            plan,
            &snap.policy,
            &parts.headers,
            body,
            state.config.limits.max_body_bytes,
        ))
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
    let trailers = up.http2 && headers::accepts_trailers(&parts.headers);
    headers::prepare_request(&mut parts.headers, &state.names, &forwarding);
    if trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    permit.write_identity(&state.names, &mut parts.headers);
    if let Some(a) = &snap.policy.upstream_assertion {
        parts.headers.remove(&a.header);
    }
    let assertion =
        state
            .assertions
            .for_request(snap, &permit, (permit.upstream(), &up.name), unix_now)?;
    if let Some((name, value)) = assertion {
        parts.headers.insert(name, value);
    }
    if seal.is_some() {
        payload::upstream_accept(&mut parts.headers);
    }
    if let Some(span) = &t.seen.span {
        span.write_traceparent(&mut parts.headers);
    }
    let path_and_query = match (up.base_path.as_str(), parts.uri.query()) {
        ("", None) => normalized.into_string(),
        (base, None) => format!("{base}{}", normalized.as_str()),
        (base, Some(q)) => format!("{base}{}?{q}", normalized.as_str()),
    };
    let upstream_name = up.name.as_str();
    let route = permit.route().map_or("-", |r| r.id.as_str());
    let client_upgrade = websocket.and_then(|_| parts.extensions.remove::<OnUpgrade>());
    if let Some(how) = websocket {
        websocket::upstream_request(&mut parts.headers, &mut parts.method, how);
    }
    let permitted = permit.bind(Request::from_parts(parts, body));
    state.polled_io();
    let mut span = trace::child(t.seen.span.as_ref(), "scopegate.upstream", Kind::Client);
    let sent = forward(state, permitted, path_and_query, websocket.is_some()).await;
    if let (Some(s), Ok((r, _))) = (&mut span, &sent) {
        s.set("http.response.status_code", i64::from(r.status().as_u16()));
    }
    trace::end(span, &sent);
    // The window runs from the last I/O, so it also covers the client's next request.
    state.polled_io();
    let (resp, took) = match sent {
        Ok(r) => r,
        Err(e) => {
            if let Some(kind) = e.upstream_kind() {
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
    parts.version = client_version;
    // Read before the hygiene removes `Upgrade` as hop-by-hop.
    let to_websocket = websocket.is_some() && websocket::switched(&parts.headers);
    headers::prepare_response(&mut parts.headers, request_id);
    if let Some(how) = websocket {
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            if !to_websocket {
                return Err(Error::UpstreamUnavailable(
                    "101 to a protocol other than websocket".into(),
                ));
            }
            return tunnel(state, conn, how, client_upgrade, parts, route);
        }
        // Not switched (refused, redirected): the upstream's answer goes back as it is.
    }
    let body = match &seal {
        Some(plan) => {
            Box::pin(payload::seal_response(
                plan,
                parts.status,
                &mut parts.headers,
                body,
                state.config.limits.max_body_bytes,
            ))
            .await?
        }
        None => Either::Left(body),
    };
    Ok(Response::from_parts(parts, body))
}

/// The one way to the upstream: a permitted request (a WebSocket handshake on a
/// connection of its own). It hands back the forwarder's own future rather than awaiting it
/// in one of its own (a second copy of its state), and is inlined so that future is built
/// where it is awaited.
#[inline(always)]
fn forward<'a>(
    state: &'a State,
    permitted: Permitted<'_, Request<Body>>,
    path_and_query: String,
    websocket: bool,
) -> impl Future<Output = Result<(Response<Incoming>, Duration), Error>> + 'a {
    let (permit, req) = permitted.into_parts();
    state
        .forwarder
        .send(permit.upstream(), path_and_query, req, websocket)
}

/// The token endpoint's exchange (`issuer::endpoint`), counted, and its answer.
async fn exchange(
    state: &State,
    snap: &Snapshot,
    conn: &Conn,
    headers: &http::HeaderMap,
    body: Incoming,
    t: &mut Trace<'_>,
) -> Result<Response<Body>, Error> {
    let minted = Exchange {
        policy: &snap.policy,
        guard: &state.exchanges,
        limiter: &state.decider.limiter,
        address: conn.peer.ip(),
    }
    .run(headers, Either::Left(body), unix_now())
    .await;
    let result = match &minted {
        Ok(_) => "issued",
        Err(e) => e.code(),
    };
    state
        .metrics
        .token_exchanges
        .with_label_values(&[result])
        .inc();
    let minted = minted?;
    t.seen.principal_kind = "client";
    t.seen.principal_id = Some(minted.client_id.clone());
    let mut r = Response::new(full(minted.body()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// The upstream switched to a WebSocket: the client gets its handshake answer, and both
/// connections, once upgraded, become a tunnel (SPEC §5.1) that the drain waits for.
fn tunnel(
    state: &State,
    conn: Conn,
    how: Handshake,
    client: Option<OnUpgrade>,
    mut parts: http::response::Parts,
    route: &str,
) -> Result<Response<Body>, Error> {
    let (Some(client), Some(upstream)) = (client, parts.extensions.remove::<OnUpgrade>()) else {
        return Err(Error::UpstreamUnavailable(
            "a connection that cannot switch".into(),
        ));
    };
    websocket::client_response(&mut parts.headers, how);
    if how == Handshake::ExtendedConnect {
        parts.status = StatusCode::OK;
    }
    state.metrics.websockets.with_label_values(&[route]).inc();
    let idle = state.config.limits.websocket_idle_timeout;
    let open = websocket::Open::count(&state.metrics.websockets_open);
    tokio::spawn(async move {
        let ended = websocket::tunnel(client, upstream, idle, conn.drain, open).await;
        tracing::debug!(?ended, "WebSocket closed");
    });
    Ok(Response::from_parts(parts, full(bytes::Bytes::new())))
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
