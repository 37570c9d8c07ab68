//! Principal + route -> `Permit`: the only way to obtain one, and the forwarder accepts
//! nothing else, so "forwarded without being authorized" does not compile.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};

use crate::auth::{Identity, Principal};
use crate::error::Error;
use crate::policy::{Environment, Policy, Route};
use crate::wire::IdentityNames;

/// Proof that a request may go upstream, and as whom.
#[derive(Debug)]
pub struct Permit<'p> {
    route: Option<&'p Route>,
    principal: Principal,
    upstream: usize,
    /// In shadow mode: the refusal that enforcement would have answered.
    shadowed: Option<Error>,
}

impl<'p> Permit<'p> {
    pub fn route(&self) -> Option<&'p Route> {
        self.route
    }
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn upstream(&self) -> usize {
        self.upstream
    }
    pub fn shadowed(&self) -> Option<&Error> {
        self.shadowed.as_ref()
    }
    /// Writes the trusted identity headers (SPEC §5) — after the client's own
    /// identity-prefixed headers were removed — for the upstream or, from the authorization
    /// service, for the ingress to copy.
    pub fn write_identity(&self, names: &IdentityNames, headers: &mut HeaderMap) {
        let principal = &self.principal;
        headers.insert(
            names.kind.clone(),
            HeaderValue::from_static(principal.kind()),
        );
        match &principal.identity {
            Identity::Jwt { app } => {
                headers.insert(names.app_id.clone(), app.id_header.clone());
            }
            Identity::ApiKey { key } => {
                headers.insert(names.key_id.clone(), key.id.clone());
            }
            Identity::Anonymous | Identity::Webhook => {}
        }
        if let Some(sub) = &principal.subject {
            headers.insert(names.subject.clone(), sub.clone());
        }
        if !matches!(principal.identity, Identity::Anonymous) {
            if let Some(scopes) = &principal.scopes_header {
                headers.insert(names.scopes.clone(), scopes.clone());
            }
        }
        if let Some(route) = self.route {
            headers.insert(names.route.clone(), route.id_header.clone());
        }
        for (name, value) in &principal.claim_headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Whether this exchange's payloads are encrypted: an app that opted in, on a route
    /// that supports it (SPEC §4).
    pub fn encrypts_payloads(&self) -> bool {
        let app = match &self.principal.identity {
            Identity::Jwt { app } => app,
            _ => return false,
        };
        self.route.is_some_and(|r| r.encryption) && app.payload_encryption.is_some()
    }

    /// Binds the request this permit lets through.
    #[inline(always)]
    pub fn bind<T>(self, request: T) -> Permitted<'p, T> {
        Permitted {
            permit: self,
            request,
        }
    }

    /// Shadow routes keep the client's credential: the upstream still authenticates itself
    /// while the policy is being tried out.
    pub fn keeps_credentials(&self) -> bool {
        self.route.is_some_and(|r| r.shadow)
    }
}

/// A request bound to the permit that let it through, as linkerd2-proxy's `Permitted<T>`:
/// what goes upstream is what was authorized, and only a permit makes one.
#[derive(Debug)]
pub struct Permitted<'p, T> {
    permit: Permit<'p>,
    request: T,
}

impl<'p, T> Permitted<'p, T> {
    #[inline(always)]
    pub fn into_parts(self) -> (Permit<'p>, T) {
        (self.permit, self.request)
    }
}

/// Checks scopes and the resource named in the path.
pub fn authorize<'p>(
    policy: &'p Policy,
    route: &'p Route,
    params: &[&str],
    principal: Principal,
    environments: &BTreeMap<String, usize>,
) -> Result<Permit<'p>, Error> {
    if let Some(missing) = policy.scopes.missing(&principal.scopes, &route.scopes) {
        if matches!(principal.identity, Identity::Anonymous) {
            return Err(Error::MissingCredentials);
        }
        return Err(Error::InsufficientScope(policy.scopes.join(&missing)));
    }
    if let Some(rule) = &route.resource {
        let item = params.get(rule.param).copied().unwrap_or_default();
        let allowed = principal
            .grants()
            .is_some_and(|g| g.allows(&rule.kind, item, rule.action));
        if !allowed {
            if matches!(principal.identity, Identity::Anonymous) {
                return Err(Error::MissingCredentials);
            }
            return Err(Error::ResourceNotAllowed(format!("{}/{item}", rule.kind)));
        }
    }
    let upstream = match &principal.identity {
        Identity::ApiKey { key } => {
            let env = match key.environment {
                Environment::Live => "live",
                Environment::Test => "test",
            };
            environments.get(env).copied().unwrap_or(route.upstream)
        }
        _ => route.upstream,
    };
    Ok(Permit {
        route: Some(route),
        principal,
        upstream,
        shadowed: None,
    })
}

/// A shadow-mode route forwards what enforcement would refuse, recording why.
pub(crate) fn shadow<'p>(route: &'p Route, catalogue: usize, would_be: Error) -> Permit<'p> {
    Permit {
        route: Some(route),
        principal: Principal::anonymous(catalogue),
        upstream: route.upstream,
        shadowed: Some(would_be),
    }
}

/// `unmatched: passthrough`: the operator chose to forward unmatched requests unauthenticated.
pub(crate) fn passthrough<'p>(catalogue: usize) -> Permit<'p> {
    Permit {
        route: None,
        principal: Principal::anonymous(catalogue),
        upstream: 0,
        shadowed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anonymous_permit_says_so() {
        let mut h = HeaderMap::new();
        let names = IdentityNames::new("x-auth-").unwrap();
        passthrough(0).write_identity(&names, &mut h);
        assert_eq!(h.get("x-auth-kind").unwrap(), "none");
        assert_eq!(h.len(), 1);
    }
}
