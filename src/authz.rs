//! The authorization service (SPEC §8): beside an ingress that proxies itself — nginx or
//! ingress-nginx `auth_request`, Traefik `ForwardAuth`, Envoy or Istio `ext_authz` (HTTP
//! service) — answer only "may this request pass?".
//!
//! The decision is `decide`'s, the proxy's own: path normalization and its rejections,
//! routes, credentials, verification with its caches, rate limits, scopes, resources,
//! shadow mode and `unmatched`. This file only reads which request is being asked about
//! and turns the decision into the answer an ingress understands: 200 with the identity
//! headers for it to copy upstream, or the refusal of SPEC §6.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::config::AuthzStatuses;
use crate::decide;
use crate::error::Error;
use crate::observe::record::{Listener, Pending, Trace};
use crate::pipeline::State;
use crate::policy::snapshot::Snapshot;
use crate::proxy::framing;
use crate::proxy::headers;
use crate::proxy::listener::{Conn, Handler};
use crate::wire::{Body, X_REQUEST_ID, full};

/// Where the ingress names the original request, in the order they are read (Traefik's
/// `X-Forwarded-*`, then nginx's `X-Original-*`); Envoy sends the original method and
/// path as the check request's own.
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
/// With `statuses: nginx`, the real code of a denial answered as 403.
const X_AUTH_CODE: HeaderName = HeaderName::from_static("x-auth-code");

#[derive(Clone)]
pub struct Authz {
    state: Arc<State>,
    nginx: bool,
}

impl Authz {
    pub fn new(state: Arc<State>) -> Authz {
        let nginx = state
            .config
            .authz
            .as_ref()
            .is_some_and(|a| a.statuses == AuthzStatuses::Nginx);
        Authz { state, nginx }
    }
}

impl Handler for Authz {
    async fn handle(&self, conn: Conn, req: Request<Incoming>) -> Response<Body> {
        let state = &*self.state;
        let snapshot = state.policies.current();
        let request_id = headers::request_id(req.headers());
        let original = original_request(&req);
        let method = original.as_ref().map_or(Method::GET, |o| o.0.clone());
        let mut pending = Pending::start(
            &state.metrics,
            &state.access_log,
            Listener::Authz,
            &method,
            request_id,
        );
        if let Some(tracer) = &state.tracer {
            pending.trace.seen.span = tracer.request(req.headers());
        }
        let decided = match original {
            Ok((method, target)) => {
                let original = Original {
                    method: &method,
                    target: &target,
                    request_id: &pending.request_id,
                };
                decide_on(state, &snapshot, conn, req, original, &mut pending.trace).await
            }
            Err(e) => Err(e),
        };
        let (mut resp, error) = match decided {
            Ok(r) => (r, None),
            Err(e) => (self.refusal(&e, &pending.request_id), Some(e)),
        };
        pending.rate_limit_headers(resp.headers_mut());
        pending.answered(resp.status(), error.as_ref());
        resp
    }
}

impl Authz {
    /// The refusal of SPEC §6; with `statuses: nginx`, anything but 401 and 403 as 403,
    /// its real code kept in the body and in `x-auth-code`.
    fn refusal(&self, e: &Error, request_id: &HeaderValue) -> Response<Body> {
        let mut resp = e.into_response(request_id);
        if self.nginx {
            resp.headers_mut()
                .insert(X_AUTH_CODE, HeaderValue::from_static(e.code()));
            if !matches!(
                resp.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                *resp.status_mut() = StatusCode::FORBIDDEN;
            }
        }
        resp
    }
}

/// The request the ingress asks about.
struct Original<'a> {
    method: &'a Method,
    target: &'a str,
    request_id: &'a HeaderValue,
}

/// The check request's own head hygiene, then the decision on the original request.
async fn decide_on<'s>(
    state: &State,
    snap: &'s Snapshot,
    conn: Conn,
    req: Request<Incoming>,
    original: Original<'_>,
    t: &mut Trace<'s>,
) -> Result<Response<Body>, Error> {
    let target = original.target;
    framing::check_head(
        &req,
        conn.ambiguous_framing,
        state.config.limits.max_header_bytes,
    )?;
    let raw_path = target.split_once('?').map_or(target, |(p, _)| p);
    let path = decide::normalize(raw_path)?;
    t.path = path.to_string();
    let auth_started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    // A webhook route checks its signature over the check request's body (Envoy's
    // `with_request_body`); without one it fails.
    let mut body: Body = Either::Left(body);
    let permit = state
        .decider
        .decide(
            snap,
            original.method,
            &path,
            &parts.headers,
            &mut body,
            &mut t.seen,
        )
        .await?;
    t.auth = auth_started.elapsed();
    // No body passes through here to decrypt: an app that opted into payload encryption
    // cannot be served on a route that encrypts (SPEC §8).
    if permit.encrypts_payloads() {
        return Err(Error::EncryptionRequired);
    }
    let mut resp = Response::new(full(Bytes::new()));
    let h = resp.headers_mut();
    permit.write_identity(&state.names, h);
    // The ingress copies the assertion upstream (SPEC §8); its audience is the route's upstream.
    let upstream = state
        .config
        .upstreams
        .get(permit.upstream())
        .map_or("default", |u| u.name.as_str());
    if let Some((name, value)) = state.assertions.for_request(
        snap,
        &permit,
        (permit.upstream(), upstream),
        crate::decide::unix_now,
    )? {
        h.insert(name, value);
    }
    h.insert(X_REQUEST_ID, original.request_id.clone());
    Ok(resp)
}

/// The method and target of the original request the ingress asks about.
fn original_request(req: &Request<Incoming>) -> Result<(Method, String), Error> {
    let h = req.headers();
    let first = |names: &[HeaderName]| {
        names
            .iter()
            .find_map(|n| h.get(n))
            .map(|v| {
                v.to_str()
                    .map_err(|_| Error::MalformedRequest("original request header is not text"))
            })
            .transpose()
    };
    let method = match first(&[X_FORWARDED_METHOD, X_ORIGINAL_METHOD])? {
        Some(m) => Method::from_bytes(m.trim().as_bytes())
            .map_err(|_| Error::MalformedRequest("original method is not a method"))?,
        None => req.method().clone(),
    };
    let target = match first(&[X_FORWARDED_URI, X_ORIGINAL_URI])? {
        Some(t) => t.to_string(),
        None => match first(&[X_ORIGINAL_URL])? {
            Some(url) => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|_| Error::MalformedRequest("X-Original-URL is not a URL"))?;
                uri.path_and_query()
                    .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string())
            }
            None => req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string()),
        },
    };
    if !target.starts_with('/') {
        return Err(Error::MalformedRequest(
            "original request target is not origin-form",
        ));
    }
    Ok((method, target))
}
