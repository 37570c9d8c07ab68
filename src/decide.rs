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

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use prometheus::IntCounterVec;

use crate::auth::credential::{self, Credential};
use crate::auth::key_store::KeyStore;
use crate::auth::rate_limit::{Decision, Limiter};
use crate::auth::verify::{Verdict, Verifier};
use crate::auth::{Identity, Principal, api_key, webhook};
use crate::authorize::{self, Permit};
use crate::config::Unmatched;
use crate::error::{Error, Source};
use crate::path::Normalized;
use crate::policy::Route;
use crate::policy::snapshot::Snapshot;
use crate::trace::{self, Kind};
use crate::wire::{Body, X_SIGNATURE, full};

/// What the decision needs beyond the snapshot: the verifier with its caches, the rate
/// limiter, and the config it reads.
pub struct Decider {
    pub verifier: Verifier,
    pub limiter: Limiter,
    /// `key_store` (SPEC §3.8): where keys the policy does not hold are looked up.
    pub key_store: Option<Arc<KeyStore>>,
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
    /// Each check and its outcome, in order, when someone will read them (`explain`);
    /// `None` on the request path, where recording costs a branch and nothing else.
    pub checks: Option<Vec<Check>>,
    /// The request's span with `tracing` on (SPEC §7); `None` costs one branch per hook.
    pub span: Option<trace::Span>,
}

/// One check of the decision and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Seen<'_> {
    /// Records a check; `detail` is only made when checks are being recorded.
    #[inline]
    pub fn check(
        &mut self,
        check: &'static str,
        outcome: Outcome,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(checks) = &mut self.checks {
            checks.push(Check {
                check,
                outcome,
                detail: detail(),
            });
        }
    }

    /// Records the outcome of a check that may have failed. It borrows the result: a
    /// `Principal` or `Permit` moved through here would be copied twice on every request.
    #[inline]
    fn record<T>(
        &mut self,
        check: &'static str,
        result: &Result<T, Error>,
        pass: impl FnOnce(&T) -> String,
    ) {
        match result {
            Ok(v) => self.check(check, Outcome::Pass, || pass(v)),
            Err(e) => self.check(check, Outcome::Fail, || format!("{}: {e}", e.code())),
        }
    }
}

/// The request path as routing and forwarding use it (SPEC §5 "Path normalization").
pub fn normalize(raw: &str) -> Result<Normalized<'_>, Error> {
    Normalized::new(raw).map_err(|e| Error::InvalidPath(e.to_string()))
}

