//! The decision: may this request pass, and as whom? One implementation, taken by every
//! front door — the proxy (`pipeline`), and the authorization service and `explain` that
//! put other doors on it — so a check can never drift between them.
//!
//! ```text
//! normalize path -> match route -> extract credential -> verify -> rate limit -> authorize
//! ```
//!
//! It takes a request head (method, path, headers; the body only where a webhook signs it)
//! and the policy snapshot, and returns a refusal (`Error`) or a `Permit` carrying what
//! forwarding needs. It knows nothing of connections, upstreams or responses.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Limited};
use prometheus::IntCounterVec;

use crate::auth::credential::{self, Credential};
use crate::auth::rate_limit::{Decision, Limiter};
use crate::auth::verify::Verifier;
use crate::auth::{Identity, Principal, api_key, webhook};
use crate::authorize::{self, Permit};
use crate::config::Unmatched;
use crate::error::{Error, Source};
use crate::path;
use crate::policy::Route;
use crate::policy::snapshot::Snapshot;
use crate::wire::{Body, X_SIGNATURE, full};

/// What the decision needs beyond the snapshot: the verifier with its caches, the rate
/// limiter, and the config it reads.
pub struct Decider {
    pub verifier: Verifier,
    pub limiter: Limiter,
    pub unmatched: Unmatched,
    /// API-key environment -> upstream index.
    pub environments: BTreeMap<String, usize>,
    pub max_body_bytes: usize,
    /// `scopegate_shadow_denials_total{route,code}`.
    pub shadow_denials: IntCounterVec,
}

/// What the decision found out along the way, for metrics and the access log. It borrows
/// from the request's policy snapshot and shares the principal's id value: no copies.
#[derive(Default)]
pub struct Seen<'s> {
    pub route: Option<&'s str>,
    pub principal_kind: &'static str,
    pub principal_id: Option<HeaderValue>,
    pub rate: Option<Decision>,
    pub shadowed: Option<&'static str>,
}

/// The request path as routing and forwarding use it (SPEC §5 "Path normalization").
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, Error> {
    path::normalize(raw).map_err(|e| Error::InvalidPath(e.to_string()))
}

impl Decider {
    /// Decides on a request whose path is already normalized (`normalize`). A shadow-mode
    /// route's refusal becomes a permit that records it; `unmatched: passthrough` permits
    /// what matches no route.
    pub async fn decide<'s>(
        &self,
        snap: &'s Snapshot,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &mut Body,
        seen: &mut Seen<'s>,
    ) -> Result<Permit<'s>, Error> {
        // SPEC §5: never forwarded, whatever the route's methods or `unmatched` say.
        if method == Method::TRACE || method == Method::CONNECT {
            return Err(Error::NoRoute);
        }
        let policy = &snap.policy;
        let Some(m) = policy.router.at(method, path) else {
            return match self.unmatched {
                Unmatched::Passthrough => Ok(authorize::passthrough(policy.scopes.len())),
                Unmatched::Deny => Err(Error::NoRoute),
            };
        };
        let route = &policy.routes[m.route];
        seen.route = Some(&route.id);
        match self
            .on_route(snap, route, &m.params, headers, body, seen)
            .await
        {
            Err(e) if route.shadow && e.origin() == Source::Client => {
                seen.shadowed = Some(e.code());
                self.shadow_denials
                    .with_label_values(&[&route.id, e.code()])
                    .inc();
                Ok(authorize::shadow(route, policy.scopes.len(), e))
            }
            decided => decided,
        }
    }

    /// Credential -> principal -> rate limit -> permit, for one matched route.
    async fn on_route<'s>(
        &self,
        snap: &'s Snapshot,
        route: &'s Route,
        params: &[&str],
        headers: &HeaderMap,
        body: &mut Body,
        seen: &mut Seen<'s>,
    ) -> Result<Permit<'s>, Error> {
        let policy = &snap.policy;
        let catalogue = policy.scopes.len();
        let principal = if route.auth.only_none() {
            Principal::anonymous(catalogue)
        } else if let Some(w) = (route.webhook.as_ref())
            // `auth: [webhook, none]`: an unsigned request goes on anonymously, below (§3.1).
            .filter(|_| !route.auth.none || headers.contains_key(X_SIGNATURE))
        {
            let bytes = read_limited(
                std::mem::replace(body, full(Bytes::new())),
                self.max_body_bytes,
            )
            .await?;
            let sig = headers.get(X_SIGNATURE).and_then(|v| v.to_str().ok());
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
                    self.verifier.verify(snap, token, false, unix_now()).await?
                }
                Some(Credential::Jwe(token)) if route.auth.jwt => {
                    self.verifier.verify(snap, token, true, unix_now()).await?
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
        seen.principal_kind = principal.kind();
        seen.principal_id = principal.id().cloned();

        let limit = match &principal.identity {
            Identity::Jwt { app } => app.rate_limit.clone(),
            Identity::ApiKey { key } => key.rate_limit.clone(),
            _ => None,
        };
        if let Some(limit) = limit {
            let d = self.limiter.check(&limit.bucket, limit.rate).await?;
            seen.rate = Some(d);
            if !d.allowed {
                return Err(Error::RateLimited {
                    retry_after_secs: d.retry_after_secs,
                });
            }
        }
        authorize::authorize(policy, route, params, principal, &self.environments)
    }
}

/// Reads a whole body, refusing it past `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Error> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::PayloadTooLarge),
        Err(_) => Err(Error::MalformedRequest("request body could not be read")),
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
