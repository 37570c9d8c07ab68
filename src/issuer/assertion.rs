//! The upstream assertion (SPEC §3.7): a short JWT, signed by the issuer, that tells the
//! upstream who was authenticated for which route, so that an upstream reachable by other
//! paths need not trust bare `x-auth-*` headers (Oathkeeper's `id_token` mutator, Pomerium's
//! `X-Pomerium-Jwt-Assertion`).
//!
//! A signature per request would cost more than the rest of the proxy's work, so an
//! assertion is reused for the same principal, route and upstream until a tenth of its
//! lifetime is left. The cache is keyed by the policy generation too: a swap (a new key, a
//! changed client) is never answered with an assertion made under the previous policy.

use http::{HeaderName, HeaderValue};
use moka::sync::Cache;
use serde_json::json;

use crate::auth::Identity;
use crate::authorize::Permit;
use crate::error::Error;
use crate::policy::snapshot::Snapshot;

/// Principals × routes × upstreams whose assertion is kept; beyond it the least used are
/// signed again when they come back.
const CAPACITY: u64 = 10_000;

/// Everything the assertion says, so that no two different assertions share an entry.
#[derive(Hash, PartialEq, Eq)]
struct Key {
    generation: u64,
    kind: &'static str,
    id: Option<HeaderValue>,
    subject: Option<HeaderValue>,
    scopes: Option<HeaderValue>,
    route: Option<HeaderValue>,
    upstream: usize,
}

#[derive(Clone)]
struct Signed {
    value: HeaderValue,
    /// Unix seconds after which a fresh one is signed: 90 % into its lifetime.
    renew_at: f64,
}

pub struct Assertions {
    cache: Cache<Key, Signed>,
}

impl Default for Assertions {
    fn default() -> Assertions {
        Assertions {
            cache: Cache::builder().max_capacity(CAPACITY).build(),
        }
    }
}

impl Assertions {
    /// The assertion header for a permitted request to `upstream` (its index and name), or
    /// `None` when the policy asks for none or nobody was authenticated (public routes,
    /// passthrough). `now` (unix seconds) is read only when an assertion is made.
    pub fn for_request(
        &self,
        snap: &Snapshot,
        permit: &Permit<'_>,
        upstream: (usize, &str),
        now: impl FnOnce() -> f64,
    ) -> Result<Option<(HeaderName, HeaderValue)>, Error> {
        let policy = &snap.policy;
        let (Some(config), Some(issuer)) = (&policy.upstream_assertion, &policy.issuer) else {
            return Ok(None);
        };
        let principal = permit.principal();
        if matches!(principal.identity, Identity::Anonymous) {
            return Ok(None);
        }
        let route = permit.route().map(|r| r.id_header.clone());
        let key = Key {
            generation: snap.generation,
            kind: principal.kind(),
            id: principal.id().cloned(),
            subject: principal.subject.clone(),
            scopes: principal.scopes_header.clone(),
            route,
            upstream: upstream.0,
        };
        let now = now();
        if let Some(s) = self.cache.get(&key).filter(|s| now < s.renew_at) {
            return Ok(Some((config.header.clone(), s.value)));
        }
        let text =
            |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(str::to_string);
        let route_id = text(&key.route);
        let sub = text(&key.subject)
            .or_else(|| text(&key.id))
            .or_else(|| route_id.clone());
        let iat = now.floor() as u64;
        let claims = json!({
            "iss": issuer.name,
            "aud": upstream.1,
            "sub": sub,
            "kind": key.kind,
            "scopes": text(&key.scopes).unwrap_or_default(),
            "route": route_id,
            "iat": iat,
            "exp": iat + config.ttl_secs,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let token = issuer
            .sign(&claims)
            .map_err(|_| Error::KeysUnavailable("the issuer could not sign".into()))?;
        let value = HeaderValue::try_from(token)
            .map_err(|_| Error::KeysUnavailable("the assertion is not a header value".into()))?;
        let renew_at = iat as f64 + config.ttl_secs as f64 * 0.9;
        self.cache.insert(
            key,
            Signed {
                value: value.clone(),
                renew_at,
            },
        );
        Ok(Some((config.header.clone(), value)))
    }
}
