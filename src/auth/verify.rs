//! Token verification with everything around the signature check: the token caches in
//! front of it, JWE unwrapping, and the per-use checks (clock, single-use `jti`) that no
//! cache may skip. It takes what it needs — the caches, the replay store, two counters —
//! not the proxy's whole state, so every front door (proxy, authorization service,
//! `explain`) verifies through this one path.

use std::sync::Arc;

use prometheus::IntCounter;

use super::Principal;
use super::cache::TokenCache;
use super::jwt::{self, Verified};
use super::replay::ReplayStore;
use crate::error::Error;
use crate::policy::snapshot::Snapshot;
use crate::trace;

pub struct Verifier {
    pub cache: TokenCache,
    pub replay: ReplayStore,
    pub hits: IntCounter,
    pub misses: IntCounter,
}

/// A token's verdict, or what is still to be waited for.
pub enum Verdict {
    Ready(Result<Principal, Error>),
    /// A JWKS refetch (the keys lack the token's `kid`) or the replay store (a single-use
    /// `jti`) must be waited for: `Verifier::finish`.
    Wait(Wait),
}

/// The first verdict, kept for `finish` so the token is looked up once.
pub struct Wait(Result<Arc<Verified>, Error>);

impl Verifier {
    /// Verifies a JWS or JWE token through the token caches. Most requests (a cached or
    /// symmetric token without a single-use `jti`) get their verdict here, with no future
    /// built; the rest `finish` it.
    pub fn verify(&self, snap: &Snapshot, token: &str, is_jwe: bool, now: f64) -> Verdict {
        match self.cached(snap, token, is_jwe, now) {
            Ok(v) if !v.app.single_use_jti => {
                Verdict::Ready(jwt::check_time(&v, now).map(|()| v.principal.clone()))
            }
            first @ (Ok(_) | Err(Error::KeyNotFound(_))) => Verdict::Wait(Wait(first)),
            Err(e) => Verdict::Ready(Err(e)),
        }
    }

    /// Completes a verdict that must wait, then the per-use checks.
    pub async fn finish(
        &self,
        snap: &Snapshot,
        token: &str,
        is_jwe: bool,
        now: f64,
        Wait(first): Wait,
        span: Option<&trace::Span>,
    ) -> Result<Principal, Error> {
        let verified = match first {
            // A JWKS app's keys lack the token's kid (or there are none): fetch once, shared
            // with every request waiting for the same, within the cooldown, then try again.
            Err(Error::KeyNotFound(source)) => {
                let lookup = trace::child(span, "scopegate.jwks", trace::Kind::Client);
                source.refetch().await;
                let found = self.cached(snap, token, is_jwe, now);
                trace::end(lookup, &found);
                match found {
                    Err(Error::KeyNotFound(source)) => return Err(source.miss().into()),
                    other => other?,
                }
            }
            other => other?,
        };
        self.per_use_checks(&verified, now).await?;
        Ok(verified.principal.clone())
    }

    /// The verdict for a token: from this thread's recent tokens, else (asymmetric and JWE
    /// tokens, whose signatures are worth a hash and a shared lookup) from the shared cache,
    /// else verified and stored.
    fn cached(
        &self,
        snap: &Snapshot,
        token: &str,
        is_jwe: bool,
        now: f64,
    ) -> Result<Arc<Verified>, Error> {
        if let Some(v) = self.cache.get_local(snap.generation, token, now) {
            self.hits.inc();
            return Ok(v);
        }
        let v = if is_jwe {
            self.shared(snap, token, now, || jwt::verify_jwe(&snap.policy, token))?
        } else {
            let jws = jwt::Jws::parse(token)?;
            if jws.is_asymmetric() {
                self.shared(snap, token, now, || jwt::verify(&snap.policy, &jws, false))?
            } else {
                self.misses.inc();
                Arc::new(jwt::verify(&snap.policy, &jws, false)?)
            }
        };
        self.cache.insert_local(snap.generation, token, &v, now);
        Ok(v)
    }

    /// The shared cache's verdict, or `verify`'s, stored.
    fn shared(
        &self,
        snap: &Snapshot,
        token: &str,
        now: f64,
        verify: impl FnOnce() -> Result<Verified, Error>,
    ) -> Result<Arc<Verified>, Error> {
        let key = TokenCache::key(token);
        if let Some(v) = self.cache.get(&key, snap.generation) {
            self.hits.inc();
            return Ok(v);
        }
        self.misses.inc();
        let v = Arc::new(verify()?);
        self.cache.insert(key, snap.generation, v.clone(), now);
        Ok(v)
    }

    /// What no cache may skip: the clock, and a single-use jti.
    async fn per_use_checks(&self, verified: &Verified, now: f64) -> Result<(), Error> {
        jwt::check_time(verified, now)?;
        if verified.app.single_use_jti {
            let jti = verified.jti.as_deref().ok_or(Error::JtiRequired)?;
            // Validation makes single_use_jti require exp, so every token here has one.
            let exp = verified.exp.ok_or(Error::InvalidToken("no exp"))?;
            let accepted_until = exp + verified.app.leeway_secs as f64;
            if !self
                .replay
                .first_use(&verified.app.client_id, jti, accepted_until, now)
                .await?
            {
                return Err(Error::TokenReplayed);
            }
        }
        Ok(())
    }
}