impl Decider {
    /// Decides on a request whose path is already normalized (`normalize`). A shadow-mode
    /// route's refusal becomes a permit that records it; `unmatched: passthrough` permits
    /// what matches no route.
    pub async fn decide<'s>(
        &self,
        snap: &'s Snapshot,
        method: &Method,
        path: &Normalized<'_>,
        headers: &HeaderMap,
        body: &mut Body,
        seen: &mut Seen<'s>,
    ) -> Result<Permit<'s>, Error> {
        // SPEC §5: never forwarded, whatever the route's methods or `unmatched` say.
        if method == Method::TRACE || method == Method::CONNECT {
            seen.check("method", Outcome::Fail, || {
                format!("{method} is never forwarded")
            });
            return Err(Error::NoRoute);
        }
        let policy = &snap.policy;
        let Some(m) = policy.router.at(method, path) else {
            return match self.unmatched {
                Unmatched::Passthrough => {
                    seen.check("route", Outcome::Skip, || {
                        "no route matches: unmatched: passthrough forwards it unauthenticated"
                            .into()
                    });
                    Ok(authorize::passthrough(policy.scopes.len()))
                }
                Unmatched::Deny => {
                    seen.check("route", Outcome::Fail, || {
                        "no_route: no route matches".into()
                    });
                    Err(Error::NoRoute)
                }
            };
        };
        let route = &policy.routes[m.route];
        seen.route = Some(&route.id);
        seen.check("route", Outcome::Pass, || route.id.clone());
        // One async body from here to the permit: an `on_route` of its own would be a
        // second future, copied whole into this one on every request. `or_refuse!` is `?`
        // with the shadow mode (`refused`) on the way out.
        macro_rules! or_refuse {
            ($result:expr) => {
                match $result {
                    Ok(v) => v,
                    Err(e) => return self.refused(snap, route, e, seen),
                }
            };
        }
        let catalogue = policy.scopes.len();
        let principal = if route.auth.only_none() {
            seen.check("credential", Outcome::Skip, || "auth: [none]".into());
            Principal::anonymous(catalogue)
        } else if let Some(w) = (route.webhook.as_ref())
            // `auth: [webhook, none]`: an unsigned request goes on anonymously, below (§3.1).
            .filter(|_| !route.auth.none || headers.contains_key(X_SIGNATURE))
        {
            let read = Box::pin(crate::wire::read_limited(
                std::mem::replace(body, full(Bytes::new())),
                self.max_body_bytes,
            ))
            .await
            .map_err(Error::from);
            let bytes = or_refuse!(read);
            let sig = headers.get(X_SIGNATURE).and_then(|v| v.to_str().ok());
            let span = trace::child(seen.span.as_ref(), "scopegate.verify", Kind::Internal);
            let verified = webhook::verify(w, sig, &bytes, unix_now() as i64);
            trace::end(span, &verified);
            seen.record("verify", &verified, |_| "webhook signature".into());
            or_refuse!(verified);
            *body = full(bytes);
            Principal {
                identity: Identity::Webhook,
                ..Principal::anonymous(catalogue)
            }
        } else {
            let extracted = credential::extract(headers);
            seen.record("credential", &extracted, |c| {
                match c {
                    None => "none presented",
                    Some(Credential::Jws(_)) => "a JWS",
                    Some(Credential::Jwe(_)) => "a JWE",
                    Some(Credential::ApiKey(_)) => "an API key",
                }
                .into()
            });
            let credential = or_refuse!(extracted);
            let mut span = credential
                .as_ref()
                .and_then(|_| trace::child(seen.span.as_ref(), "scopegate.verify", Kind::Internal));
            let verified = match credential {
                None if route.auth.none => Ok(Principal::anonymous(catalogue)),
                None => Err(Error::MissingCredentials),
                Some(c @ (Credential::Jws(token) | Credential::Jwe(token))) if route.auth.jwt => {
                    // `finish`'s future is built (boxed) only when the verdict must wait.
                    let (is_jwe, now) = (matches!(c, Credential::Jwe(_)), unix_now());
                    match self.verifier.verify(snap, token, is_jwe, now) {
                        Verdict::Ready(decided) => decided,
                        Verdict::Wait(w) => {
                            let finish =
                                self.verifier
                                    .finish(snap, token, is_jwe, now, w, span.as_ref());
                            Box::pin(finish).await
                        }
                    }
                }
                Some(Credential::ApiKey(key)) if route.auth.api_key => {
                    let (store, now) = (self.key_store.as_deref(), unix_now() as i64);
                    match api_key::verify(policy, store.is_some(), key, now) {
                        api_key::Verdict::Ready(decided) => decided,
                        // Boxed: a key-store lookup's state stays out of every request's future.
                        api_key::Verdict::InStore(hash) => match store {
                            Some(store) => {
                                let lookup =
                                    api_key::in_store(snap, store, hash, now, span.as_ref());
                                Box::pin(lookup).await
                            }
                            None => Err(Error::InvalidApiKey),
                        },
                    }
                }
                Some(_) => Err(Error::InvalidToken(
                    "credential kind not accepted on this route",
                )),
            };
            if let (Some(s), Ok(p)) = (&mut span, &verified) {
                s.set("scopegate.principal.kind", p.kind());
            }
            trace::end(span, &verified);
            seen.record("verify", &verified, |p| {
                let id = p.id().and_then(|v| v.to_str().ok()).unwrap_or("-");
                let once = match &p.identity {
                    Identity::Jwt { app } if app.single_use_jti => {
                        ", its single-use jti would be consumed"
                    }
                    _ => "",
                };
                format!("{} {id}{once}", p.kind())
            });
            or_refuse!(verified)
        };
        seen.principal_kind = principal.kind();
        seen.principal_id = principal.id().cloned();

        let limit = match &principal.identity {
            Identity::Jwt { app } => app.rate_limit.clone(),
            Identity::ApiKey { key } => key.rate_limit.clone(),
            _ => None,
        };
        match limit {
            None => seen.check("rate_limit", Outcome::Skip, || "no rate_limit".into()),
            Some(limit) => {
                let decided = self.limiter.check(&limit.bucket, limit.rate).await;
                if let Ok(d) = &decided {
                    seen.rate = Some(*d);
                }
                let allowed = decided.and_then(|d| match d.allowed {
                    true => Ok(d),
                    false => Err(Error::RateLimited {
                        retry_after_secs: d.retry_after_secs,
                    }),
                });
                seen.record("rate_limit", &allowed, |d| format!("{} left", d.remaining));
                or_refuse!(allowed);
            }
        }
        let permitted =
            authorize::authorize(policy, route, &m.params, principal, &self.environments);
        seen.record("authorize", &permitted, |_| {
            "every required scope and the resource are granted".into()
        });
        match permitted {
            Ok(permit) => Ok(permit),
            Err(e) => self.refused(snap, route, e, seen),
        }
    }

    /// A refusal after routing: on a `mode: shadow` route, a client's refusal becomes a
    /// permit that records it (what enforcement would have answered); otherwise it stands.
    fn refused<'s>(
        &self,
        snap: &'s Snapshot,
        route: &'s Route,
        e: Error,
        seen: &mut Seen<'s>,
    ) -> Result<Permit<'s>, Error> {
        if !route.shadow || e.origin() != Source::Client {
            return Err(e);
        }
        seen.shadowed = Some(e.code());
        seen.check("shadow", Outcome::Skip, || {
            format!(
                "mode: shadow forwards what enforcement would refuse ({})",
                e.code()
            )
        });
        self.shadow_denials
            .with_label_values(&[&route.id, e.code()])
            .inc();
        Ok(authorize::shadow(route, snap.policy.scopes.len(), e))
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cache::TokenCache;
    use crate::auth::replay::ReplayStore;
    use crate::policy::compile::{Context, sha256_hex};
    use crate::policy::snapshot::Policies;
    use prometheus::{IntCounter, Opts};

    const KEY: &str = "sk_live_trace_0123456789";

    fn policy() -> Policies {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            format!(
                "version: 1\nscopes: {{ read: r, write: w }}\nroutes:\n  \
                 - {{ id: bot, methods: [GET], path: \"/bots/{{id}}\", auth: [api_key], scopes: [write] }}\n\
                 api_keys:\n  - {{ id: k, sha256: {}, scopes: [read] }}\n",
                sha256_hex(KEY.as_bytes())
            ),
        )
        .unwrap();
        let ctx = Context {
            upstreams: None,
            identity_prefix: "x-auth-".into(),
            test_environment: None,
            jwks: None,
        };
        Policies::load(&file, ctx).unwrap().0
    }

    fn decider() -> Decider {
        let counter = |n: &str| IntCounter::new(n, n).unwrap();
        Decider {
            verifier: Verifier {
                cache: TokenCache::new(10),
                replay: ReplayStore::memory(),
                hits: counter("hits"),
                misses: counter("misses"),
            },
            limiter: Limiter::memory(),
            key_store: None,
            unmatched: Unmatched::Deny,
            environments: BTreeMap::new(),
            max_body_bytes: 1024,
            shadow_denials: IntCounterVec::new(Opts::new("s", "s"), &["route", "code"]).unwrap(),
        }
    }

    async fn decide(
        d: &Decider,
        snap: &Snapshot,
        path: &str,
        record: bool,
    ) -> (Result<(), Error>, Option<Vec<Check>>) {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {KEY}").parse().unwrap(),
        );
        let mut seen = Seen {
            checks: record.then(Vec::new),
            ..Seen::default()
        };
        let mut body = full(Bytes::new());
        let decided = d
            .decide(
                snap,
                &Method::GET,
                &normalize(path).unwrap(),
                &headers,
                &mut body,
                &mut seen,
            )
            .await
            .map(|_| ());
        (decided, seen.checks)
    }

    #[tokio::test]
    async fn the_checks_are_recorded_in_order_only_when_asked_for() {
        let (policies, d) = (policy(), decider());
        let snap = policies.current();
        let (decided, checks) = decide(&d, &snap, "/bots/b1", true).await;
        assert_eq!(decided.unwrap_err().code(), "insufficient_scope");
        let seen: Vec<(&str, Outcome)> = checks
            .as_deref()
            .unwrap()
            .iter()
            .map(|c| (c.check, c.outcome))
            .collect();
        assert_eq!(
            seen,
            [
                ("route", Outcome::Pass),
                ("credential", Outcome::Pass),
                ("verify", Outcome::Pass),
                ("rate_limit", Outcome::Skip),
                ("authorize", Outcome::Fail),
            ]
        );
        let checks = checks.unwrap();
        assert_eq!(checks[2].detail, "api_key k");
        assert!(
            checks[4].detail.starts_with("insufficient_scope"),
            "{checks:?}"
        );
        // The key never appears in what a trace shows.
        assert!(checks.iter().all(|c| !c.detail.contains(KEY)));

        let (decided, checks) = decide(&d, &snap, "/nothing", true).await;
        assert_eq!(decided.unwrap_err().code(), "no_route");
        assert_eq!(checks.unwrap()[0].outcome, Outcome::Fail);

        let (_, checks) = decide(&d, &snap, "/bots/b1", false).await;
        assert!(checks.is_none(), "nothing is recorded on the request path");
    }
}
